"""Run configuration: YAML validated at load into typed pydantic models.

Every model forbids unknown keys, so a typo fails at load with the file and the field named,
instead of being silently ignored halfway through a backfill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mspa_features.compose.encoders import EncoderConfig
from mspa_features.config_base import (  # load_yaml_model: also imported from here
    StrictModel,
    load_yaml_model,
)
from mspa_features.data.contracts import AUTHORS
from mspa_features.data.sources import (
    ColumnMapping,
    ContractTimestamps,
    SparkRead,
    SparkTables,
    is_table_path,
    is_uri,
)
from mspa_features.data.synthetic import SyntheticConfig
from mspa_features.errors import (
    ConfigError,
    IncompatibleSettingsError,
    InvalidValueError,
    UnknownNameError,
)
from mspa_features.generation.base import BackendConfig
from mspa_features.names import folder_name

# Every section forbids unknown keys (the one strict base of configs read from files).
_Strict = StrictModel


class DataConfig(_Strict):
    """Where the users, authors and interactions come from (every source goes through the same
    ingest + validation: ``mspa_features.data.ingest.ingest_source``)."""

    source: Literal["movielens", "synthetic", "files", "spark"] = Field(
        description="files: your own contract files (data.path); spark: tables read through "
        "Spark (data.tables); movielens: MovieLens-100K from the recbole wheel; synthetic: "
        "live-stream generator"
    )
    path: str | None = Field(
        None,
        description="files: the folder holding users / authors / interactions (.parquet, .csv "
        "or .tsv), a local path (relative to the run config's folder) or a URI pyarrow or "
        "fsspec opens (s3://, gs://, hdfs://, file://...)",
    )
    tables: SparkTables | None = Field(
        None, description="spark: a catalog table or a path per contract"
    )
    spark: SparkRead | None = Field(None, description="spark: master, reader format, settings")
    columns: ColumnMapping = Field(
        default_factory=ColumnMapping,
        description="files/spark: per contract, contract column -> your column",
    )
    timestamps: ContractTimestamps = Field(
        default_factory=ContractTimestamps,
        description="files/spark: per contract, how instants are written (unit: iso | s | ms | "
        "us; timezone of ISO text without an offset)",
    )
    author_modalities: list[str] | None = Field(
        None,
        description="author columns that must be non-empty (default: profile_text; synthetic: "
        "profile_text and frames)",
    )
    validation_engine: Literal["auto", "pandas", "spark"] = Field(
        "auto",
        description="files/spark/synthetic: which engine validates each contract (the same "
        "rules, reasons and quarantine): pandas, spark (through the mspa CLI), or auto (Spark "
        "from 5,000,000 rows on, or when pandas would need over half the available memory: "
        "mspa_features.data.rules.choose_engine)",
    )
    positive_threshold: float = Field(
        4.0, ge=1.0, le=5.0, description="MovieLens: a rating >= this is a positive (label 1)"
    )
    synthetic: SyntheticConfig | None = Field(None, description="generator settings (synthetic)")

    @model_validator(mode="after")
    def _source_settings(self) -> DataConfig:
        if self.source == "synthetic" and self.synthetic is None:
            self.synthetic = SyntheticConfig()
        if self.source != "synthetic" and self.synthetic is not None:
            raise IncompatibleSettingsError(
                {"source": self.source},
                "'synthetic' settings given, but they apply only to source 'synthetic'",
            )
        if self.source == "files" and not (self.path or "").strip():
            raise IncompatibleSettingsError(
                {"source": self.source, "path": self.path},
                "source 'files' needs path: the folder of your contract files",
            )
        if self.source != "files" and self.path is not None:
            raise IncompatibleSettingsError(
                {"source": self.source, "path": self.path}, "path is for source 'files' only"
            )
        if self.source == "spark" and self.tables is None:
            raise IncompatibleSettingsError(
                {"source": self.source, "tables": self.tables},
                "source 'spark' needs tables: {users: ..., authors: ..., interactions: ...}",
            )
        if self.source == "spark" and self.spark is None:
            self.spark = SparkRead()
        if self.source != "spark" and (self.tables is not None or self.spark is not None):
            raise IncompatibleSettingsError(
                {"source": self.source}, "'tables'/'spark' given, but they are for source 'spark'"
            )
        if self.source in ("movielens", "synthetic"):
            # a default value written back by model_dump (a saved run config) is not a declaration
            declared = [
                k
                for k in ("columns", "timestamps")
                if k in self.model_fields_set
                and getattr(self, k)
                != type(self).model_fields[k].get_default(call_default_factory=True)
            ] + (["author_modalities"] if self.author_modalities is not None else [])
            if declared:
                raise IncompatibleSettingsError(
                    {"source": self.source},
                    f"{declared[0]!r} applies to sources 'files' and 'spark', not to the "
                    f"{self.source!r} preset (it writes the contracts' own layout)",
                )
        for m in self.author_modalities or []:
            if m not in AUTHORS.columns:
                raise UnknownNameError("authors column in author_modalities", m, AUTHORS.columns)
        return self

    def modalities(self) -> tuple[str, ...]:
        """Author columns that must be non-empty."""
        if self.author_modalities is not None:
            return tuple(self.author_modalities)
        return ("profile_text", "frames") if self.source == "synthetic" else ("profile_text",)


class U2AConfig(_Strict):
    """User-to-author evaluation dataset (MSPA section 4.1)."""

    num_candidates: list[int] = Field([4, 10], description="m values: candidates per question")
    min_positives: int = Field(3, ge=2, description="users with fewer distinct positives dropped")
    split: tuple[float, float, float] = Field((0.7, 0.2, 0.1), description="train/val/test")

    @model_validator(mode="after")
    def _check(self) -> U2AConfig:
        if any(m < 2 or m > 26 for m in self.num_candidates):
            raise InvalidValueError(
                "num_candidates", self.num_candidates, "candidate set sizes in 2..26 (lettered)"
            )
        if abs(sum(self.split) - 1.0) > 1e-6 or any(x < 0 for x in self.split):
            raise InvalidValueError("split", self.split, "non-negative fractions that sum to 1")
        return self


class A2AConfig(_Strict):
    """Author-to-author triples from attribute overlap."""

    num_triples: int = Field(2000, ge=1)
    min_margin: float = Field(0.25, gt=0.0, le=1.0, description="Jaccard(a1,a2) - Jaccard(a1,a3)")


class ComposerConfig(_Strict):
    """The preference composer: generation backend, encoder, budgets."""

    backend: BackendConfig = Field(
        default_factory=lambda: BackendConfig(type="llamacpp", model="smollm2", batch_size=16),
        description="generation backend (transformers | llamacpp | vllm | transformers-vl)",
    )
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    max_new_tokens: int = Field(96, ge=8, description="preference text length cap")
    author_max_new_tokens: int = Field(64, ge=8, description="author description length cap")
    token_budget: int = Field(768, ge=32, description="history prompt tokens; newest kept")
    max_frames_per_author: int = Field(1, ge=0, description="images per author (VLM only)")
    image_root: Path | None = Field(
        None,
        description=(
            "where relative frame paths resolve, as in validation (default: the folder the "
            "data was validated from: the synthetic generator's raw folder, else the run's "
            "data folder); a relative path is resolved against the run config's folder"
        ),
    )
    prompts: str = Field(
        "livestream",
        min_length=1,
        description=(
            "prompt set: 'livestream' (MSPA: talent, environment, region, frames, ASR, comments), "
            "'catalogue' (items: genres, era, themes, audience) or a YAML file of your own "
            "(mspa_features.compose.prompts.PromptFile; a relative path is resolved against the run "
            "config's folder)"
        ),
    )
    structured: bool = Field(
        True,
        description=(
            "constrain decoding to each prompt's answer schema (llama.cpp grammar, llguidance "
            "on transformers, vLLM structured outputs); false measures the free-form model"
        ),
    )


class EvalConfig(_Strict):
    """U2A/A2A evaluation of composers (``mspa eval``, and the main job)."""

    composers: list[Literal["template", "llm"]] = Field(["template", "llm"])
    cohort_users: int | None = Field(
        60, ge=1, description="U2A test users evaluated (null: the whole test split)"
    )
    generations: int = Field(3, ge=0, description="Acc@m generations (mean and spread)")
    temperature: float = Field(0.7, ge=0.0, description="sampling temperature for Acc@m")
    rec_max_new_tokens: int = Field(48, ge=4)
    authors: Literal["all", "cohort"] = Field(
        "all",
        description=(
            "authors described and ranked: 'all', or 'cohort' (the targets and candidates of the "
            "cohort's questions plus the authors of the A2A triples evaluated): what lets the "
            "LLM composer fit the main job on 2 cores"
        ),
    )
    a2a_triples: int | None = Field(
        None, ge=1, description="A2A triples evaluated (the first N; null: all)"
    )


class FeaturesConfig(_Strict):
    """The main job's feature stages: Spark backfill over the data's span, Feast register +
    materialize, and one online read showing what a ranker receives (``mspa backfill`` and
    ``mspa register`` run the same code for any range)."""

    enabled: bool = Field(True, description="run backfill + register in the main job")
    cadence: Literal["daily", "weekly"] = Field(
        "weekly", description="preference snapshot cadence (weekly keeps the main job short)"
    )
    feature_sets: list[Literal["template", "llm"]] = Field(
        ["template"],
        min_length=1,
        description="composers to backfill; llm composes every snapshot with the LLM (slow on CPU)",
    )
    show_users: int = Field(1, ge=0, description="users whose online features are printed")
    ttl_days: int = Field(
        365,
        ge=0,
        description="Feast TTL of every feature view (days): a snapshot is visible this long in "
        "point-in-time joins and online reads (0: never expires); Feast's first "
        "`materialize-incremental` starts at now - TTL, so a historical dataset needs a TTL "
        "reaching back to its first snapshot (MovieLens 1997-98: 36500)",
    )
    sample: FeatureSampleConfig | None = Field(
        None,
        description="backfill sample.feature_sets only for a seeded user/author sample "
        "(null: every feature set over all the data)",
    )

    @model_validator(mode="after")
    def _sampled_sets_are_backfilled(self) -> FeaturesConfig:
        if self.sample is not None:
            extra = [fs for fs in self.sample.feature_sets if fs not in self.feature_sets]
            if extra:
                raise UnknownNameError(
                    "feature set", extra[0], self.feature_sets, hint="in sample.feature_sets"
                )
        return self


class FeatureSampleConfig(_Strict):
    """A seeded sample the costly feature sets are backfilled for (both feature sets are then
    compared on exactly its impressions: same users, same authors)."""

    feature_sets: list[Literal["template", "llm"]] = Field(
        ["llm"], min_length=1, description="feature sets backfilled for the sample only"
    )
    users: int = Field(
        16,
        ge=2,
        description="users drawn among those with a positive before the ablation's split and "
        "an impression in its evaluation window",
    )
    authors: int = Field(
        160, ge=2, description="authors drawn among the sampled users' impressions"
    )
    seed: int | None = Field(None, description="sample seed (null: the run's seed)")


class AblationStageConfig(_Strict):
    """The main job's last stage: the AIS ablation plus LIS variants (``mspa lis`` runs the same)."""

    enabled: bool = Field(False, description="run the AIS + LIS ablation in the main job")
    config: Path | None = Field(
        None,
        description="ablation config YAML (temporal split, variants, ranker); a relative path is "
        "resolved against the run config's folder",
    )
    lis: bool = Field(True, description="build the leak sets and add LIS variants")
    horizons: list[int] = Field([7, 30], min_length=1, description="LIS leak horizons (days)")
    compare: list[Literal["template", "llm"]] = Field(
        [],
        description="feature sets whose AIS variants run side by side in a second ablation "
        "(on features.sample's impressions when a sample is configured)",
    )


