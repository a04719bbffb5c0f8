"""Composer jobs shared by the CLI and the main job: build composers, compose, evaluate.

Outputs (all under the workspace):

* ``features/<dataset>/<composer>/preferences.parquet`` and ``author_profiles.parquet`` (the
  contracts), with ``.quarantine.parquet`` siblings for skipped inputs;
* ``results/u2a/<dataset>.json``: U2A/A2A metrics per composer;
* ``cache/composer.sqlite``: the content-addressed cache every job shares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pandas as pd
import pyarrow as pa

from mspa_features.compose.cache import ComposerCache
from mspa_features.compose.composer import Composer, LLMComposer, TemplateComposer
from mspa_features.compose.feature_rows import (
    FeatureOutput,
    batch_progress,
    compose_author_rows,
    compose_preference_rows,
)
from mspa_features.config import ComposerConfig, RunConfig, Workspace
from mspa_features.data.contracts import AUTHORS, Author
from mspa_features.errors import UnknownNameError
from mspa_features.generation.base import BackendConfig, GenerationBackend, GenerationConfig
from mspa_features.io import read_parquet, write_parquet_atomic
from mspa_features.snapshots.history import build_histories

Progress = Callable[[str, int, int], None]


@cache
def _backend(cfg_json: str) -> GenerationBackend:
    from mspa_features.generation.base import load_backend

    return load_backend(BackendConfig.model_validate_json(cfg_json))


def get_backend(cfg: BackendConfig) -> GenerationBackend:
    """One loaded backend per config per process (models are expensive to load)."""
    return _backend(cfg.model_dump_json())


@cache
def _encoder(cfg_json: str) -> Any:
    from mspa_features.compose.encoders import EncoderConfig, load_encoder

    return load_encoder(EncoderConfig.model_validate_json(cfg_json))


def get_encoder(cfg: ComposerConfig) -> Any:
    return _encoder(cfg.encoder.model_dump_json())


def make_composer(kind: str, cfg: ComposerConfig, cache_: ComposerCache | None) -> Composer:
    """``template`` (no LLM) or ``llm`` (the configured backend, prompt set and image root).

    Raises:
        ValueError: unknown ``kind``.
        ConfigError: ``cfg.prompts`` names no built-in set and no valid prompt file.
    """
    if kind == "template":
        return TemplateComposer()
    if kind == "llm":
        from mspa_features.compose.prompts import get_prompt_set

        return LLMComposer(
            get_backend(cfg.backend),
            gen=GenerationConfig(max_new_tokens=cfg.max_new_tokens),
            cache=cache_,
            token_budget=cfg.token_budget,
            max_frames_per_author=cfg.max_frames_per_author,
            image_root=cfg.image_root,
            prompts=get_prompt_set(cfg.prompts),
            structured=structured(cfg),
        )
    raise UnknownNameError("composer", kind, ["template", "llm"])


def load_authors(ws: Workspace, dataset: str) -> dict[str, Author]:
    """Accepted authors, the latest content snapshot of each."""
    table = read_parquet(ws.data(dataset) / "authors.parquet", AUTHORS.schema)
    records = AUTHORS.to_records(table)
    latest: dict[str, Author] = {}
    for a in sorted(records, key=lambda a: a.event_timestamp):
        latest[a.author_id] = a
    return latest


def _write(out: FeatureOutput, folder: Any, name: str) -> None:
    write_parquet_atomic(out.table, folder / f"{name}.parquet")
    write_parquet_atomic(out.quarantine, folder / f"{name}.quarantine.parquet")


def compose_authors(
    cfg: RunConfig, kind: str, *, limit: int | None = None, progress: Progress | None = None
) -> FeatureOutput:
    """Describe and embed authors; writes ``features/<dataset>/<kind>/author_profiles``."""
    ws = Workspace(cfg.workspace)
    cache_ = ComposerCache(ws.composer_cache)
    authors = list(load_authors(ws, cfg.name).values())[:limit]
    composer = make_composer(kind, _author_cfg(cfg.composer), cache_)
    out = compose_author_rows(
        composer,
        get_encoder(cfg.composer),
        authors,
        cache=cache_,
        on_batch=batch_progress(progress, "authors", len(authors)),
    )
    _write(out, ws.features(cfg.name) / kind, "author_profiles")
    return out


def compose_users(
    cfg: RunConfig,
    kind: str,
    *,
    as_of: datetime | None = None,
    users: Sequence[str] | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> FeatureOutput:
    """Compose preferences as of one instant; writes ``features/<dataset>/<kind>/preferences``.

    Args:
        as_of: the instant preferences are valid from (default: just after the last event).
        users: which users (default: every accepted user, sorted; ``limit`` keeps the first N).
    """
    from mspa_features.data.ingest import load_accepted

    ws = Workspace(cfg.workspace)
    cache_ = ComposerCache(ws.composer_cache)
    inter = load_accepted(ws.data(cfg.name), "interactions")
    if as_of is None:
        as_of = (inter["event_timestamp"].max() + pd.Timedelta(microseconds=1)).to_pydatetime()
    ids = (
        list(users)
        if users is not None
        else sorted(load_accepted(ws.data(cfg.name), "users")["user_id"].tolist())
    )
    ids = ids[:limit]
    histories = build_histories(inter, load_authors(ws, cfg.name), [(u, as_of) for u in ids])
    composer = make_composer(kind, cfg.composer, cache_)
    out = compose_preference_rows(
        composer,
        get_encoder(cfg.composer),
        histories,
        cache=cache_,
        on_batch=batch_progress(progress, "users", len(histories)),
    )
    _write(out, ws.features(cfg.name) / kind, "preferences")
    return out


def _author_cfg(cfg: ComposerConfig) -> ComposerConfig:
    return cfg.model_copy(update={"max_new_tokens": cfg.author_max_new_tokens})


def evaluate(
    cfg: RunConfig,
    *,
    composers: Sequence[str] | None = None,
    cohort: int | None = -1,
    authors_pool: str | None = None,
    with_u2a: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """U2A/A2A metrics for each composer; writes ``results/u2a/<dataset>.json``.

    The U2A test split is used; ``cohort`` (default: the config's) keeps its first N users
    sorted by id, so the same cohort is evaluated on every run. ``authors_pool`` (default: the
    config's ``eval.authors``) is ``all`` or ``cohort`` (see :func:`author_pool`); every composer
    is scored on the same users and the same authors.
    """
    from mspa_features.compose.prompts import get_prompt_set
    from mspa_features.evaluation.composer_eval import evaluate_composer
    from mspa_features.evaluation.datasets import U2ADataset

    prompt_set = get_prompt_set(cfg.composer.prompts)

    ws = Workspace(cfg.workspace)
    cache_ = ComposerCache(ws.composer_cache)
    authors = load_authors(ws, cfg.name)
    u2a = U2ADataset.load(ws.datasets(cfg.name))
    a2a = pd.read_parquet(ws.datasets(cfg.name) / "a2a.parquet")
    test = u2a.table[u2a.table["split"] == "test"].sort_values("user_id").reset_index(drop=True)
    n = cfg.eval.cohort_users if cohort == -1 else cohort
    if n is not None:
        test = test.head(n)
    if not with_u2a:
        test = test.head(0)
    if cfg.eval.a2a_triples is not None:
        a2a = a2a.head(cfg.eval.a2a_triples)
    pool_kind = authors_pool or cfg.eval.authors
    pool = author_pool(test, a2a, cfg.u2a.num_candidates) if pool_kind == "cohort" else None
    results: dict[str, Any] = {
        "dataset": cfg.name,
        "seed": cfg.seed,
        "created": datetime.now(UTC).isoformat(),
        "cohort_users": len(test),
        "test_users_total": int((u2a.table["split"] == "test").sum()),
        "generations": cfg.eval.generations,
        "temperature": cfg.eval.temperature,
        "author_pool": pool_kind,
        "n_authors": len(pool) if pool is not None else len(authors),
        "a2a_triples": len(a2a),
        "prompt_set": prompt_set.name,
        "prompt_set_hash": prompt_set.hash,
        "composers": {},
    }
    answer_rows: list[dict[str, Any]] = []
    for kind in composers or cfg.eval.composers:
        comp_cfg = cfg.composer
        composer = make_composer(kind, comp_cfg, cache_)
        recommender = (
            get_backend(comp_cfg.backend) if "llm" in (composers or cfg.eval.composers) else None
        )
        answer_decoding = decoding_of(comp_cfg, recommender)
        ev = evaluate_composer(
            kind,
            SplitComposer(composer, make_composer(kind, _author_cfg(comp_cfg), cache_)),
            get_encoder(comp_cfg),
            test,
            authors,
            a2a,
            num_candidates=cfg.u2a.num_candidates,
            cache=cache_,
            recommender=recommender if with_u2a else None,
            generations=cfg.eval.generations,
            temperature=cfg.eval.temperature,
            rec_max_new_tokens=cfg.eval.rec_max_new_tokens,
            pool=pool,
            progress=(lambda stage, i, t, k=kind: progress(f"{k}: {stage}", i, t))
            if progress
            else None,
            rec_prompt=prompt_set.recommend,
            decoding=answer_decoding,
            ci_seed=cfg.seed,
        )
        row = ev.row()
        # how the composer decoded its texts ("none": no LLM, the template) and how the
        # recommender decoded the answers (the same LLM for every composer)
        row["decoding"] = getattr(composer, "decoding", "none")
        row["answer_decoding"] = answer_decoding if recommender is not None and with_u2a else "none"
        results["composers"][kind] = row
        answer_rows += [{"composer": kind, **a} for a in ev.answers]
    out = ws.results / "u2a"
    out.mkdir(parents=True, exist_ok=True)
    answers_path = out / f"{cfg.name}.answers.parquet"
    write_parquet_atomic(answers_table(answer_rows), answers_path)
    results["answers_path"] = str(answers_path)
    (out / f"{cfg.name}.json").write_text(json.dumps(results, indent=2, default=str))
    return results


#: Columns of the per-answer evaluation output (``results/u2a/<dataset>.answers.parquet``).
ANSWER_SCHEMA = pa.schema(
    [
        ("composer", "string"),
        ("user_id", "string"),
        ("m", "int64"),
        ("generation", "int64"),
        ("pick", "int64"),
        ("truth", "int64"),
        ("correct", "bool"),
        ("status", "string"),
        ("decoding", "string"),
        ("reason", "string"),
        ("error", "string"),
    ]
)


def answers_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Per-answer rows -> a table of :data:`ANSWER_SCHEMA` (the recommendation reason and the
    answer's parse status and decoding beside the pick and the truth)."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in ANSWER_SCHEMA}
    return pa.Table.from_pydict(cols, schema=ANSWER_SCHEMA)


def decoding_of(cfg: ComposerConfig, backend: GenerationBackend | None) -> str:
    """How ``backend`` decodes under ``cfg``: ``constrained`` (structured outputs asked for and
    supported), ``free``, or ``none`` (no backend)."""
    if backend is None:
        return "none"
    return LLMComposer(backend, structured=structured(cfg)).decoding


def structured(cfg: ComposerConfig) -> bool:
    """Whether the config asks for schema-constrained decoding (``composer.structured``)."""
    return bool(getattr(cfg, "structured", False))


def author_pool(test: pd.DataFrame, a2a: pd.DataFrame, num_candidates: Sequence[int]) -> set[str]:
    """Authors a cohort's evaluation needs: targets, candidates at every m, A2A triple members.

    Retrieval (Recall/NDCG@K) then ranks the target among these instead of every author: the
    numbers are higher than over the full catalogue, and comparable between composers scored on
    the same pool.
    """
    pool = set(test["target_author_id"])
    for m in num_candidates:
        for cands in test[f"candidates_m{m}"]:
            pool.update(cands)
    for col in ("a1", "a2", "a3"):
        pool.update(a2a[col])
    return pool


class SplitComposer(Composer):
    """Preferences from one composer, author descriptions from another (e.g. the same model with
    shorter outputs, or the template's descriptions beside a model's preferences)."""

    def __init__(self, users: Composer, authors: Composer):
        self._u, self._a = users, authors

    @property
    def stats(self) -> Any:
        return getattr(self._u, "stats", None) or getattr(self._a, "stats", None)

    @property
    def model_version(self) -> str:
        return self._u.model_version

    @property
    def preference_prompt_hash(self) -> str:
        return self._u.preference_prompt_hash

    @property
    def author_prompt_hash(self) -> str:
        return self._a.author_prompt_hash

    def compose_preferences(self, histories):  # type: ignore[no-untyped-def]
        return self._u.compose_preferences(histories)

    def describe_authors(self, authors):  # type: ignore[no-untyped-def]
        return self._a.describe_authors(authors)
