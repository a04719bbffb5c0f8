"""Ingest contract files from any source: validate, write accepted rows and quarantine.

Order matters: users and authors are validated first, so interactions can be checked against
the ids that were actually accepted (an interaction with an unknown id is quarantined).

Every ``data.source`` of a run config goes through :func:`ingest_source`: the user's files
(``files``), tables read through Spark (``spark``, written to contract files first), and the
two presets (``synthetic`` writes contract files; ``movielens``'s converter validates with the
same rules). :func:`ensure_data` is what every command that reads the accepted tables calls.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from mspa_features.data.contracts import AUTHORS, INTERACTIONS, USERS, get_contract
from mspa_features.data.rules import ValidationEngine, choose_engine, contract_rules, pandas_fits
from mspa_features.data.sources import (
    STAMP_FILE,
    SourceFile,
    SparkReader,
    TimestampFormat,
    prepare_frame,
    source_fingerprint,
    stage_files,
)
from mspa_features.data.validation import (
    SparkValidation,
    SparkValidator,
    ValidationResult,
    accepted_ids,
    require_accepted,
    validate,
)
from mspa_features.errors import ConfigError, IncompatibleSettingsError
from mspa_features.io import READABLE, read_input, read_parquet

if TYPE_CHECKING:
    from mspa_features.config import RunConfig, Workspace

INGEST_ORDER = (USERS, AUTHORS, INTERACTIONS)


def find_input(folder: Path, name: str) -> Path:
    """The file for contract ``name`` in ``folder`` (``name.parquet``, ``.csv`` or ``.tsv``)."""
    for suffix in READABLE:
        p = folder / f"{name}{suffix}"
        if p.exists():
            return p
    return folder / f"{name}.parquet"  # read_input reports it as not found


def ingest_folder(
    folder: str | Path,
    *,
    author_modalities: Sequence[str] = ("profile_text",),
    image_root: str | Path | None = None,
    columns: Mapping[str, Mapping[str, str]] | None = None,
    timestamps: Mapping[str, TimestampFormat] | None = None,
) -> list[ValidationResult]:
    """Validate ``users``, ``authors`` and ``interactions`` files found in ``folder``.

    Args:
        folder: holds one file per contract, named after it (``authors.parquet``, ...).
        author_modalities: author columns that must be non-empty.
        image_root: where relative frame paths resolve (defaults to ``folder``).
        columns: contract -> {contract column: file column} (``data.columns``).
        timestamps: contract -> how its instants are written (``data.timestamps``).
    """
    f = Path(folder)
    files = [
        SourceFile(c.name, find_input(f, c.name), str(find_input(f, c.name))) for c in INGEST_ORDER
    ]
    return ingest_files(
        files,
        author_modalities=author_modalities,
        image_root=image_root or f,
        columns=columns,
        timestamps=timestamps,
    )


def ingest_files(
    files: Sequence[SourceFile],
    *,
    author_modalities: Sequence[str] = ("profile_text",),
    image_root: str | Path | None = None,
    columns: Mapping[str, Mapping[str, str]] | None = None,
    timestamps: Mapping[str, TimestampFormat] | None = None,
    engine: ValidationEngine = "auto",
    validate_spark: SparkValidator | None = None,
    staging: Path | None = None,
) -> list[ValidationResult]:
    """Validate one file per contract (read from ``local``, named ``uri`` in errors and in the
    quarantine), with the declared column mapping and timestamp formats applied first.

    Each contract goes to the engine ``engine`` names (``auto``: by its size,
    :func:`mspa_features.data.rules.choose_engine`); ``validate_spark`` is the Spark engine
    (``spark_jobs.validate.validate_with_spark``, passed by the CLI), its output files staged
    under ``staging``. Both apply the same rules and write the same quarantine.

    Raises:
        IncompatibleSettingsError: the pandas engine was chosen for a file too large for it
            (the message names its size and ``data.validation_engine``).
    """
    by_name = {sf.contract: sf for sf in files}
    results: list[ValidationResult] = []
    known: dict[str, set[str]] = {}
    for contract in INGEST_ORDER:
        sf = by_name[contract.name]
        choice = choose_engine(
            engine, contract.name, sf.local, spark_available=validate_spark is not None
        )
        if choice.engine == "spark":
            assert validate_spark is not None  # choose_engine checked it
            mods = author_modalities if contract is AUTHORS else ()
            res = validate_spark(
                SparkValidation(
                    rules=contract_rules(contract, required_modalities=mods),
                    local=sf.local,
                    source=sf.uri,
                    columns=dict((columns or {}).get(contract.name) or {}),
                    timestamps=(timestamps or {}).get(contract.name),
                    known_ids=known,
                    image_root=Path(image_root) if image_root is not None else sf.local.parent,
                    check_images=True,
                    staging=(staging or Path(tempfile.mkdtemp(prefix="mspa-validation-")))
                    / contract.name,
                )
            )
            res.notes.append(f"validated by Spark ({choice.why})")
            _remember_ids(known, contract.name, res)
            results.append(res)
            continue
        refusal = pandas_fits(contract.name, choice.rows, source=sf.uri)
        if refusal is not None:
            raise IncompatibleSettingsError({"data.validation_engine": engine}, refusal)
        raw = read_input(sf.local)
        df = prepare_frame(
            raw,
            contract,
            columns=(columns or {}).get(contract.name),
            timestamps=(timestamps or {}).get(contract.name),
            source=sf.uri,
        )
        res = validate(
            df,
            contract,
            source=sf.uri,
            known_ids=known,
            required_modalities=author_modalities if contract is AUTHORS else (),
            image_root=image_root if image_root is not None else sf.local.parent,
            row_reasons=df.attrs["row_reasons"],
            raw_records=raw,  # the quarantine keeps the record as the file held it
            declared_dims=df.attrs["vector_dims"],
        )
        _remember_ids(known, contract.name, res)
        results.append(res)
    return results


def _remember_ids(known: dict[str, set[str]], contract: str, res: ValidationResult) -> None:
    """The ids later contracts must reference (users and authors that were accepted)."""
    if contract == USERS.name:
        known["users"] = accepted_ids(res, "user_id")
    elif contract == AUTHORS.name:
        known["authors"] = accepted_ids(res, "author_id")


def write_results(
    results: Sequence[ValidationResult], data_dir: Path, quarantine_dir: Path
) -> None:
    """Write each result's accepted table and quarantine table, atomically."""
    for res in results:
        res.write(data_dir / f"{res.contract}.parquet", quarantine_dir / f"{res.contract}.parquet")