class RedisConfig(_Strict):
    """Where the Redis online store runs (``serving.online_store: redis``). No secret lives in
    the config: a password is read from the environment variable ``password_env`` names."""

    host: str = Field("localhost", min_length=1, description="Redis host name or address")
    port: int = Field(6379, ge=1, le=65535, description="Redis port")
    db: int = Field(0, ge=0, description="Redis logical database number")
    password_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of the environment variable holding the password (null: no AUTH)",
    )
    ssl: bool = Field(False, description="connect with TLS")
    connect_timeout_s: float = Field(
        5.0, gt=0, le=300, description="seconds to wait for a connection before failing"
    )

    @field_validator("host")
    @classmethod
    def _plain_host(cls, v: str) -> str:
        if any(c in v for c in ",= /") or v.strip() != v:
            raise InvalidValueError("host", v, "a plain host name or address")
        return v


class ServingConfig(_Strict):
    """The online store every command of this run reads and writes (``mspa run``'s register
    and serving preview, ``mspa register``, ``mspa features online``, the ablation's store)."""

    online_store: Literal["sqlite", "redis"] = Field(
        "sqlite",
        description="sqlite: a file in the workspace (the default); redis: a Redis server "
        "(serving.redis; without it $REDIS_CONNECTION_STRING or localhost:6379)",
    )
    redis: RedisConfig | None = Field(None, description="Redis connection (online_store: redis)")

    @model_validator(mode="after")
    def _redis_settings(self) -> ServingConfig:
        if self.redis is not None and self.online_store != "redis":
            raise IncompatibleSettingsError(
                {"online_store": self.online_store, "redis": "given"},
                "redis settings apply to the Redis online store only",
                fix="set online_store: redis",
            )
        return self


