"""Composer outputs -> the ``preferences`` and ``author_profiles`` contracts.

Texts are encoded with the configured encoder (embeddings cached by encoder version + text).
Every row carries how its text came out (``pref_status``/``author_status``: ok, repaired or
failed) and how it was decoded (``pref_decoding``/``author_decoding``: constrained, free or
none), so a failed text is never served as if it were good. Inputs the composer skipped (empty
history, author without content) go to a quarantine table with the reason;
``n_in == n_written + n_quarantined`` holds for every call. Both contracts are built by one
function, ``_compose_rows``, from a description of the contract's rows (``_RowKind``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa

from mspa_features.compose.cache import ComposerCache, content_key
from mspa_features.compose.composer import Composed, Composer, UserHistory
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES, Author, Contract
from mspa_features.data.validation import QUARANTINE_SCHEMA
from mspa_features.errors import ReconciliationError
from mspa_features.names import row_model_version


def feature_version(composer: Composer, encoder: object) -> str:
    """The ``model_version`` written with features: text model and encoder together,
    ``<composer>|<encoder>``, shortened to a head and a digest when longer than
    :data:`~mspa_features.names.MAX_MODEL_VERSION` bytes (a long model path or hub id;
    :func:`~mspa_features.names.row_model_version`) so the value stays small enough for
    Redis's compact hash encoding."""
    full = f"{composer.model_version}|{encoder.model_version}"  # type: ignore[attr-defined]
    return row_model_version(full)


def encode_cached(encoder: object, texts: Sequence[str], cache: ComposerCache | None) -> np.ndarray:
    """Encode ``texts`` (float32, L2-normalised rows), reusing cached vectors."""
    enc_version: str = encoder.model_version  # type: ignore[attr-defined]
    keys = [content_key(enc_version, t) for t in texts]
    found = cache.get_embeddings(keys) if cache else {}
    todo = [i for i, k in enumerate(keys) if k not in found]
    if todo:
        vecs = encoder.encode([texts[i] for i in todo])  # type: ignore[attr-defined]
        new = [(keys[i], vecs[j]) for j, i in enumerate(todo)]
        if cache:
            cache.put_embeddings(new)
        found.update(new)
    dim: int = encoder.dim  # type: ignore[attr-defined]
    if not keys:
        return np.zeros((0, dim), np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def batch_progress(
    progress: Callable[[str, int, int], None] | None, stage: str, total: int
) -> Callable[[int], None]:
    """An ``on_batch`` callback for the row builders: reports ``progress(stage, 0, total)``
    now (the sub-task is under way: a display shows its row and total from the start, not after
    the first batch) and ``progress(stage, done, total)`` after each batch, adding up the batch
    sizes (nothing when ``progress`` is None)."""
    done = 0
    if progress:
        progress(stage, 0, total)

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(stage, done, total)

    return tick


@dataclass
class FeatureOutput:
    """Rows for one contract plus the quarantined inputs."""

    table: pa.Table
    quarantine: pa.Table
    n_in: int
    composed: list[Composed]

    def check(self, contract: str) -> None:
        if self.table.num_rows + self.quarantine.num_rows != self.n_in:
            raise ReconciliationError(
                contract, self.n_in, self.table.num_rows, self.quarantine.num_rows
            )


def _quarantine(contract: str, rows: list[tuple[int, str, dict]]) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "contract": [contract] * len(rows),
            "source": ["compose"] * len(rows),
            "row_number": [i for i, _, _ in rows],
            "reason": [r for _, r, _ in rows],
            "record": [json.dumps(rec, default=str) for _, _, rec in rows],
        },
        schema=QUARANTINE_SCHEMA,
    )


T = TypeVar("T", UserHistory, Author)


@dataclass(frozen=True, kw_only=True)
class _RowKind(Generic[T]):
    """How one contract's rows come out of the composer: the composer method that writes the
    texts, the prompt hash they carry, the item fields that become columns, and what a
    quarantined item records. Both contracts go through :func:`_compose_rows`."""

    contract: Contract
    prefix: str  # of the text, embedding, status and decoding columns: pref_text, author_emb...
    compose: str  # the Composer method: items -> list[Composed]
    prompt_hash: str  # the Composer property holding that method's prompt hash
    columns: Mapping[str, str]  # column -> the item attribute holding its value
    record: tuple[str, ...]  # the item attributes a quarantined item's record keeps


