"""Ingest contract files from any source: validate, write accepted rows and quarantine.

Order matters: users and authors are validated first, so interactions can be checked against
the ids that were actually accepted (an interaction with an unknown id is quarantined).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from mspa_features.data.contracts import AUTHORS, INTERACTIONS, USERS
from mspa_features.data.validation import ValidationResult, validate
from mspa_features.io import READABLE, read_input, read_parquet

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
) -> list[ValidationResult]:
    """Validate ``users``, ``authors`` and ``interactions`` files found in ``folder``.

    Args:
        folder: holds one file per contract, named after it (``authors.parquet``, ...).
        author_modalities: author columns that must be non-empty.
        image_root: where relative frame paths resolve (defaults to ``folder``).
    """
    f = Path(folder)
    results: list[ValidationResult] = []
    known: dict[str, set[str]] = {}
    for contract in INGEST_ORDER:
        path = find_input(f, contract.name)
        df = read_input(path)
        res = validate(
            df,
            contract,
            source=str(path),
            known_ids=known,
            required_modalities=author_modalities if contract is AUTHORS else (),
            image_root=image_root or f,
        )
        if contract is USERS:
            known["users"] = set(res.accepted.column("user_id").to_pylist())
        elif contract is AUTHORS:
            known["authors"] = set(res.accepted.column("author_id").to_pylist())
        results.append(res)
    return results


def write_results(
    results: Sequence[ValidationResult], data_dir: Path, quarantine_dir: Path
) -> None:
    """Write each result's accepted table and quarantine table, atomically."""
    for res in results:
        res.write(data_dir / f"{res.contract}.parquet", quarantine_dir / f"{res.contract}.parquet")


def load_accepted(data_dir: str | Path, name: str) -> pd.DataFrame:
    """Read an accepted contract table back as a DataFrame."""
    from mspa_features.data.contracts import get_contract

    table: pa.Table = read_parquet(Path(data_dir) / f"{name}.parquet", get_contract(name).schema)
    return table.to_pandas()


__all__ = [
    "INGEST_ORDER",
    "find_input",
    "ingest_folder",
    "load_accepted",
    "read_input",
    "write_results",
]