class RunConfig(_Strict):
    """One run of the main job (``mspa run CONFIG``)."""

    name: str = Field(description="run name; also the dataset folder name in the workspace")
    workspace: Path = Field(Path("workspace"), description="where data, results and runs go")
    seed: int = 0
    data: DataConfig
    u2a: U2AConfig = U2AConfig()
    a2a: A2AConfig = A2AConfig()
    composer: ComposerConfig = Field(default_factory=ComposerConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    ablation: AblationStageConfig = Field(default_factory=AblationStageConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        return folder_name(v, "run name")

    @model_validator(mode="after")
    def _ablation_needs_features(self) -> RunConfig:
        if self.ablation.enabled and self.ablation.config is None:
            raise IncompatibleSettingsError(
                {"ablation.enabled": True, "ablation.config": None},
                "ablation.enabled needs ablation.config (an ablation YAML)",
            )
        missing = [fs for fs in self.ablation.compare if fs not in self.features.feature_sets]
        if missing:
            raise UnknownNameError(
                "feature set",
                missing[0],
                self.features.feature_sets,
                hint="in ablation.compare; valid are features.feature_sets",
            )
        if self.ablation.enabled and not self.features.enabled:
            raise IncompatibleSettingsError(
                {"ablation.enabled": True, "features.enabled": False},
                "ablation.enabled needs features.enabled: the ranker reads the backfilled "
                "features through Feast",
            )
        return self


def load_config(path: str | Path) -> RunConfig:
    """Load and validate a run config.

    Raises:
        ConfigError: the file is missing, not YAML, or a field is invalid (all problems listed,
            each with its dotted field path).
    """
    p = Path(path)
    cfg = load_yaml_model(p, RunConfig)
    if cfg.ablation.config is not None and not cfg.ablation.config.is_absolute():
        cfg.ablation.config = p.parent / cfg.ablation.config
    cfg.composer.prompts = _resolve_prompts(p, cfg.composer.prompts)
    if cfg.data.path is not None and not is_uri(cfg.data.path):
        # Relative to the run config's folder, as every other path in it (and absolute: Spark
        # workers and later commands run from anywhere).
        cfg.data.path = str((p.parent / Path(cfg.data.path).expanduser()).resolve())
    if cfg.data.tables is not None:  # local paths among them, likewise (table names stay)
        for contract in ("users", "authors", "interactions"):
            ref = getattr(cfg.data.tables, contract)
            if is_table_path(ref) and not is_uri(ref):
                setattr(cfg.data.tables, contract, str((p.parent / ref).resolve()))
    cfg.composer.image_root = frame_root(cfg, p)
    # Whether the ablation file exists is checked when the main job starts (pipeline.run), not
    # here: `mspa backfill` on a copied run config must not fail over a stage it does not run.
    return cfg


def frame_root(cfg: RunConfig, config_path: Path | None = None) -> Path:
    """The folder relative frame paths resolve against: ``composer.image_root`` (relative to
    the run config's folder), else the folder the data was validated from (what
    ``ingest_folder`` passed to validation: the synthetic generator's raw folder), else the
    run's data folder (``files`` from a local folder: that folder)."""
    root = cfg.composer.image_root
    if root is not None:
        if not root.is_absolute() and config_path is not None:
            root = config_path.parent / root
        return root.resolve()
    ws = Workspace(cfg.workspace)
    if cfg.data.source == "synthetic" and cfg.data.synthetic is not None:
        return ws.raw / f"synthetic-{cfg.data.synthetic.fingerprint()}"
    if cfg.data.source == "files" and cfg.data.path is not None and not is_uri(cfg.data.path):
        return Path(cfg.data.path).resolve()  # your frames resolve beside your files
    return ws.data(cfg.name)


def _resolve_prompts(config_path: Path, ref: str) -> str:
    """Validate ``composer.prompts`` now (a bad prompt file fails at load, not mid-backfill) and
    return it with a file path made absolute (Spark workers load it from anywhere).

    Raises:
        ConfigError: an unknown set name (naming the run config) or an invalid prompt file
            (naming that file and its field).
    """
    from mspa_features.compose.prompts import PROMPT_SETS, get_prompt_set

    if ref in PROMPT_SETS:
        return ref
    if not ref.endswith((".yaml", ".yml")):
        raise ConfigError(
            config_path,
            [
                (
                    f"composer.prompts: unknown prompt set {ref!r}; valid: {sorted(PROMPT_SETS)} "
                    "or a .yaml file"
                )
            ],
        )
    path = Path(ref) if Path(ref).is_absolute() else (config_path.parent / ref)
    if not path.is_file():
        raise ConfigError(config_path, [f"composer.prompts: file not found: {path}"])
    get_prompt_set(path.resolve())
    return str(path.resolve())


class Workspace:
    """The folder layout one run writes (never committed; see .gitignore).

    ``raw/`` downloads, ``data/<dataset>/`` accepted contract tables, ``quarantine/<dataset>/``
    rejected rows with reasons, ``datasets/<dataset>/`` evaluation sets, ``results/`` outputs.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    def data(self, dataset: str) -> Path:
        return self.root / "data" / dataset

    def quarantine(self, dataset: str) -> Path:
        return self.root / "quarantine" / dataset

    def datasets(self, dataset: str) -> Path:
        return self.root / "datasets" / dataset

    @property
    def results(self) -> Path:
        return self.root / "results"

    def features(self, dataset: str) -> Path:
        return self.root / "features" / dataset

    @property
    def composer_cache(self) -> Path:
        """Shared by every run and stage: same inputs never cost twice."""
        return self.root / "cache" / "composer.sqlite"