_PREFERENCE_ROWS: _RowKind[UserHistory] = _RowKind(
    contract=PREFERENCES,
    prefix="pref",
    compose="compose_preferences",
    prompt_hash="preference_prompt_hash",
    columns={
        "user_id": "user_id",
        "event_timestamp": "as_of",
        "history_count": "history_count",
        "history_last_ts": "history_last_ts",
    },
    record=("user_id", "as_of"),
)
_AUTHOR_ROWS: _RowKind[Author] = _RowKind(
    contract=AUTHOR_PROFILES,
    prefix="author",
    compose="describe_authors",
    prompt_hash="author_prompt_hash",
    columns={"author_id": "author_id", "event_timestamp": "event_timestamp"},
    record=("author_id",),
)


def _compose_rows(
    kind: _RowKind[T],
    composer: Composer,
    encoder: object,
    items: Sequence[T],
    *,
    cache: ComposerCache | None = None,
    created: datetime | None = None,
    on_batch: Callable[[int], None] | None = None,
    batch_size: int = 64,
) -> FeatureOutput:
    """Compose (in batches of ``batch_size``), encode and shape the rows of ``kind``'s contract.

    Args:
        kind: which contract (``_PREFERENCE_ROWS``: user histories; ``_AUTHOR_ROWS``: authors).
        composer: writes the texts; its ``model_version`` and the encoder's make the rows'.
        encoder: embeds the texts (cached by encoder version + text in ``cache``).
        items: the inputs, one row (or one quarantined record) each.
        cache: the composer cache (embeddings), if any.
        created: every row's ``created_timestamp`` (default: now).
        on_batch: called with each batch's size once it is composed (progress).
        batch_size: items per composer call.

    Raises:
        ReconciliationError: rows + quarantined != items (a composer bug).
    """
    created = created or datetime.now(UTC)
    compose: Callable[[Sequence[T]], list[Composed]] = getattr(composer, kind.compose)
    composed: list[Composed] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        composed += compose(chunk)
        if on_batch:
            on_batch(len(chunk))
    ok = [i for i, c in enumerate(composed) if c.status != "skipped"]
    embs = encode_cached(encoder, [composed[i].text for i in ok], cache)
    n, p = len(ok), kind.prefix
    rows: dict[str, list[Any]] = {
        **{col: [getattr(items[i], attr) for i in ok] for col, attr in kind.columns.items()},
        "created_timestamp": [created] * n,
        f"{p}_text": [composed[i].text for i in ok],
        f"{p}_emb": list(embs),
        "model_version": [feature_version(composer, encoder)] * n,
        "prompt_hash": [getattr(composer, kind.prompt_hash)] * n,
        f"{p}_status": [composed[i].status for i in ok],
        f"{p}_decoding": [composed[i].decoding for i in ok],
    }
    table = pa.Table.from_pydict(rows, schema=kind.contract.schema)
    skipped = [
        (i, c.reason or "skipped", {attr: getattr(items[i], attr) for attr in kind.record})
        for i, c in enumerate(composed)
        if c.status == "skipped"
    ]
    out = FeatureOutput(table, _quarantine(kind.contract.name, skipped), len(items), composed)
    out.check(kind.contract.name)
    return out


# The public builders: ``_compose_rows`` bound to one contract, called as
# ``compose_preference_rows(composer, encoder, histories, *, cache, created, on_batch,
# batch_size)`` (arguments and errors as ``_compose_rows``).
compose_preference_rows = functools.partial(_compose_rows, _PREFERENCE_ROWS)
compose_preference_rows.__doc__ = """Compose, encode and shape preference rows (contract
``preferences``) from ``UserHistory`` items: ``(composer, encoder, histories, *, cache=None,
created=None, on_batch=None, batch_size=64)``."""

compose_author_rows = functools.partial(_compose_rows, _AUTHOR_ROWS)
compose_author_rows.__doc__ = """Describe, encode and shape author rows (contract
``author_profiles``) from ``Author`` items: ``(composer, encoder, authors, *, cache=None,
created=None, on_batch=None, batch_size=64)``."""
