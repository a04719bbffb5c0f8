"""Evaluation datasets of the MSPA paper: U2A multiple choice and A2A attribute triples.

U2A (user-to-author) -- one row per user, built by :func:`build_u2a`:

* Only positives (``label == 1``) form the history and the target. A user's positives are
  sorted by ``(event_timestamp, author_id)`` ascending; the **target** is the author of the
  last one (ties on the timestamp go to the largest ``author_id``, so the choice never
  depends on input row order).
* ``as_of == target_ts``: the history is the point-in-time history as of the target's
  timestamp (:func:`mspa_features.snapshots.history.positive_histories`): only positives
  strictly before it. Other positives sharing ``target_ts`` are excluded, because a feature computed
  "as of" that instant cannot have seen them.
* The history is a sequence of **distinct** authors, oldest first: a re-tipped author keeps
  its first occurrence (and that timestamp). The target never appears in the history: an
  earlier positive on the target author is removed, otherwise the answer would leak.
* ``min_positives`` counts the distinct authors of the built sequence (history + target), so
  positives dropped by the two rules above do not count; users below it are dropped.
* Negatives are sampled uniformly, without replacement, from authors the user **never**
  interacted with (any label, any time): the pool is every author in ``interactions`` or
  ``all_author_ids``. The ``m - 1`` negatives of a smaller set are a uniform subset of those
  of the largest set, so the m=4 task is nested in the m=10 task. A user with fewer
  never-interacted authors than the largest set needs is dropped for every ``m``.
* Candidates are shuffled per row; ``answer_m{m}`` is the target's letter ('A', 'B', ...)
  and ``answer_index_m{m}`` its 0-based position.
* Users are split train/val/test by a seeded permutation of the sorted user ids.
* Randomness comes from independent streams of ``np.random.SeedSequence(seed)``, so the split
  does not move when ``num_candidates`` changes. Same inputs + seed -> identical output,
  whatever the input row order.

A2A (author-to-author) -- :func:`build_a2a` samples triples ``(a1, a2, a3)`` where a1 is
closer to a2 than to a3 by attribute overlap: ``jaccard(a1, a2) - jaccard(a1, a3) >=
min_margin`` and ``jaccard(a1, a2) > 0``. The default tokens come from the ``attributes`` map:
when a ``genres`` key exists only genres are used (``"genre:Action"``) -- MovieLens'
``release_year`` would otherwise make every same-year pair "similar" for reasons no content
embedding can see; without ``genres`` every key gives a ``"key:value"`` token.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mspa_features.data.contracts import TS
from mspa_features.errors import DataError, InvalidValueError, ReconciliationError, SchemaError
from mspa_features.snapshots.history import positive_histories

__all__ = [
    "A2A_FILE",
    "A2A_SCHEMA",
    "SPLITS",
    "U2ADataset",
    "a2a_aligned",
    "a2a_alignment",
    "attribute_tokens",
    "build_a2a",
    "build_u2a",
    "jaccard",
    "save_a2a",
]

SPLITS = ("train", "val", "test")
U2A_FILE = "u2a.parquet"
A2A_FILE = "a2a.parquet"
#: The A2A triples table: anchor a1, its closer author a2, the farther a3, and the similarities.
A2A_SCHEMA = pa.schema(
    [
        pa.field("a1", pa.string()),
        pa.field("a2", pa.string()),
        pa.field("a3", pa.string()),
        pa.field("sim_12", pa.float64()),
        pa.field("sim_13", pa.float64()),
    ]
)
_REPORT_META_KEY = b"mspa.u2a.report"
_LETTERS = np.array(list(string.ascii_uppercase))
_INTERACTION_COLUMNS = ("user_id", "author_id", "event_timestamp", "label")


# =========================================================================== U2A


@dataclass
class U2ADataset:
    """The U2A table (one row per user) and its build report.

    ``report`` holds ``n_users_in``, ``n_dropped_few_positives``, ``n_dropped_few_negatives``,
    ``n_users_out`` and ``n_train``/``n_val``/``n_test``; the first four reconcile.
    """

    table: pd.DataFrame
    report: dict[str, int] = field(default_factory=dict)

    @property
    def num_candidates(self) -> tuple[int, ...]:
        """The candidate-set sizes present in the table, ascending."""
        return tuple(
            sorted(
                int(c.removeprefix("candidates_m"))
                for c in self.table.columns
                if c.startswith("candidates_m")
            )
        )

    def save(self, directory: str | Path) -> Path:
        """Write ``<directory>/u2a.parquet`` (report in the schema metadata); return the path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        schema = _u2a_schema(self.num_candidates).with_metadata(
            {_REPORT_META_KEY: json.dumps(self.report, sort_keys=True).encode()}
        )
        table = pa.Table.from_pandas(self.table[schema.names], schema=schema, preserve_index=False)
        path = directory / U2A_FILE
        pq.write_table(table, path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> U2ADataset:
        """Read a dataset written by :meth:`save`; types match the in-memory build."""
        table = pq.read_table(Path(directory) / U2A_FILE)
        meta = table.schema.metadata or {}
        report = {k: int(v) for k, v in json.loads(meta.get(_REPORT_META_KEY, b"{}")).items()}
        df = table.drop_columns(["history_ts"]).to_pandas()
        for c in df.columns:
            if c == "history_author_ids" or c.startswith("candidates_m"):
                df[c] = _list_column(table.column(c).to_pylist())
        # to_pandas drops the time zone inside lists; rebuild pd.Timestamp lists by offsets.
        hist = table.column("history_ts").combine_chunks()
        flat = pd.Series(pc.list_flatten(hist).to_pandas()).astype("datetime64[us, UTC]")
        offsets = hist.offsets.to_numpy()
        df.insert(
            df.columns.get_loc("history_author_ids") + 1,
            "history_ts",
            _split_lists(flat.astype(object).to_numpy(), offsets),
        )
        for c in ("target_ts", "as_of"):
            df[c] = df[c].astype("datetime64[us, UTC]")
        return cls(table=df, report=report)


def _u2a_schema(num_candidates: Sequence[int]) -> pa.Schema:
    fields = [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("history_author_ids", pa.list_(pa.string()), nullable=False),
        pa.field("history_ts", pa.list_(TS), nullable=False),
        pa.field("target_author_id", pa.string(), nullable=False),
        pa.field("target_ts", TS, nullable=False),
        pa.field("as_of", TS, nullable=False),
    ]
    for m in num_candidates:
        fields += [
            pa.field(f"candidates_m{m}", pa.list_(pa.string()), nullable=False),
            pa.field(f"answer_m{m}", pa.string(), nullable=False),
            pa.field(f"answer_index_m{m}", pa.int64(), nullable=False),
        ]
    return pa.schema(fields)


def _list_column(lists: list[list[Any]]) -> pd.Series:
    """A column of python lists (object dtype even when empty, so arrow conversion works)."""
    return pd.Series(lists, dtype=object)


def _split_lists(values: np.ndarray, offsets: np.ndarray) -> pd.Series:
    """Cut a flat array into a column of python lists at ``offsets`` (len = n_rows + 1)."""
    chunks = np.split(values, offsets[1:-1]) if len(offsets) > 1 else []
    return _list_column([chunk.tolist() for chunk in chunks])


def _utc(micros: np.ndarray) -> pd.Series:
    """int64 epoch microseconds -> ``datetime64[us, UTC]`` series."""
    return pd.Series(micros.astype("datetime64[us]")).dt.tz_localize("UTC")


def _normalise_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in _INTERACTION_COLUMNS if c not in interactions.columns]
    if missing:
        raise SchemaError("<interactions frame>", "missing required column", column=missing[0])
    src = interactions.reset_index(drop=True)
    return pd.DataFrame(
        {
            "user_id": src["user_id"].astype(str),
            "author_id": src["author_id"].astype(str),
            # Contract timestamps are UTC microseconds; naive input is taken to be UTC.
            "event_timestamp": pd.to_datetime(src["event_timestamp"], utc=True).astype(
                "datetime64[us, UTC]"
            ),
            "label": pd.to_numeric(src["label"]),
        }
    )


