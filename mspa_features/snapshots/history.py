"""THE point-in-time history rule, and the author content valid at an instant.

The rule (one implementation, :func:`positive_histories`; every other function here adapts
its inputs or outputs):

* A user's history as of instant ``s`` is built ONLY from their positive interactions
  (``label == 1``, :data:`POSITIVE`) with ``event_timestamp < s`` (strictly: an interaction at
  exactly ``s`` is not seen by a feature valid from ``s``).
* Those positives are ordered by ``(event_timestamp, author_id)`` ascending, so ties on the
  timestamp never depend on input row order.
* The history is the sequence of DISTINCT authors at their first engagement, oldest first: a
  re-engaged author keeps its first position and timestamp.
* ``count`` is every positive strictly before ``s`` (repeats included) and ``last`` the newest
  of their timestamps (none when ``count == 0``).
* No length limit is applied here: a composer that must fit a token budget keeps the newest
  authors (:class:`mspa_features.compose.composer.LLMComposer`), which is a prompt rule, not a
  point-in-time one.

Author content is point-in-time too (:class:`AuthorSnapshots`): an author of the history is
represented by its newest content snapshot with ``event_timestamp < s``; an author without one
is left out of the history's content (the count still includes the interaction).

Callers: the Spark preference backfill (``spark_jobs.udfs``, inside its ``mapInArrow``), the
composer's jobs (:func:`build_histories`) and the U2A eval set
(:func:`mspa_features.evaluation.datasets.build_u2a`, as of the target's timestamp, the target
author then removed). Until 0.2 these were three implementations; they agreed on the rule above
and differed in one place, kept canonical here: the composer used the author record it was
given whatever its time, the Spark job the content valid at ``s``. The Spark job's choice is
canonical, because a feature valid from ``s`` cannot have seen content published later; on the
shipped data (an author's content starts at or before its first interaction) both give the same
rows. Timestamps are UTC; arrays of them are int64 microseconds since the epoch.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from mspa_features.data.contracts import Author

__all__ = [
    "EPOCH",
    "POSITIVE",
    "AuthorSnapshots",
    "Histories",
    "UserHistory",
    "build_histories",
    "epoch_us",
    "positive_histories",
    "user_snapshots",
    "utc_from_us",
]

#: The label of a positive interaction (the ``interactions`` contract's ``label``).
POSITIVE = 1
#: The epoch, UTC: timestamps in arrays are microseconds since it.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(ts: datetime) -> int:
    """A timezone-aware datetime -> microseconds since the epoch (UTC)."""
    return (ts - EPOCH) // timedelta(microseconds=1)


def utc_from_us(us: int) -> datetime:
    """Microseconds since the epoch -> a UTC datetime."""
    return EPOCH + timedelta(microseconds=int(us))


def _series_us(values: Iterable) -> np.ndarray:
    """Timestamps (aware, or naive taken as UTC) -> int64 microseconds since the epoch."""
    ts = pd.to_datetime(pd.Series(values), utc=True).dt.tz_localize(None)
    return ts.to_numpy(dtype="datetime64[us]").view(np.int64)


@dataclass(frozen=True)
class UserHistory:
    """What a preference is built from: the user's distinct positive authors before ``as_of``.

    ``history_count`` counts every positive interaction strictly before ``as_of`` (repeats
    included); ``authors`` holds each engaged author once, at its first engagement, oldest first,
    as its content valid at ``as_of``; ``history_last_ts`` is the newest positive's time (UTC).
    """

    user_id: str
    as_of: datetime
    authors: tuple[Author, ...]
    history_count: int
    history_last_ts: datetime | None


@dataclass(frozen=True)
class Histories:
    """Point-in-time histories of ``R`` requests, as flat arrays.

    Request ``r``'s distinct authors are ``author_ids[offsets[r]:offsets[r + 1]]`` (oldest first)
    and their first-engagement times ``first_us[...]`` at the same positions.

    Attributes:
        count: ``(R,)`` int64, positives strictly before the request's instant (repeats included).
        last_us: ``(R,)`` int64 microseconds, the newest of them; ``-1`` where ``count == 0``.
        offsets: ``(R + 1,)`` int64 offsets into the flat arrays.
        author_ids: ``(H,)`` object array of author ids.
        first_us: ``(H,)`` int64 microseconds of each author's first positive.
    """

    count: np.ndarray
    last_us: np.ndarray
    offsets: np.ndarray
    author_ids: np.ndarray
    first_us: np.ndarray

    def authors_of(self, r: int) -> np.ndarray:
        """Request ``r``'s distinct author ids, oldest first."""
        return self.author_ids[self.offsets[r] : self.offsets[r + 1]]