def load_accepted(data_dir: str | Path, name: str) -> pd.DataFrame:
    """Read an accepted contract table back as a DataFrame."""
    table: pa.Table = read_parquet(Path(data_dir) / f"{name}.parquet", get_contract(name).schema)
    return table.to_pandas()


# --------------------------------------------------------------------------- run sources


def _source_files(
    cfg: RunConfig, ws: Workspace, read_spark: SparkReader | None
) -> tuple[list[SourceFile], Path | None]:
    """The contract files of ``cfg.data`` (written first for spark / synthetic) and where
    relative frame paths resolve (None: each file's folder)."""
    from mspa_features.config import frame_root

    data = cfg.data
    if data.source == "files":
        assert data.path is not None  # the config validator requires it
        files = stage_files(data.path, ws.raw / f"files-{_key(data.path)}")
        return files, cfg.composer.image_root or frame_root(cfg)
    if data.source == "spark":
        assert data.tables is not None and data.spark is not None
        if read_spark is None:
            raise ConfigError(
                "data.source",
                ["spark: run it through the mspa CLI (which reads data.tables with Spark)"],
            )
        out = ws.raw / f"spark-{source_fingerprint(data)}"
        if not all((out / f"{c.name}.parquet").is_file() for c in INGEST_ORDER):
            read_spark(data.tables, data.spark, out)
        files = [
            SourceFile(c.name, out / f"{c.name}.parquet", f"{getattr(data.tables, c.name)}")
            for c in INGEST_ORDER
        ]
        return files, cfg.composer.image_root
    from mspa_features.data.synthetic import write_synthetic

    syn = data.synthetic
    assert syn is not None  # the config validator fills it for source=synthetic
    raw = ws.raw / f"synthetic-{syn.fingerprint()}"
    if not (raw / "interactions.parquet").exists():
        write_synthetic(syn, raw)
    files = [
        SourceFile(c.name, raw / f"{c.name}.parquet", str(raw / f"{c.name}.parquet"))
        for c in INGEST_ORDER
    ]
    return files, raw


