"""Compact embeddings: the reducer (PCA, or Matryoshka-style truncation), the compact set a
feature set's backfill becomes, how well cosines survive, and the Pareto maths of the table.

The reducer is fitted only on rows with ``event_timestamp`` before ``fit_before`` (the
ablation's split): the preference snapshots and author profiles valid before it, pooled, so
preference and author codes live in one space and their cosine stays meaningful. Every row is
then transformed (past and future alike, as a serving system would after fitting once), coded
by :func:`mspa_features.serving.compact.pack` and written with its source row's ids and
timestamps, so a point-in-time read of the compact set sees the same snapshots as one of the
full set.

PCA follows scikit-learn (``transform(x) = (x - mean) @ components.T``); truncation keeps the
first ``k`` dimensions and renormalises, which only preserves an embedding trained for it
(Matryoshka representation learning): :data:`MATRYOSHKA_ENCODERS` lists the encoders known to
be; the embedded all-MiniLM-L6-v2 is not, so truncation is an option the table shows, never
the default.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from mspa_features.errors import DataError, InvalidValueError, UnknownNameError
from mspa_features.names import model_version_digest, row_model_version
from mspa_features.serving.compact import (
    AUTHOR_CODE,
    PREF_CODE,
    CompactManifest,
    dequantize_int8,
    pack,
    quantize_int8,
)

METHODS: tuple[str, ...] = ("pca", "truncate")
#: Encoders trained with a Matryoshka loss (their leading dimensions are an embedding of their
#: own), matched as substrings of the lower-cased model version.
MATRYOSHKA_ENCODERS: tuple[str, ...] = (
    "nomic-embed-text-v1.5",
    "mxbai-embed-large",
    "text-embedding-3",
    "jina-embeddings-v3",
    "matryoshka",
)
#: (table, key, embedding column, code column, the columns copied beside the code)
TABLES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    (
        "preferences",
        "user_id",
        "pref_emb",
        PREF_CODE,
        ("history_count", "pref_status", "pref_decoding"),
    ),
    (
        "author_profiles",
        "author_id",
        "author_emb",
        AUTHOR_CODE,
        ("author_status", "author_decoding"),
    ),
)


def supports_truncation(model_version: str) -> bool:
    """Whether the encoder named in ``model_version`` is known to be Matryoshka-trained."""
    mv = model_version.lower()
    return any(name in mv for name in MATRYOSHKA_ENCODERS)


# --------------------------------------------------------------------------- reducer


@dataclass(kw_only=True)
class Reducer:
    """A fitted linear reducer from ``d`` to ``dims`` dimensions.

    Attributes:
        method: ``pca`` or ``truncate``.
        dims: output width ``k``.
        mean: (d,) centre subtracted before projecting (zeros for truncation).
        components: (k, d) orthonormal rows (the identity's first ``k`` rows for truncation).
        explained_variance_ratio: share of the fitted rows' variance the ``k`` components keep.
        n_fit: rows fitted on.
    """

    method: str
    dims: int
    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: float
    n_fit: int

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(n, d) -> (n, k) float32: PCA scores, or the first k dims renormalised."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.components.shape[1]:
            raise InvalidValueError("embeddings shape", x.shape, f"(n, {self.components.shape[1]})")
        if self.method == "truncate":
            z = x[:, : self.dims]
            norm = np.linalg.norm(z, axis=1, keepdims=True)
            return (z / np.where(norm > 0, norm, 1.0)).astype(np.float32)
        return ((x - self.mean) @ self.components.T).astype(np.float32)  # (n, k)

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        """(n, k) -> (n, d): back into the embedding space (exact on the fitted subspace)."""
        z = np.asarray(z, dtype=np.float64)
        return z @ self.components + self.mean  # (n, d)

    def save(self, path: Path) -> Path:
        np.savez(
            path,
            method=self.method,
            dims=self.dims,
            mean=self.mean,
            components=self.components,
            explained_variance_ratio=self.explained_variance_ratio,
            n_fit=self.n_fit,
        )
        return path

    @classmethod
    def load(cls, path: Path) -> Reducer:
        with np.load(path) as z:
            return cls(
                method=str(z["method"]),
                dims=int(z["dims"]),
                mean=z["mean"],
                components=z["components"],
                explained_variance_ratio=float(z["explained_variance_ratio"]),
                n_fit=int(z["n_fit"]),
            )


def fit_reducer(x: np.ndarray, method: str, dims: int, *, seed: int = 0) -> Reducer:
    """Fit a :class:`Reducer` on the rows of ``x`` (n, d).

    Raises:
        UnknownNameError: ``method`` is not one of :data:`METHODS`.
        InvalidValueError: ``dims`` is not in ``[1, d]`` (PCA: ``[1, min(n, d)]``).
        DataError: ``x`` holds a non-finite value.
    """
    if method not in METHODS:
        raise UnknownNameError("reducer method", method, METHODS)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise DataError("reducer input", f"needs a finite (n, d) array, got shape {x.shape}")
    n, d = x.shape
    limit = d if method == "truncate" else min(n, d)
    if not 1 <= dims <= limit:
        raise InvalidValueError("dims", dims, f"in [1, {limit}] ({method} on {n} x {d} rows)")
    if method == "truncate":
        total = float(((x - x.mean(0)) ** 2).sum())
        kept = float(((x[:, :dims] - x[:, :dims].mean(0)) ** 2).sum())
        return Reducer(
            method=method,
            dims=dims,
            mean=np.zeros(d),
            components=np.eye(dims, d),
            explained_variance_ratio=kept / total if total > 0 else 1.0,
            n_fit=n,
        )
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dims, svd_solver="full", random_state=seed).fit(x)
    return Reducer(
        method=method,
        dims=dims,
        mean=pca.mean_.astype(np.float64),
        components=pca.components_.astype(np.float64),
        explained_variance_ratio=float(pca.explained_variance_ratio_.sum()),
        n_fit=n,
    )


def decode_codes(z: np.ndarray, dtype: str) -> np.ndarray:
    """What a reader decodes from the codes of ``z`` (n, k) stored as ``dtype``."""
    if dtype == "float16":
        return np.asarray(z, dtype=np.float16).astype(np.float32)
    q, scale = quantize_int8(z)
    return dequantize_int8(q, scale)


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    denom = na * nb
    return np.where(denom > 0, (a * b).sum(1) / np.where(denom > 0, denom, 1.0), np.nan)


def cosine_preservation(
    reducer: Reducer, dtype: str, users: np.ndarray, authors: np.ndarray
) -> dict[str, float]:
    """How well cosines survive reduction and coding, on paired rows ``users[i]``,
    ``authors[i]`` (n, d) each:

    * ``recon_cosine_mean``/``min``: cos(x, inverse(decode(code(x)))) over both sets of rows;
    * ``pair_cosine_corr``: Pearson correlation between cos(user_i, author_i) in the full space
      and the cosine of their decoded codes (what ``pref_author_cosine`` serves);
    * ``pair_cosine_mae``: the mean absolute difference between those two cosines.
    """
    x = np.concatenate([users, authors])
    zq = decode_codes(reducer.transform(x), dtype)
    rec = _cos_rows(x, reducer.inverse_transform(zq))
    full = _cos_rows(users, authors)
    n = len(users)
    coded = _cos_rows(zq[:n], zq[n:])
    ok = np.isfinite(full) & np.isfinite(coded)
    corr = float(np.corrcoef(full[ok], coded[ok])[0, 1]) if ok.sum() > 2 else math.nan
    return {
        "recon_cosine_mean": float(np.nanmean(rec)),
        "recon_cosine_min": float(np.nanmin(rec)),
        "pair_cosine_corr": corr,
        "pair_cosine_mae": float(np.abs(full[ok] - coded[ok]).mean()) if ok.any() else math.nan,
    }


# --------------------------------------------------------------------------- compact sets


def compact_set_name(source_set: str, method: str, dims: int, dtype: str) -> str:
    """``template_pca32_int8`` / ``template_trunc64_float16``."""
    tag = "trunc" if method == "truncate" else method
    return f"{source_set}_{tag}{dims}_{dtype}"


def compact_model_version(
    source_version: str, method: str, dims: int, dtype: str, fit_before: datetime
) -> str:
    """The ``model_version`` of a compact row: the reduction, the reducer's fit cut-off and the
    digest of the source row's version, ``pca16-int8@fit<1998-03-01:<12 hex>`` (38 bytes).

    The source version is not spelled out: ``template-v2|all-minilm-l6-v2:mean:<fp>`` and the
    reduction made 72 bytes, past what a value of a Redis listpack hash may hold (see
    :data:`~mspa_features.names.MAX_MODEL_VERSION`), which made every compact set's online hash
    a hashtable. The manifest maps each row version to its source (``source_model_versions``)
    and :func:`~mspa_features.names.model_version_matches` finds the rows by either."""
    tag = "trunc" if method == "truncate" else method
    full = f"{tag}{dims}-{dtype}@fit<{fit_before:%Y-%m-%d}:{model_version_digest(source_version)}"
    return row_model_version(full)


def _read_table(folder: Path, columns: Sequence[str]) -> Any:
    import pyarrow.dataset as ds

    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        raise DataError(str(folder), "holds no parquet rows (backfill the feature set first)")
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    have = set(dataset.schema.names)
    return dataset.to_table(columns=[c for c in columns if c in have]).to_pandas()


def read_source(source_dir: Path) -> dict[str, Any]:
    """table -> pandas frame of a feature set's backfill (key, timestamps, embedding, the
    columns a compact set copies, model_version, ds)."""
    out = {}
    for table, key, emb, _code, extra in TABLES:
        cols = [key, "event_timestamp", "created_timestamp", emb, *extra, "model_version", "ds"]
        df = _read_table(Path(source_dir) / table, cols)
        df["event_timestamp"] = df["event_timestamp"].dt.tz_convert("UTC")
        df["created_timestamp"] = df["created_timestamp"].dt.tz_convert("UTC")
        out[table] = df
    return out


def _stack(values: Any) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float64) for v in values]) if len(values) else None


@dataclass(kw_only=True)
class FitRows:
    """The rows a reducer was fitted on: per table, the count and the latest event time."""

    counts: dict[str, int]
    max_event_timestamp: str | None
    x: np.ndarray  # (n, d) pooled embeddings


def fit_rows(source: dict[str, Any], fit_before: datetime) -> FitRows:
    """The embeddings of every row with ``event_timestamp < fit_before``, pooled over tables.

    Raises:
        DataError: no row precedes ``fit_before``.
    """
    import pandas as pd

    cut = pd.Timestamp(fit_before)
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    parts, counts, latest = [], {}, []
    for table, _key, emb, _code, _extra in TABLES:
        df = source[table]
        before = df[df["event_timestamp"] < cut]
        counts[table] = len(before)
        if len(before):
            parts.append(_stack(before[emb].tolist()))
            latest.append(before["event_timestamp"].max())
    if not parts:
        raise DataError("reducer fit", f"no snapshot precedes {cut.isoformat()} (the split)")
    return FitRows(
        counts=counts,
        max_event_timestamp=max(latest).isoformat() if latest else None,
        x=np.concatenate(parts),
    )


def write_compact_set(
    source: dict[str, Any],
    folder: Path,
    reducer: Reducer,
    dtype: str,
    *,
    name: str,
    source_set: str,
    source_dir: Path,
    fit_before: datetime,
    fit: FitRows,
    extra: dict[str, Any] | None = None,
) -> CompactManifest:
    """Write compact set ``name`` (both tables, ``ds=`` partitions as in the source, and the
    manifest and reducer) to ``folder``, replacing what was there at once (staged, then renamed).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    stage = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    rows: dict[str, int] = {}
    lineage: dict[str, str] = {}  # row model_version -> the source version it was reduced from
    for table, key, emb, code, extra_cols in TABLES:
        df = source[table]
        rows[table] = len(df)
        codes = pack(reducer.transform(_stack(df[emb].tolist())), dtype) if len(df) else []
        out = df[[key, "event_timestamp", "created_timestamp", *extra_cols]].copy()
        out.insert(3, code, codes)
        mapped = {
            mv: compact_model_version(mv, reducer.method, reducer.dims, dtype, fit_before)
            for mv in df["model_version"].astype(str).unique()
        }
        out["model_version"] = df["model_version"].astype(str).map(mapped)
        lineage.update({short: mv for mv, short in mapped.items()})
        for ds, part in out.groupby(df["ds"].astype(str), sort=True):
            t = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
            t = t.cast(
                t.schema.set(
                    t.schema.get_field_index(code), pa.field(code, pa.binary(), nullable=False)
                )
            )
            target = stage / table / f"ds={ds}"
            target.mkdir(parents=True, exist_ok=True)
            pq.write_table(t, target / "part-0.parquet", coerce_timestamps="us")
    reducer.save(stage / "reducer.npz")
    manifest = CompactManifest(
        name=name,
        source_set=source_set,
        source_path=str(Path(source_dir).resolve()),
        method=reducer.method,
        dims=reducer.dims,
        dtype=dtype,
        fit_before=fit_before.isoformat(),
        fit_rows=dict(fit.counts),
        fit_max_event_timestamp=fit.max_event_timestamp,
        model_version="+".join(sorted(lineage)),
        source_model_versions=dict(sorted(lineage.items())),
        rows=rows,
        extra={"explained_variance_ratio": reducer.explained_variance_ratio, **(extra or {})},
    )
    manifest.write(stage)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
        os.replace(stage, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage, folder)
    return manifest