def _validate_u2a_args(
    num_candidates: Sequence[int], min_positives: int, split: Sequence[float]
) -> tuple[int, ...]:
    ms = tuple(sorted({int(m) for m in num_candidates}))
    if not ms or ms[0] < 2 or ms[-1] > len(_LETTERS):
        raise InvalidValueError(
            "num_candidates", num_candidates, f"candidate set sizes in [2, {len(_LETTERS)}]"
        )
    if min_positives < 1:
        raise InvalidValueError("min_positives", min_positives, ">= 1")
    if len(split) != 3 or min(split) < 0 or not np.isclose(sum(split), 1.0):
        raise InvalidValueError("split", split, "3 non-negative fractions summing to 1")
    return ms


def _sample_negatives(
    rng: np.random.Generator,
    n_pool: int,
    excl_user: np.ndarray,
    excl_code: np.ndarray,
    n_users: int,
    k: int,
) -> np.ndarray:
    """Sample ``k`` distinct pool codes per user outside that user's excluded codes.

    ``excl_user``/``excl_code`` are the (user index, pool code) pairs to exclude, unique and
    sorted by user then code; every user must have at least ``k`` allowed codes. Cost is
    O(n_users * k^2 + n_excl log n_excl): no per-user python loop, no rejection sampling.
    """
    n_excl = np.bincount(excl_user, minlength=n_users)
    n_avail = n_pool - n_excl
    # Floyd's algorithm, vectorised over users: k distinct ranks in [0, n_avail).
    ranks = np.empty((n_users, k), dtype=np.int64)
    for i in range(k):
        j = n_avail - k + i
        t = rng.integers(0, j + 1)
        dup = (ranks[:, :i] == t[:, None]).any(axis=1)
        ranks[:, i] = np.where(dup, j, t)
    # Floyd's set is uniform but its order is not; shuffle so any prefix is a uniform subset.
    ranks = np.take_along_axis(ranks, np.argsort(rng.random((n_users, k)), axis=1), axis=1)
    # Map rank j among a user's allowed codes to the code: code = j + #{i : e_i - i <= j},
    # where e is the user's sorted excluded codes (e_i - i is non-decreasing).
    starts = np.concatenate([[0], np.cumsum(n_excl)])
    within = np.arange(len(excl_code)) - starts[excl_user]
    stride = n_pool + 1
    keys = excl_user.astype(np.int64) * stride + (excl_code - within)
    users = np.arange(n_users)[:, None]
    below = np.searchsorted(keys, users * stride + ranks, side="right") - starts[:-1][:, None]
    return ranks + below


