"""Recall replay (MSPA "Offline Performance"): Hit Rate@K of every recall source (``mspa recall``).

Every positive test impression of the ablation's split (a user, its instant ``t`` in
``[T, T + w)`` and the author engaged with, the *target*) is replayed against the whole author
catalogue valid at ``t``, and each recall source retrieves its top K:

* ``pref@<set>``: the user's preference embedding valid at ``t`` -> the author embeddings valid
  at ``t`` (cosine), per registered feature set (``template``, ``llm``, ...);
* ``aligned@<set>``: the aligned-ID author embeddings (content -> M_T ID space,
  :mod:`ranker_hooks.aligned_id`) valid at ``t``, user vector = the mean of those of the
  user's positive authors before ``t`` (when ``aligned__<set>`` is registered);
* ``id@M_T``: the paper's baseline, the author-ID table of the IDs-only ranker M_T trained on
  ``[T0, T)`` (:mod:`ranker_hooks.lis.leaks.build`), user vector = the mean of M_T's embeddings
  of the user's positive authors before ``t``; candidates are the authors M_T has seen;
* ``popularity``: positives per author strictly before ``t``, over the authors valid at ``t``;
* ``lis@future_id_n<n>``: the same with M_{T+n}'s table (M_T warm-started on ``[T, T+n)``, the
  LIS leak): it has seen the test rows themselves, an upper bound, never a recall source.

Point in time: feature values come from Feast's historical read, each at the query's own
instant (:mod:`mspa_features.serving.catalogue` groups the instants by catalogue epoch); the
online vector index answers only for "now", so the search here is exact over those values.
Authors the user already engaged with positively before ``t`` are not candidates (unless
``exclude_seen=False``). A query without a query vector (no snapshot yet, no history) or
whose target is not in a source's catalogue is a miss for that source.
Hit Rate@K with 95 % bootstrap CIs over users, and the paired delta of each source to
``id@M_T``, for K in ``{10, 50, 100, 1000}`` (the largest capped at the catalogue size).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mspa_features.config import RunConfig, Workspace
from mspa_features.errors import AblationError
from mspa_features.evaluation import recall as R

if TYPE_CHECKING:
    from feast import FeatureStore

    from ranker_hooks.rankers.base import IdEmbeddings, Ranker

EXPERIMENT = "mspa-recall"
BASELINE = "id@M_T"
_CHUNK = 2048  # queries scored at once against a static table (bounds the (q, m) matrix)


@dataclass
class Queries:
    """The replayed impressions, sorted by time.

    Attributes:
        users: ``(n,)`` user ids.
        t_us: ``(n,)`` instants, UTC microseconds.
        target: ``(n,)`` the engaged author's index in ``authors`` (-1: unknown author).
        history: per query, the distinct authors (indices) the user engaged with positively
            strictly before its instant, oldest first.
        authors: the global author index (sorted ids).
        allowed: ``(len(authors),)`` the authors that may be retrieved (a sample's authors),
            or None: every author.
    """

    users: np.ndarray
    t_us: np.ndarray
    target: np.ndarray
    history: list[np.ndarray]
    authors: list[str]
    allowed: np.ndarray | None = None

    @property
    def instants(self) -> pd.Series:
        return pd.Series(pd.to_datetime(self.t_us, unit="us", utc=True))

    def __len__(self) -> int:
        return len(self.users)


def build_queries(
    interactions: pd.DataFrame,
    authors: Sequence[str],
    start: Any,
    end: Any,
    *,
    users: Iterable[str] | None = None,
    sample_authors: Iterable[str] | None = None,
) -> Queries:
    """Every positive impression in ``[start, end)`` with the user's positive history before it.

    With ``users`` / ``sample_authors`` (a sample), only those users' impressions of those
    authors, and only those authors as candidates; histories keep every earlier positive.
    """
    from ranker_hooks.lis.leaks.windows import checked_interactions, in_window

    df = checked_interactions(interactions, "recall replay")
    authors = sorted({str(a) for a in authors})
    code = {a: i for i, a in enumerate(authors)}
    test = in_window(df, start, end)
    test = test[test["label"] == 1]
    if users is not None:
        test = test[test["user_id"].isin({str(u) for u in users})]
    allowed = None
    if sample_authors is not None:
        keep = {str(a) for a in sample_authors}
        test = test[test["author_id"].isin(keep)]
        allowed = np.array([a in keep for a in authors], dtype=bool)
    pos = df[df["label"] == 1].drop_duplicates(["user_id", "author_id"], keep="first")
    by_user = {
        u: (
            g["event_timestamp"].to_numpy("datetime64[us]").astype(np.int64),
            g["author_id"].map(code).fillna(-1).to_numpy(np.int64),
        )
        for u, g in pos.groupby("user_id", sort=False)
    }
    t_us = test["event_timestamp"].to_numpy("datetime64[us]").astype(np.int64)
    users = test["user_id"].to_numpy(dtype=object)
    history = []
    empty = np.zeros(0, dtype=np.int64)
    for u, t in zip(users, t_us, strict=True):
        ts, codes = by_user.get(u, (empty, empty))
        h = codes[: np.searchsorted(ts, t, side="left")]
        history.append(h[h >= 0])
    return Queries(
        users=users,
        t_us=t_us,
        target=test["author_id"].map(code).fillna(-1).to_numpy(np.int64),
        history=history,
        authors=authors,
        allowed=allowed,
    )


# --------------------------------------------------------------------------- sources


@dataclass
class SourceResult:
    """One recall source's ranks and what it could see."""

    name: str
    kind: str
    description: str
    ranks: np.ndarray
    has_query: np.ndarray  # (n,) bool: the query had a query vector
    with_query: int  # queries with a query vector
    target_candidate: int  # queries whose target is a candidate of the source
    catalogue_median: float  # candidates per query (median over queries)
    leaked: bool = False
    seconds: float = 0.0


def _mask_seen(scores: np.ndarray, rows: np.ndarray, q: Queries, exclude_seen: bool) -> None:
    if exclude_seen:
        for j, i in enumerate(rows):
            scores[j, q.history[i]] = np.nan


def _score_block(
    scores: np.ndarray, rows: np.ndarray, q: Queries, exclude_seen: bool, acc: dict[str, Any]
) -> None:
    """Ranks of ``rows`` from their ``(len(rows), m)`` scores (NaN: not a candidate)."""
    _mask_seen(scores, rows, q, exclude_seen)
    if q.allowed is not None:
        scores[:, ~q.allowed] = np.nan
    acc["ranks"][rows] = R.target_ranks(scores, q.target[rows])
    has_query = ~np.isnan(scores).all(axis=1)
    acc["with_query"] += int(has_query.sum())
    acc["has_query"][rows] = has_query
    t = q.target[rows]
    cand = np.zeros(len(rows), dtype=bool)
    ok = t >= 0
    cand[ok] = ~np.isnan(scores[np.flatnonzero(ok), t[ok]])
    acc["target_candidate"] += int(cand.sum())
    acc["sizes"].append((~np.isnan(scores)).sum(axis=1)[has_query])


def _new_acc(n: int) -> dict[str, Any]:
    return {
        "ranks": np.full(n, np.inf),
        "has_query": np.zeros(n, dtype=bool),
        "with_query": 0,
        "target_candidate": 0,
        "sizes": [],
    }


def _result(name: str, kind: str, description: str, acc: dict, t0: float, **kw) -> SourceResult:
    sizes = np.concatenate(acc["sizes"]) if acc["sizes"] else np.zeros(0)
    return SourceResult(
        name=name,
        kind=kind,
        description=description,
        ranks=acc["ranks"],
        has_query=acc["has_query"],
        with_query=acc["with_query"],
        target_candidate=acc["target_candidate"],
        catalogue_median=float(np.median(sizes)) if len(sizes) else 0.0,
        seconds=time.perf_counter() - t0,
        **kw,
    )


def _history_mean(matrix: np.ndarray, valid: np.ndarray, q: Queries, rows: np.ndarray):
    """``(len(rows), d)``: the mean of the valid rows of each query's history; NaN if none."""
    out = np.full((len(rows), matrix.shape[1]), np.nan, dtype=np.float64)
    for j, i in enumerate(rows):
        h = q.history[i]
        h = h[valid[h]]
        if len(h):
            out[j] = matrix[h].mean(axis=0)
    return out


def _table_matrix(table: IdEmbeddings, authors: Sequence[str]) -> np.ndarray:
    """An ID table on the global author index: ``(m, d)``, NaN rows for ids it lacks."""
    pos = {str(a): i for i, a in enumerate(table.ids)}
    m = np.full((len(authors), table.matrix.shape[1]), np.nan, dtype=np.float32)
    for j, a in enumerate(authors):
        i = pos.get(a)
        if i is not None:
            m[j] = table.matrix[i]
    return m


def rank_static_table(
    name: str,
    description: str,
    matrix: np.ndarray,
    q: Queries,
    *,
    exclude_seen: bool,
    leaked: bool = False,
) -> SourceResult:
    """History-mean retrieval over a fixed ``(m, d)`` table (M_T, M_{T+n})."""
    t0 = time.perf_counter()
    acc = _new_acc(len(q))
    valid = ~np.isnan(matrix).any(axis=1)
    for lo in range(0, len(q), _CHUNK):
        rows = np.arange(lo, min(lo + _CHUNK, len(q)))
        scores = R.cosine_scores(_history_mean(matrix, valid, q, rows), matrix)
        _score_block(scores, rows, q, exclude_seen, acc)
    return _result(name, "id", description, acc, t0, leaked=leaked)


def rank_popularity(
    interactions: pd.DataFrame, authors_valid_us: np.ndarray, q: Queries, *, exclude_seen: bool
) -> SourceResult:
    """Positives per author strictly before each instant, over the authors valid then."""
    t0 = time.perf_counter()
    code = {a: i for i, a in enumerate(q.authors)}
    pos = interactions[interactions["label"] == 1]
    p_t = pd.to_datetime(pos["event_timestamp"], utc=True).to_numpy("datetime64[us]")
    p_t = p_t.astype(np.int64)
    p_a = pos["author_id"].astype(str).map(code).fillna(-1).to_numpy(np.int64)
    order = np.argsort(p_t, kind="stable")
    p_t, p_a = p_t[order], p_a[order]
    counts = np.zeros(len(q.authors), dtype=np.float64)
    acc = _new_acc(len(q))
    done = 0
    q_order = np.argsort(q.t_us, kind="stable")
    for lo in range(0, len(q), 256):
        rows = q_order[lo : lo + 256]
        scores = np.empty((len(rows), len(q.authors)))
        for j, i in enumerate(rows):
            upto = int(np.searchsorted(p_t, q.t_us[i], side="left"))
            if upto > done:
                a = p_a[done:upto]
                np.add.at(counts, a[a >= 0], 1.0)
                done = upto
            scores[j] = np.where(authors_valid_us <= q.t_us[i], counts, np.nan)
        _score_block(scores, rows, q, exclude_seen, acc)
    return _result(
        "popularity", "popularity", "positives per author strictly before the instant", acc, t0
    )


def rank_feature_set(
    store: FeatureStore, feature_set: str, q: Queries, *, exclude_seen: bool
) -> SourceResult:
    """Preference embedding valid at ``t`` -> author embeddings valid at ``t`` (cosine)."""
    from mspa_features.serving.catalogue import iter_catalogue
    from mspa_features.serving.definitions import author_view_name, pref_view_name
    from mspa_features.serving.reads import historical_features

    t0 = time.perf_counter()
    entity = pd.DataFrame(
        {"user_id": q.users.astype(str), "author_id": "", "event_timestamp": q.instants}
    )
    prefs = historical_features(store, [f"{pref_view_name(feature_set)}:pref_emb"], entity)
    vecs = prefs["pref_emb"].tolist()
    dim = next((len(v) for v in vecs if v is not None and len(v)), 0)
    query = np.full((len(q), max(dim, 1)), np.nan, dtype=np.float32)
    for i, v in enumerate(vecs):
        if v is not None and len(v):
            query[i] = v
    acc = _new_acc(len(q))
    view = author_view_name(feature_set)
    for ep in iter_catalogue(store, view, "author_emb", "author_id", q.authors, q.instants):
        if ep.matrix.shape[1] != query.shape[1]:
            scores = np.full((len(ep.rows), len(q.authors)), np.nan)
        else:
            scores = R.cosine_scores(query[ep.rows], ep.matrix)
        _score_block(scores, ep.rows, q, exclude_seen, acc)
    return _result(
        f"pref@{feature_set}",
        "preference",
        f"{feature_set} preference -> author embedding",
        acc,
        t0,
    )


def rank_aligned(
    store: FeatureStore, feature_set: str, q: Queries, *, exclude_seen: bool
) -> SourceResult:
    """History mean of the aligned-ID author embeddings valid at ``t`` -> those embeddings."""
    from mspa_features.serving.catalogue import iter_catalogue
    from ranker_hooks.aligned_id.feast_defs import FEATURE, aligned_view_name

    t0 = time.perf_counter()
    acc = _new_acc(len(q))
    view = aligned_view_name(feature_set)
    for ep in iter_catalogue(store, view, FEATURE, "author_id", q.authors, q.instants):
        query = _history_mean(ep.matrix, ep.valid, q, ep.rows)
        _score_block(R.cosine_scores(query, ep.matrix), ep.rows, q, exclude_seen, acc)
    return _result(
        f"aligned@{feature_set}",
        "aligned",
        f"{feature_set} content -> M_T ID space (adapter); user = mean of history",
        acc,
        t0,
    )


# --------------------------------------------------------------------------- the replay


@dataclass
class RecallReport:
    """What :func:`recall_replay` measured (``to_json`` is the file's content)."""

    run: str
    split: dict[str, str]
    ks: list[int]
    n_queries: int
    n_users: int
    n_authors: int
    exclude_seen: bool
    sample: dict[str, int] | None  # users and authors of a sample replay (None: all)
    target_seen: int  # queries whose target the user had already engaged with (a sure miss)
    sources: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    json_path: str = ""
    plot_path: str = ""
    mlflow_run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _m_t_tables(
    df: pd.DataFrame,
    split: Any,
    horizons: Iterable[int],
    make_ranker: Callable[[], Ranker],
    seconds: dict[str, float],
) -> tuple[IdEmbeddings, dict[int, IdEmbeddings], dict[str, float]]:
    """M_T's author table (IDs-only, ``[T0, T)``) and M_{T+n}'s per horizon."""
    from ranker_hooks.lis.feast_defs import utc_timestamp
    from ranker_hooks.lis.leaks.build import ids_only
    from ranker_hooks.lis.leaks.future_id import future_id_swap
    from ranker_hooks.lis.leaks.windows import in_window

    t0 = time.perf_counter()
    T = utc_timestamp(split.split_at)
    train = in_window(df, split.train_start, T)
    if train.empty or train["label"].nunique() < 2:
        raise AblationError(f"M_T's window [{split.train_start}, {T}) needs both labels")
    m_t = make_ranker()
    stats = m_t.fit(ids_only(train))
    table = m_t.export_id_embeddings("author")
    seconds["m_t"] = time.perf_counter() - t0
    future: dict[int, IdEmbeddings] = {}
    for n in horizons:
        t1 = time.perf_counter()
        rows = in_window(df, T, T + timedelta(days=int(n)))
        swap = future_id_swap(m_t, ids_only(rows), int(n), T=T.to_pydatetime())
        future[int(n)] = swap.table
        seconds[f"m_t_plus_{n}"] = time.perf_counter() - t1
    return table, future, {k: float(v) for k, v in stats.items()}


def recall_replay(
    run_cfg: RunConfig,
    split: Any,
    *,
    make_ranker: Callable[[], Ranker],
    store: FeatureStore,
    feature_sets: Sequence[str] | None = None,
    aligned: bool = True,
    horizons: Sequence[int] = (7, 30),
    ks: Sequence[int] = R.DEFAULT_KS,
    exclude_seen: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    interactions: pd.DataFrame | None = None,
    users: Sequence[str] | None = None,
    authors: Sequence[str] | None = None,
    out_dir: Path | None = None,
    tracking_uri: str | None = None,
) -> RecallReport:
    """Replay every positive test impression against every recall source; write and log it.

    Args:
        run_cfg: the run (dataset, workspace).
        split: the ablation's :class:`~ranker_hooks.ablation.split.TemporalSplit`.
        make_ranker: a fresh unfitted ranker (the ablation's backend, first seed): M_T.
        store: the run's FeatureStore (feature sets registered).
        feature_sets: ``pref@<set>`` sources (default every set registered in ``store``).
        aligned: add ``aligned@<set>`` where ``aligned__<set>`` is registered.
        horizons: LIS future-ID horizons in days (empty: no leaked source).
        ks: cut-offs (the largest capped at the catalogue size).
        exclude_seen: drop authors the user already engaged with positively.
        n_boot, seed: the user bootstrap.
        interactions: the interactions contract frame (default the run's accepted table).
        users, authors: replay a sample: only these users' impressions of these authors, and
            only these authors as candidates (the ablation's ``users`` / ``authors``).
        out_dir: where ``recall.json`` / ``recall.png`` go (default
            ``results/recall/<run>/``, ``<run>-keep-seen/`` without ``exclude_seen``).
        tracking_uri: MLflow (default ``sqlite:///<workspace>/mlflow.db``); ``""`` skips it.

    Raises:
        AblationError: no positive impression in the evaluation window, or M_T's window
            lacks a label.
    """
    from mspa_features.data.ingest import load_accepted
    from mspa_features.serving.definitions import author_view_name, pref_view_name
    from ranker_hooks.aligned_id.feast_defs import aligned_view_name
    from ranker_hooks.lis.leaks.windows import checked_interactions

    t_all = time.perf_counter()
    seconds: dict[str, float] = {}
    ws = Workspace(run_cfg.workspace)
    data = ws.data(run_cfg.name)
    if interactions is None:
        interactions = load_accepted(data, "interactions")
    df = checked_interactions(interactions, "recall replay")
    authors_df = load_accepted(data, "authors")
    authors_df["author_id"] = authors_df["author_id"].astype(str)
    q = build_queries(
        df,
        authors_df["author_id"],
        split.split_at,
        split.eval_end,
        users=users,
        sample_authors=authors,
    )
    if not len(q):
        raise AblationError(
            f"no positive impression in [{split.split_at}, {split.eval_end}) to replay"
        )
    valid_from = (
        authors_df.groupby("author_id")["event_timestamp"]
        .min()
        .reindex(q.authors)
        .pipe(lambda s: pd.to_datetime(s, utc=True).to_numpy("datetime64[us]").astype(np.int64))
    )
    n_catalogue = len(q.authors) if q.allowed is None else int(q.allowed.sum())
    ks_out = R.cutoffs(ks, n_catalogue)
    views = {v.name: {f.name for f in v.features} for v in store.list_feature_views()}
    notes: list[str] = []
    if feature_sets is None:
        feature_sets = sorted(
            name.removeprefix("user_preferences__")
            for name in views
            if name.startswith("user_preferences__")
        )
    results: list[SourceResult] = []

    table_t, future, m_t_stats = _m_t_tables(df, split, horizons, make_ranker, seconds)
    results.append(
        rank_static_table(
            BASELINE,
            "M_T author-ID embeddings (IDs-only ranker on [T0, T)); user = mean of history",
            _table_matrix(table_t, q.authors),
            q,
            exclude_seen=exclude_seen,
        )
    )
    results.append(rank_popularity(df, valid_from, q, exclude_seen=exclude_seen))
    for fs in feature_sets:
        if pref_view_name(fs) not in views:
            notes.append(f"pref@{fs} skipped: feature set {fs!r} is not registered")
            continue
        if "pref_emb" not in views[pref_view_name(fs)] or "author_emb" not in views.get(
            author_view_name(fs), ()
        ):
            notes.append(
                f"pref@{fs} skipped: its views hold no pref_emb / author_emb "
                "(a compact set stores codes)"
            )
            continue
        results.append(rank_feature_set(store, fs, q, exclude_seen=exclude_seen))
        if aligned and aligned_view_name(fs) in views:
            results.append(rank_aligned(store, fs, q, exclude_seen=exclude_seen))
    for n, table in future.items():
        results.append(
            rank_static_table(
                f"lis@future_id_n{n}",
                f"M_T+{n}d author-ID embeddings (warm-started on [T, T+{n}d): LEAKED upper bound)",
                _table_matrix(table, q.authors),
                q,
                exclude_seen=exclude_seen,
                leaked=True,
            )
        )
    for r in results:
        seconds[r.name] = r.seconds

    hits = np.stack([R.hits_at(r.ranks, ks_out) for r in results], axis=1)  # (n, S, K)
    rates, deltas = R.bootstrap_hit_rates(hits, q.users, baseline=0, n_boot=n_boot, seed=seed)
    target_seen = sum(
        int(t in set(h.tolist())) for t, h in zip(q.target.tolist(), q.history, strict=True)
    )
    sources = []
    for s, r in enumerate(results):
        # The same source on the queries it has a query vector for (not paired across sources).
        covered = np.flatnonzero(r.has_query)
        cov_rates = (
            R.bootstrap_hit_rates(
                hits[covered][:, s : s + 1], q.users[covered], n_boot=n_boot, seed=seed
            )[0][0]
            if len(covered)
            else []
        )
        sources.append(
            {
                "name": r.name,
                "kind": r.kind,
                "description": r.description,
                "leaked": r.leaked,
                "queries_with_vector": r.with_query,
                "target_candidate": r.target_candidate,
                "catalogue_median": r.catalogue_median,
                "hit_rate": {str(k): asdict(rates[s][j]) for j, k in enumerate(ks_out)},
                "hit_rate_with_vector": {
                    str(k): asdict(cov_rates[j]) for j, k in enumerate(ks_out) if cov_rates
                },
                "delta_vs_baseline": {
                    str(k): asdict(deltas[s][j])
                    for j, k in enumerate(ks_out)  # type: ignore[index]
                },
            }
        )
    if exclude_seen and target_seen:
        notes.append(
            f"{target_seen} of {len(q)} targets were already engaged with by the user "
            "before the instant: not candidates (a miss for every source); --keep-seen keeps them"
        )
    seconds["total"] = time.perf_counter() - t_all
    report = RecallReport(
        run=run_cfg.name,
        split={**split.describe(), "m_t": json.dumps(m_t_stats)},
        ks=ks_out,
        n_queries=len(q),
        n_users=len(set(q.users.tolist())),
        n_authors=n_catalogue,
        exclude_seen=exclude_seen,
        sample=None
        if users is None and authors is None
        else {"users": len(set(users or q.users.tolist())), "authors": n_catalogue},
        target_seen=target_seen,
        sources=sources,
        notes=notes,
        seconds={k: round(v, 2) for k, v in seconds.items()},
    )
    suffix = ("" if exclude_seen else "-keep-seen") + ("" if report.sample is None else "-sample")
    out = out_dir or ws.results / "recall" / f"{run_cfg.name}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    report.json_path = str(out / "recall.json")
    report.plot_path = str(plot(report, out / "recall.png"))
    _write(report)
    if tracking_uri != "":
        report.mlflow_run_id = _log_mlflow(report, ws, tracking_uri)
        _write(report)
    return report


def _write(report: RecallReport) -> None:
    Path(report.json_path).write_text(json.dumps(report.to_json(), indent=2, default=str))


def plot(report: RecallReport, path: Path) -> Path:
    """Hit Rate@K against K, one line per source with its 95 % CI band (log K)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6), constrained_layout=True)
    ks = np.asarray(report.ks, dtype=float)
    for src in report.sources:
        hr = [src["hit_rate"][str(k)] for k in report.ks]
        v = [h["value"] for h in hr]
        style = "--" if src["leaked"] else "-"
        (line,) = ax.plot(ks, v, style, marker="o", label=src["name"])
        ax.fill_between(
            ks,
            [h["ci_low"] for h in hr],
            [h["ci_high"] for h in hr],
            color=line.get_color(),
            alpha=0.15,
        )
    if len(ks) > 1:
        ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in report.ks])
    ax.set_xlabel("K")
    ax.set_ylabel("Hit Rate@K")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        f"recall replay {report.run}: {report.n_queries} positive impressions of "
        f"{report.n_users} users, {report.n_authors} authors (95% CI over users)",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _log_mlflow(report: RecallReport, ws: Workspace, tracking_uri: str | None) -> str:
    from mspa_features.mlflow_store import start_run

    client, rid = start_run(
        tracking_uri,
        EXPERIMENT,
        workspace=ws.root,
        run_name=f"recall {report.run}",
        tags={"mspa.stage": "recall", "mspa.run": report.run},
    )
    params = {
        **{k: v for k, v in report.split.items() if k != "m_t"},
        "ks": ",".join(map(str, report.ks)),
        "exclude_seen": str(report.exclude_seen),
        "n_queries": str(report.n_queries),
        "n_users": str(report.n_users),
        "n_authors": str(report.n_authors),
    }
    for k, v in params.items():
        client.log_param(rid, k, v)
    for src in report.sources:
        name = src["name"].replace("@", "_")
        for k, hr in src["hit_rate"].items():
            client.log_metric(rid, f"hit_rate_at_{k}/{name}", hr["value"])
            client.log_metric(rid, f"hit_rate_at_{k}_ci_low/{name}", hr["ci_low"])
            client.log_metric(rid, f"hit_rate_at_{k}_ci_high/{name}", hr["ci_high"])
    client.log_artifact(rid, report.json_path)
    client.log_artifact(rid, report.plot_path)
    client.set_terminated(rid)
    return rid


def table_lines(doc: dict[str, Any]) -> list[str]:
    """The report as a markdown table: Hit Rate@K [95% CI] per source, then the notes."""
    ks = doc["ks"]
    head = (
        "| source | "
        + " | ".join(f"HR@{k}" for k in ks)
        + f" | queries with a vector | HR@{ks[0]} / HR@{ks[-1]} on those |"
    )
    lines = [head, "|---|" + "---|" * (len(ks) + 2)]
    for s in doc["sources"]:
        cells = [
            f"{s['hit_rate'][str(k)]['value']:.3f} "
            f"[{s['hit_rate'][str(k)]['ci_low']:.3f},{s['hit_rate'][str(k)]['ci_high']:.3f}]"
            for k in ks
        ]
        name = s["name"] + (" (leaked)" if s["leaked"] else "")
        cov = s.get("hit_rate_with_vector") or {}
        on = f"{cov[str(ks[0])]['value']:.3f} / {cov[str(ks[-1])]['value']:.3f}" if cov else "-"
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {s['queries_with_vector']} of {doc['n_queries']} | {on} |"
        )
    return lines


__all__ = [
    "BASELINE",
    "EXPERIMENT",
    "Queries",
    "RecallReport",
    "SourceResult",
    "build_queries",
    "rank_feature_set",
    "rank_popularity",
    "rank_static_table",
    "recall_replay",
    "table_lines",
]