def positive_histories(
    user_ids: Sequence | np.ndarray,
    author_ids: Sequence | np.ndarray,
    event_us: Sequence | np.ndarray,
    request_users: Sequence | np.ndarray,
    request_us: Sequence | np.ndarray,
    *,
    labels: Sequence | np.ndarray | None = None,
) -> Histories:
    """THE point-in-time history rule (module docstring), for many requests at once.

    Args:
        user_ids, author_ids, event_us: ``(N,)`` interactions: ids (any order; compared as
            strings) and int64 microseconds since the epoch (UTC).
        request_users, request_us: ``(R,)`` the requests ``(user, instant s)``, in any order;
            the output keeps their order. A user without positives gets an empty history.
        labels: ``(N,)`` interaction labels; only ``POSITIVE`` rows count. ``None``: every row
            is a positive (the caller filtered them, as the Spark plan does before its shuffle).

    Returns:
        :class:`Histories` of the ``R`` requests. Cost: O((N + R) log(N + R)), no Python loop.
    """
    users = np.asarray(user_ids, dtype=object)
    authors = np.asarray(author_ids, dtype=object)
    ts = np.asarray(event_us, dtype=np.int64)
    if labels is not None:
        keep = np.asarray(labels) == POSITIVE
        users, authors, ts = users[keep], authors[keep], ts[keep]
    r_ts = np.asarray(request_us, dtype=np.int64)
    n, n_req = len(users), len(r_ts)
    # Codes from sorted uniques: code order == string order, so sorting codes sorts ids.
    u_codes, _ = pd.factorize(
        np.concatenate([users, np.asarray(request_users, dtype=object)]).astype(str), sort=True
    )
    a_codes, a_uniques = pd.factorize(authors.astype(str), sort=True)
    pu, ru = u_codes[:n], u_codes[n:]
    order = np.lexsort((a_codes, ts, pu))  # by user, time, then author id
    su, st, sa = pu[order], ts[order], a_codes[order]

    # Where each request cuts its user's sorted positives: merge requests with positives on
    # (user, time, kind) with requests first at equal times, so a positive AT s is not before s.
    kind = np.r_[np.ones(n, np.int8), np.zeros(n_req, np.int8)]
    merged = np.lexsort((kind, np.r_[st, r_ts], np.r_[su, ru]))
    is_pos = merged < n
    before = np.cumsum(is_pos) - is_pos  # positives strictly before each merged slot
    cut = np.empty(n_req, np.int64)
    cut[merged[~is_pos] - n] = before[~is_pos]
    lo = np.searchsorted(su, ru, side="left")  # the user's first sorted positive
    count = cut - lo

    # Distinct authors at first engagement: the first sorted position of each (user, author).
    pair = su.astype(np.int64) * max(len(a_uniques), 1) + sa
    firsts = np.sort(np.unique(pair, return_index=True)[1])
    start = np.searchsorted(firsts, lo, side="left")
    stop = np.searchsorted(firsts, cut, side="left")
    lengths = stop - start
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    flat = firsts[np.repeat(start - offsets[:-1], lengths) + np.arange(offsets[-1])]
    last = st[np.maximum(cut - 1, 0)] if n else np.zeros(n_req, np.int64)
    return Histories(
        count=count.astype(np.int64),
        last_us=np.where(count > 0, last, -1).astype(np.int64),
        offsets=offsets,
        author_ids=np.asarray(a_uniques, dtype=object)[sa[flat]],
        first_us=st[flat],
    )