def compact_root(cfg: Any) -> Path:
    """``<workspace>/features/<run>/compact``: where a run's compact sets live (not a feature
    set folder itself, so ``mspa register`` never takes it for one)."""
    from mspa_features.config import Workspace

    return Workspace(cfg.workspace).features(cfg.name) / "compact"


def build_compact_sets(
    cfg: Any,
    source_set: str,
    *,
    fit_before: datetime,
    dims: Sequence[int],
    dtypes: Sequence[str],
    methods: Sequence[str] = ("pca",),
    seed: int = 0,
) -> list[CompactManifest]:
    """Fit one reducer per (method, dims) on ``source_set``'s rows before ``fit_before`` and
    write one compact set per (method, dims, dtype) under :func:`compact_root`.

    Raises:
        DataError: the feature set has no rows, or none before ``fit_before``.
        InvalidValueError / UnknownNameError: a dims, dtype or method that cannot be used.
    """
    from mspa_features.config import Workspace
    from mspa_features.serving.compact import DTYPES

    for dt in dtypes:
        if dt not in DTYPES:
            raise UnknownNameError("compact dtype", dt, DTYPES)
    source_dir = Workspace(cfg.workspace).features(cfg.name) / source_set
    source = read_source(source_dir)
    fit = fit_rows(source, fit_before)
    # Paired rows for the cosine check: each preference snapshot with a random author.
    rng = np.random.default_rng(seed)
    users = _stack(source["preferences"]["pref_emb"].tolist())
    authors_all = _stack(source["author_profiles"]["author_emb"].tolist())
    take = rng.choice(len(users), size=min(len(users), 2000), replace=False)
    pair_u, pair_a = users[take], authors_all[rng.integers(0, len(authors_all), size=len(take))]
    out: list[CompactManifest] = []
    for method in methods:
        for k in dims:
            reducer = fit_reducer(fit.x, method, int(k), seed=seed)
            for dt in dtypes:
                name = compact_set_name(source_set, method, int(k), dt)
                kept = cosine_preservation(reducer, dt, pair_u, pair_a)
                mv = str(source["preferences"]["model_version"].iloc[0])
                out.append(
                    write_compact_set(
                        source,
                        compact_root(cfg) / name,
                        reducer,
                        dt,
                        name=name,
                        source_set=source_set,
                        source_dir=source_dir,
                        fit_before=fit_before,
                        fit=fit,
                        extra={
                            **kept,
                            "matryoshka_encoder": supports_truncation(mv),
                            "seed": seed,
                        },
                    )
                )
    return out