def build_u2a(
    interactions: pd.DataFrame,
    *,
    num_candidates: Sequence[int] = (4, 10),
    min_positives: int = 3,
    split: Sequence[float] = (0.7, 0.2, 0.1),
    seed: int = 0,
    all_author_ids: Iterable[str] | None = None,
) -> U2ADataset:
    """Build the U2A multiple-choice dataset (conventions in the module docstring).

    Args:
        interactions: frame with ``user_id``, ``author_id``, ``event_timestamp``, ``label``.
        num_candidates: candidate-set sizes ``m`` (target + ``m - 1`` negatives), 2..26.
        min_positives: minimum distinct positive authors, target included.
        split: train/val/test fractions.
        seed: seed of every random choice.
        all_author_ids: negative pool; defaults to every author in ``interactions``.

    Raises:
        SchemaError: a required column is missing.
        ReconciliationError: the report's user counts do not add up (a bug).
    """
    ms = _validate_u2a_args(num_candidates, min_positives, split)
    df = _normalise_interactions(interactions)
    split_ss, neg_ss, shuffle_ss = np.random.SeedSequence(seed).spawn(3)

    # Integer codes from *sorted* uniques: code order == id order, so sorting codes sorts ids
    # and nothing below depends on input row order.
    u, user_ids = pd.factorize(df["user_id"], sort=True)
    a, author_ids = pd.factorize(df["author_id"], sort=True)
    user_ids, author_ids = np.asarray(user_ids, dtype=object), np.asarray(author_ids, dtype=object)
    t = df["event_timestamp"].dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    t = t.view(np.int64)

    # Positives sorted by (user, ts, author): the full key fixes the order of ties.
    p = np.flatnonzero(df["label"].to_numpy() == 1)
    p = p[np.lexsort((a[p], t[p], u[p]))]
    pu, pa, pt = u[p], a[p], t[p]
    new_block = np.r_[True, pu[1:] != pu[:-1]] if len(p) else np.array([], dtype=bool)
    last = np.flatnonzero(np.r_[new_block[1:], True]) if len(p) else np.array([], np.int64)
    tgt_a, tgt_t = pa[last], pt[last]  # target = last positive of each block
    # History: THE point-in-time rule as of target_ts (distinct authors of the positives
    # strictly before it, at first engagement, oldest first), then without the target author,
    # whose earlier positive would give the answer away.
    hs = positive_histories(user_ids[pu], author_ids[pa], pt, user_ids[pu[last]], tgt_t)
    h_block = np.repeat(np.arange(len(last)), np.diff(hs.offsets))  # per entry: its block
    h_keep = hs.author_ids != author_ids[tgt_a][h_block]
    h_block, h_aid, h_ts = h_block[h_keep], hs.author_ids[h_keep], hs.first_us[h_keep]
    seq_len = np.bincount(h_block, minlength=len(last)) + 1
    kept = np.flatnonzero(seq_len >= min_positives)  # block indices
    n_few_pos = len(user_ids) - len(kept)

    # Negative pool: sorted unique ids; author code -> pool code (-1: not in the pool).
    if all_author_ids is None:
        pool, to_pool = author_ids, np.arange(len(author_ids))
    else:
        pool = np.unique(np.array([str(x) for x in all_author_ids], dtype=object))
        to_pool = np.full(len(author_ids), -1)
        if len(pool):
            pos_in = np.minimum(np.searchsorted(pool, author_ids), len(pool) - 1)
            to_pool = np.where(pool[pos_in] == author_ids, pos_in, -1)
    block_of_user = np.full(len(user_ids), -1)
    block_of_user[pu[last[kept]]] = np.arange(len(kept))  # user code -> kept index
    # Every (user, author) pair ever seen, any label: those authors are never negatives.
    pairs = np.sort(u.astype(np.int64) * max(len(author_ids), 1) + a)
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if len(pairs) else pairs
    pair_u = block_of_user[pairs // max(len(author_ids), 1)]
    pair_a = to_pool[pairs % max(len(author_ids), 1)]
    ok = (pair_u >= 0) & (pair_a >= 0)
    pair_u, pair_a = pair_u[ok], pair_a[ok]  # sorted by user then pool code (monotone maps)
    k = ms[-1] - 1
    enough = (len(pool) - np.bincount(pair_u, minlength=len(kept))) >= k
    n_few_neg = int((~enough).sum())
    final = np.cumsum(enough) - 1  # kept index -> output row (valid where enough)
    keep_pair = enough[pair_u]
    n_out = int(enough.sum())
    negs = _sample_negatives(
        np.random.default_rng(neg_ss),
        len(pool),
        final[pair_u[keep_pair]],
        pair_a[keep_pair],
        n_out,
        k,
    )

    # Assemble one row per user.
    out_blocks = kept[enough]
    row_of_block = np.full(len(last), -1)
    row_of_block[out_blocks] = np.arange(n_out)
    h_out = row_of_block[h_block] >= 0  # entries of output users: ordered by user, then time
    offsets = np.r_[0, np.cumsum(np.bincount(row_of_block[h_block[h_out]], minlength=n_out))]
    table = pd.DataFrame({"user_id": user_ids[pu[last[out_blocks]]]})
    splits = np.empty(n_out, dtype=object)
    perm = np.random.default_rng(split_ss).permutation(n_out)
    n_train = min(round(float(split[0]) * n_out), n_out)
    n_val = min(round(float(split[1]) * n_out), n_out - n_train)
    splits[perm[:n_train]] = "train"
    splits[perm[n_train : n_train + n_val]] = "val"
    splits[perm[n_train + n_val :]] = "test"
    table["split"] = splits
    table["history_author_ids"] = _split_lists(h_aid[h_out], offsets)
    table["history_ts"] = _split_lists(_utc(h_ts[h_out]).astype(object).to_numpy(), offsets)
    table["target_author_id"] = author_ids[tgt_a[out_blocks]]
    table["target_ts"] = _utc(tgt_t[out_blocks])
    table["as_of"] = table["target_ts"]
    shuffle_rng = np.random.default_rng(shuffle_ss)
    target = table["target_author_id"].to_numpy(dtype=object)
    for m in ms:
        cand = np.column_stack([target, pool[negs[:, : m - 1]]])
        shuffle = np.argsort(shuffle_rng.random((n_out, m)), axis=1)
        cand = np.take_along_axis(cand, shuffle, axis=1)
        answer = np.argmax(shuffle == 0, axis=1)  # where column 0 (the target) landed
        table[f"candidates_m{m}"] = _list_column(cand.tolist())
        table[f"answer_m{m}"] = _LETTERS[answer].astype(object)
        table[f"answer_index_m{m}"] = answer.astype(np.int64)

    report = {
        "n_users_in": len(user_ids),
        "n_dropped_few_positives": n_few_pos,
        "n_dropped_few_negatives": n_few_neg,
        "n_users_out": n_out,
    }
    report.update({f"n_{s}": int((splits == s).sum()) for s in SPLITS})
    if report["n_users_in"] != n_few_pos + n_few_neg + n_out:
        raise ReconciliationError("build_u2a", len(user_ids), n_out, n_few_pos + n_few_neg)
    return U2ADataset(table=table, report=report)


# =========================================================================== A2A


def attribute_tokens(attributes: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> set[str]:
    """Default A2A tokens: ``genre:<g>`` per '|'-separated genre if ``genres`` exists, else
    ``key:value`` for every key. Accepts a dict or the (key, value) pairs of an arrow map."""
    if attributes is None or isinstance(attributes, float):  # None / NaN: no attributes
        return set()
    items = dict(attributes.items() if isinstance(attributes, Mapping) else attributes)
    if "genres" in items:
        genres = items["genres"] or ""
        return {f"genre:{g.strip()}" for g in genres.split("|") if g.strip()}
    return {f"{k}:{v}" for k, v in items.items() if v is not None}


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity; 0.0 when both sets are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def build_a2a(
    authors: pd.DataFrame,
    *,
    attribute_fn: Callable[[Any], Iterable[str]] | None = None,
    num_triples: int = 2000,
    seed: int = 0,
    min_margin: float = 0.25,
    max_attempts: int | None = None,
) -> pd.DataFrame:
    """Sample A2A triples: a1 closer to a2 than to a3 by Jaccard overlap of attribute tokens.

    a1 is drawn uniformly from the authors, a2 uniformly from the other authors with
    ``jaccard(a1, a2) > 0`` that admit some a3, and a3 uniformly from the authors (not a1)
    with ``jaccard(a1, a2) - jaccard(a1, a3) >= min_margin``. Triples are unique. After
    ``max_attempts`` draws of a1 (default ``20 * num_triples``) the triples found so far are
    returned, possibly fewer than ``num_triples``.

    Args:
        authors: frame with ``author_id`` and ``attributes`` (dict or (key, value) pairs).
            With several rows per author the latest ``event_timestamp`` wins.
        attribute_fn: maps one ``attributes`` value to tokens; default :func:`attribute_tokens`.

    Returns:
        Columns ``a1, a2, a3`` (str) and ``sim_12, sim_13`` (Jaccard, float64).
    """
    if not 0.0 < min_margin <= 1.0:
        raise InvalidValueError("min_margin", min_margin, "in (0, 1]")
    for c in ("author_id", "attributes"):
        if c not in authors.columns:
            raise SchemaError("<authors frame>", "missing required column", column=c)
    fn = attribute_fn or attribute_tokens
    max_attempts = 20 * num_triples if max_attempts is None else max_attempts
    empty = pd.DataFrame({"a1": [], "a2": [], "a3": [], "sim_12": [], "sim_13": []}).astype(
        {"a1": object, "a2": object, "a3": object, "sim_12": float, "sim_13": float}
    )

    # One row per author, sorted by id: row order of the input cannot change the result.
    a = authors.assign(author_id=authors["author_id"].astype(str))
    if "event_timestamp" in a.columns:
        a = a.assign(_ts=pd.to_datetime(a["event_timestamp"], utc=True))
        a = a.sort_values(["author_id", "_ts"], kind="mergesort")
        a = a.drop_duplicates("author_id", keep="last")
    elif a["author_id"].duplicated().any():
        dup = a.loc[a["author_id"].duplicated(), "author_id"].iloc[0]
        raise DataError(
            "<authors frame>",
            "duplicate author_id without an event_timestamp column: cannot pick a version",
            record=dup,
            field="author_id",
        )
    a = a.sort_values("author_id", kind="mergesort")
    ids = a["author_id"].to_numpy(dtype=object)
    tokens = [set(fn(v)) for v in a["attributes"]]
    n = len(ids)
    if n < 3 or num_triples <= 0:
        return empty

    # Sparse binary author x token matrix: Jaccard rows for a batch of a1 are one matmul,
    # and free-text-like attributes (large vocabularies) stay cheap.
    from scipy import sparse  # lazy: only A2A needs it

    vocab = {t: i for i, t in enumerate(sorted(set().union(*tokens)))}
    sizes = np.array([len(ts) for ts in tokens], dtype=np.float64)
    cols = np.array([vocab[t] for ts in tokens for t in sorted(ts)], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(sizes.astype(np.int64))])
    onehot = sparse.csr_matrix(
        (np.ones(len(cols), dtype=np.float64), cols, indptr), shape=(n, len(vocab))
    )
    batch = max(1, min(256, 4_000_000 // n))  # caps the dense (batch x n) blocks (~100 MB)

    rng = np.random.default_rng(seed)
    seen: set[tuple[int, int, int]] = set()
    rows: list[tuple[int, int, int, float, float]] = []
    attempts = 0
    arange = np.arange(n)
    while len(rows) < num_triples and attempts < max_attempts:
        a1s = rng.integers(0, n, size=min(batch, max_attempts - attempts))
        attempts += len(a1s)
        # Counts are exact small integers, so inter/union is the exactly-rounded Jaccard.
        inter = np.rint((onehot[a1s] @ onehot.T).toarray())
        union = sizes[a1s][:, None] + sizes[None, :] - inter
        jac = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        for a1, row in zip(a1s, jac):
            if len(rows) >= num_triples:
                break
            others = arange != a1
            floor = row[others].min()
            ok2 = others & (row > 0) & (row - floor >= min_margin)
            cands2 = np.flatnonzero(ok2)
            if not len(cands2):
                continue
            a2 = int(rng.choice(cands2))
            # Same expression as the contract (difference >= margin) so float rounding agrees.
            cands3 = np.flatnonzero(others & (row[a2] - row >= min_margin))
            a3 = int(rng.choice(cands3))
            key = (int(a1), a2, a3)
            if key in seen:
                continue
            seen.add(key)
            rows.append((int(a1), a2, a3, float(row[a2]), float(row[a3])))
    if not rows:
        return empty
    idx = np.array([r[:3] for r in rows])
    return pd.DataFrame(
        {
            "a1": ids[idx[:, 0]],
            "a2": ids[idx[:, 1]],
            "a3": ids[idx[:, 2]],
            "sim_12": np.array([r[3] for r in rows], dtype=np.float64),
            "sim_13": np.array([r[4] for r in rows], dtype=np.float64),
        }
    )


def a2a_alignment(
    triples: pd.DataFrame,
    emb: Mapping[str, np.ndarray] | Callable[[list[str]], np.ndarray],
) -> float:
    """Share of triples whose embedding cosine has ``cos(a1, a2) > cos(a1, a3)`` (ties fail).

    Args:
        triples: output of :func:`build_a2a` (columns ``a1, a2, a3``).
        emb: ``author_id -> vector`` mapping, or a callable taking a list of ids and
            returning an ``(n, d)`` array. Zero vectors have cosine 0 with everything.

    Returns:
        The alignment rate in [0, 1], from :func:`mspa_features.evaluation.metrics.a2a_alignment_rate`.

    Raises:
        KeyError: an id is missing from ``emb``.
        ValueError: no triples (the metrics module's convention for empty input).
    """
    # Lazy: metrics pulls in scikit-learn, which building the datasets does not need.
    from mspa_features.evaluation.metrics import a2a_alignment_rate

    return a2a_alignment_rate(*_a2a_cosines(triples, emb))


def a2a_aligned(
    triples: pd.DataFrame,
    emb: Mapping[str, np.ndarray] | Callable[[list[str]], np.ndarray],
) -> np.ndarray:
    """Per triple, whether ``cos(a1, a2) > cos(a1, a3)`` (ties fail): bool, shape ``(n,)``;
    its mean is :func:`a2a_alignment` (the units a bootstrap of the A2A rate resamples)."""
    sim_12, sim_13 = _a2a_cosines(triples, emb)
    return sim_12 > sim_13


def _a2a_cosines(
    triples: pd.DataFrame,
    emb: Mapping[str, np.ndarray] | Callable[[list[str]], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """``cos(a1, a2)`` and ``cos(a1, a3)`` per triple; zero vectors have cosine 0."""

    def unit_rows(col: str) -> np.ndarray:
        keys = triples[col].astype(str).tolist()
        vecs = emb(keys) if callable(emb) else [emb[k] for k in keys]
        v = np.asarray(vecs, dtype=np.float64).reshape(len(keys), -1)
        norm = np.linalg.norm(v, axis=1, keepdims=True)
        return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)

    e1, e2, e3 = unit_rows("a1"), unit_rows("a2"), unit_rows("a3")
    return (e1 * e2).sum(axis=1), (e1 * e3).sum(axis=1)


def save_a2a(triples: pd.DataFrame, directory: str | Path) -> Path:
    """Write ``<directory>/a2a.parquet`` with :data:`A2A_SCHEMA`, also when there is no triple
    (an empty frame would otherwise be written with untyped columns)."""
    from mspa_features.io import write_parquet_atomic

    table = pa.Table.from_pandas(
        triples[A2A_SCHEMA.names].reset_index(drop=True), schema=A2A_SCHEMA, preserve_index=False
    )
    return write_parquet_atomic(table, Path(directory) / A2A_FILE)