class AuthorSnapshots:
    """Author content snapshots by id, for point-in-time and exact-key lookups.

    Args:
        records: every content snapshot (several per author allowed, any order).
    """

    def __init__(self, records: Iterable[Author]):
        records = list(records)
        by_id: dict[str, list[Author]] = {}
        for a in sorted(records, key=lambda a: (a.author_id, a.event_timestamp)):
            by_id.setdefault(a.author_id, []).append(a)
        self._snaps = {
            aid: ([epoch_us(a.event_timestamp) for a in lst], lst) for aid, lst in by_id.items()
        }
        self._by_key = {(a.author_id, epoch_us(a.event_timestamp)): a for a in records}

    def as_of(self, author_id: str, s_us: int) -> Author | None:
        """The newest snapshot with ``event_timestamp < s`` (None: no content yet)."""
        snap = self._snaps.get(author_id)
        if snap is None:
            return None
        ts, lst = snap
        i = bisect.bisect_left(ts, s_us)
        return lst[i - 1] if i else None

    def get(self, author_id: str, ts_us: int) -> Author | None:
        """The snapshot of ``author_id`` taken exactly at ``ts_us`` (None: no such snapshot)."""
        return self._by_key.get((author_id, ts_us))


def _user_histories(
    h: Histories,
    users: Sequence[str],
    instants: Sequence[datetime],
    instants_us: Sequence[int],
    authors: AuthorSnapshots,
) -> list[UserHistory]:
    out = []
    for r, (user, as_of, s) in enumerate(zip(users, instants, instants_us, strict=True)):
        content = (authors.as_of(str(a), s) for a in h.authors_of(r))
        out.append(
            UserHistory(
                str(user),
                as_of,
                tuple(a for a in content if a is not None),
                int(h.count[r]),
                utc_from_us(h.last_us[r]) if h.count[r] else None,
            )
        )
    return out


def build_histories(
    interactions: pd.DataFrame,
    authors: Mapping[str, Author] | AuthorSnapshots,
    requests: Sequence[tuple[str, datetime]],
) -> list[UserHistory]:
    """Histories for ``(user_id, as_of)`` requests, in request order (the rule above).

    Args:
        interactions: the ``interactions`` contract as a DataFrame (``user_id``, ``author_id``,
            ``event_timestamp``, ``label``; only ``label == 1`` used; naive times are UTC).
        authors: author content: an index of snapshots, or ``author_id -> Author`` (its records
            are taken as the snapshots; one valid at ``as_of`` is used).
        requests: which users, as of when (naive instants are UTC); ``as_of`` is kept as given.
    """
    index = authors if isinstance(authors, AuthorSnapshots) else AuthorSnapshots(authors.values())
    s_us = _series_us([pd.Timestamp(s) for _, s in requests])
    h = positive_histories(
        interactions["user_id"].to_numpy(),
        interactions["author_id"].to_numpy(),
        _series_us(interactions["event_timestamp"]),
        [u for u, _ in requests],
        s_us,
        labels=interactions["label"].to_numpy(),
    )
    as_of = [pd.Timestamp(s).to_pydatetime() for _, s in requests]
    return _user_histories(h, [u for u, _ in requests], as_of, s_us.tolist(), index)


def user_snapshots(
    user_id: str,
    ts_us: np.ndarray,
    author_ids: np.ndarray,
    kinds: np.ndarray,
    authors: AuthorSnapshots,
) -> list[UserHistory]:
    """One user's requested snapshots from the rows a Spark job groups by user.

    Args:
        ts_us: ``(N,)`` int64 microseconds: the positives' timestamps and requested instants.
        author_ids: ``(N,)`` the positive's author (ignored for requests).
        kinds: ``(N,)`` 1 for a positive, 0 for a requested snapshot instant.

    Returns:
        One history per distinct requested instant, oldest first, ``as_of`` in UTC.
    """
    pos = kinds == 1
    instants = np.unique(ts_us[~pos])
    h = positive_histories(
        np.full(int(pos.sum()), str(user_id), dtype=object),
        author_ids[pos],
        ts_us[pos],
        np.full(len(instants), str(user_id), dtype=object),
        instants,
    )
    s = instants.tolist()
    return _user_histories(h, [str(user_id)] * len(s), [utc_from_us(x) for x in s], s, authors)
