"""Composer outputs -> the ``preferences`` and ``author_profiles`` contracts.

Texts are encoded with the configured encoder (embeddings cached by encoder version + text).
Every row carries how its text came out (``pref_status``/``author_status``: ok, repaired or
failed) and how it was decoded (``pref_decoding``/``author_decoding``: constrained, free or
none), so a failed text is never served as if it were good. Inputs the composer skipped (empty history, author without content) go to a quarantine table
with the reason; ``n_in == n_written + n_quarantined`` holds for every call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from mspa_features.compose.cache import ComposerCache, content_key
from mspa_features.compose.composer import Composed, Composer, UserHistory
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES, Author
from mspa_features.data.validation import QUARANTINE_SCHEMA
from mspa_features.errors import ReconciliationError


def feature_version(composer: Composer, encoder: object) -> str:
    """The ``model_version`` written with features: text model and encoder together."""
    return f"{composer.model_version}|{encoder.model_version}"  # type: ignore[attr-defined]


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


def compose_preference_rows(
    composer: Composer,
    encoder: object,
    histories: Sequence[UserHistory],
    *,
    cache: ComposerCache | None = None,
    created: datetime | None = None,
    on_batch: Callable[[int], None] | None = None,
    batch_size: int = 64,
) -> FeatureOutput:
    """Compose, encode and shape preference rows (contract ``preferences``)."""
    created = created or datetime.now(UTC)
    version = feature_version(composer, encoder)
    composed: list[Composed] = []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        composed += composer.compose_preferences(chunk)
        if on_batch:
            on_batch(len(chunk))
    ok = [i for i, c in enumerate(composed) if c.status != "skipped"]
    embs = encode_cached(encoder, [composed[i].text for i in ok], cache)
    rows = {
        "user_id": [histories[i].user_id for i in ok],
        "event_timestamp": [histories[i].as_of for i in ok],
        "created_timestamp": [created] * len(ok),
        "history_count": [histories[i].history_count for i in ok],
        "history_last_ts": [histories[i].history_last_ts for i in ok],
        "pref_text": [composed[i].text for i in ok],
        "pref_emb": list(embs),
        "model_version": [version] * len(ok),
        "prompt_hash": [composer.preference_prompt_hash] * len(ok),
        "pref_status": [composed[i].status for i in ok],
        "pref_decoding": [composed[i].decoding for i in ok],
    }
    table = pa.Table.from_pydict(rows, schema=PREFERENCES.schema)
    q = _quarantine(
        PREFERENCES.name,
        [
            (
                i,
                c.reason or "skipped",
                {"user_id": histories[i].user_id, "as_of": histories[i].as_of},
            )
            for i, c in enumerate(composed)
            if c.status == "skipped"
        ],
    )
    out = FeatureOutput(table, q, len(histories), composed)
    out.check(PREFERENCES.name)
    return out


def compose_author_rows(
    composer: Composer,
    encoder: object,
    authors: Sequence[Author],
    *,
    cache: ComposerCache | None = None,
    created: datetime | None = None,
    on_batch: Callable[[int], None] | None = None,
    batch_size: int = 64,
) -> FeatureOutput:
    """Describe, encode and shape author rows (contract ``author_profiles``)."""
    created = created or datetime.now(UTC)
    version = feature_version(composer, encoder)
    composed: list[Composed] = []
    for start in range(0, len(authors), batch_size):
        chunk = authors[start : start + batch_size]
        composed += composer.describe_authors(chunk)
        if on_batch:
            on_batch(len(chunk))
    ok = [i for i, c in enumerate(composed) if c.status != "skipped"]
    embs = encode_cached(encoder, [composed[i].text for i in ok], cache)
    rows = {
        "author_id": [authors[i].author_id for i in ok],
        "event_timestamp": [authors[i].event_timestamp for i in ok],
        "created_timestamp": [created] * len(ok),
        "author_text": [composed[i].text for i in ok],
        "author_emb": list(embs),
        "model_version": [version] * len(ok),
        "prompt_hash": [composer.author_prompt_hash] * len(ok),
        "author_status": [composed[i].status for i in ok],
        "author_decoding": [composed[i].decoding for i in ok],
    }
    table = pa.Table.from_pydict(rows, schema=AUTHOR_PROFILES.schema)
    q = _quarantine(
        AUTHOR_PROFILES.name,
        [
            (i, c.reason or "skipped", {"author_id": authors[i].author_id})
            for i, c in enumerate(composed)
            if c.status == "skipped"
        ],
    )
    out = FeatureOutput(table, q, len(authors), composed)
    out.check(AUTHOR_PROFILES.name)
    return out