def _key(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ingest_source(
    cfg: RunConfig,
    ws: Workspace,
    *,
    read_spark: SparkReader | None = None,
    validate_spark: SparkValidator | None = None,
) -> list[ValidationResult]:
    """Validate ``cfg.data``'s contracts into ``data/<run>/`` and ``quarantine/<run>/``.

    Writes a stamp of what the tables were built from, so :func:`ensure_data` knows when to
    ingest again. ``data.validation_engine`` picks the engine per contract; ``validate_spark``
    is the Spark engine (the CLI passes it; without it every contract is validated in pandas).

    Raises:
        NothingAcceptedError: a contract kept no row (after writing the counts' tables).
        SchemaError: a file is missing or malformed as a whole.
    """
    data = cfg.data
    if data.source == "movielens":
        from mspa_features.data import movielens

        ml_dir = movielens.fetch(ws.raw)
        results = movielens.convert(ml_dir, positive_threshold=data.positive_threshold).results()
        files: list[SourceFile] = []
    else:
        files, root = _source_files(cfg, ws, read_spark)
        results = ingest_files(
            files,
            author_modalities=data.modalities(),
            image_root=root,
            columns={c.name: data.columns.of(c.name) for c in INGEST_ORDER},
            timestamps={c: data.timestamps.of(c) for c in ("authors", "interactions")},
            engine=data.validation_engine,
            validate_spark=validate_spark,
            staging=ws.raw / f"validation-{cfg.name}",
        )
    write_results(results, ws.data(cfg.name), ws.quarantine(cfg.name))
    # A load that accepted no row of a contract fails here, with the counts, not in a later stage.
    require_accepted(results, quarantine=ws.quarantine(cfg.name))
    stamp = {
        "source": data.source,
        "fingerprint": _fingerprint(cfg, files),
        "counts": {
            r.contract: {
                "input": r.n_input,
                "accepted": r.n_accepted,
                "quarantined": r.n_quarantined,
            }
            for r in results
        },
    }
    (ws.data(cfg.name) / STAMP_FILE).write_text(json.dumps(stamp, indent=2))
    return results


def _fingerprint(cfg: RunConfig, files: Sequence[SourceFile]) -> str:
    return source_fingerprint(cfg.data, list(files) if cfg.data.source == "files" else None)


def ensure_data(
    cfg: RunConfig,
    ws: Workspace,
    *,
    read_spark: SparkReader | None = None,
    validate_spark: SparkValidator | None = None,
) -> list[ValidationResult] | None:
    """Ingest ``cfg.data`` unless ``data/<run>/`` already holds what it would produce.

    Accepted tables without a stamp (validated by hand with ``mspa data validate --out``, even
    only some contracts) are used as they are, never overwritten. With a stamp, the data config and (for ``files``) each file's size and
    time must match it, else the source is ingested again.

    Returns:
        The validation results when it ingested, else None.
    """
    folder = ws.data(cfg.name)
    present = [(folder / f"{c.name}.parquet").is_file() for c in INGEST_ORDER]
    have = all(present)
    stamp_path = folder / STAMP_FILE
    if any(present) and not stamp_path.is_file():
        # tables written by hand (or by `mspa data validate --out`): never overwritten; a
        # missing one is reported by the command that needs it
        return None
    if have:
        try:
            stamp = json.loads(stamp_path.read_text())
        except (OSError, json.JSONDecodeError):
            stamp = {}
        files: list[SourceFile] = []
        if cfg.data.source == "files":
            assert cfg.data.path is not None
            files = stage_files(cfg.data.path, ws.raw / f"files-{_key(cfg.data.path)}", copy=False)
        if stamp.get("fingerprint") == _fingerprint(cfg, files):
            return None
    return ingest_source(cfg, ws, read_spark=read_spark, validate_spark=validate_spark)


__all__ = [
    "INGEST_ORDER",
    "ensure_data",
    "find_input",
    "ingest_files",
    "ingest_folder",
    "ingest_source",
    "load_accepted",
    "read_input",
    "write_results",
]