# --------------------------------------------------------------------------- Pareto


#: The scale the issue prices: 400M users.
USERS_AT_SCALE = 400_000_000


def at_scale(bytes_per_entity: float, entities: int = USERS_AT_SCALE) -> float:
    """Bytes for ``entities`` entities at ``bytes_per_entity`` each (a linear extrapolation:
    no index, replication or store overhead)."""
    return float(bytes_per_entity) * int(entities)


def human_bytes(n: float) -> str:
    """``1.6 TB`` style (decimal units, as storage is billed)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} PB"  # pragma: no cover - the loop returns


def pareto_front(cost: Sequence[float], loss: Sequence[float]) -> list[bool]:
    """Whether each point is Pareto-optimal when both ``cost`` (bytes) and ``loss`` (AUC lost
    against the full embedding) are to be minimised: no other point is at most as large in
    both and smaller in one."""
    c, l_ = np.asarray(cost, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    out = []
    for i in range(len(c)):
        dominated = np.any((c <= c[i]) & (l_ <= l_[i]) & ((c < c[i]) | (l_ < l_[i])))
        out.append(not bool(dominated))
    return out


def plot_pareto(rows: Sequence[dict[str, Any]], path: Path, *, variant: str) -> Path:
    """Delta AUC vs the full embedding (with its CI) against bytes per user, one point per
    compact set of ``variant``, the full embedding at zero; log-scaled bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    markers = {"int8": "o", "float16": "s", "float32": "*"}
    for r in rows:
        if r["variant"] != variant:
            continue
        x, y = r["bytes_per_user"], r["delta_auc_vs_full"]
        lo, hi = r.get("ci_low"), r.get("ci_high")
        yerr = None if lo is None else [[y - lo], [hi - y]]
        ax.errorbar(
            x,
            y,
            yerr=yerr,
            fmt=markers.get(r["dtype"], "o"),
            capsize=3,
            color="C0" if r["method"] == "pca" else ("C1" if r["method"] == "truncate" else "C3"),
        )
        ax.annotate(r["label"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("bytes per user (stored embedding value, measured in the online store)")
    ax.set_ylabel("delta AUC vs full embedding (95% CI)")
    ax.set_title(f"compact embeddings: +{variant}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "MATRYOSHKA_ENCODERS",
    "METHODS",
    "USERS_AT_SCALE",
    "FitRows",
    "Reducer",
    "at_scale",
    "build_compact_sets",
    "compact_root",
    "compact_set_name",
    "cosine_preservation",
    "decode_codes",
    "fit_reducer",
    "fit_rows",
    "human_bytes",
    "pareto_front",
    "plot_pareto",
    "read_source",
    "supports_truncation",
    "write_compact_set",
]
