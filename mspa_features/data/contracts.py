"""Data contracts: the pyarrow schemas and typed records every stage reads and writes.

Conventions shared by all contracts:

* ids are strings (production ids are often hashed or alphanumeric; MovieLens ints are
  stringified), so Feast join keys and Spark columns have one type everywhere;
* every timestamp is ``timestamp[us, tz=UTC]``: microseconds because Spark 4 refuses
  nanosecond parquet, and UTC so point-in-time joins never depend on a machine's zone;
* embeddings are ``list<float32>``, L2-normalised by the encoder that wrote them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
EMB = pa.list_(pa.float32())
# A frame is either inline image bytes or a path to an image file (HF `datasets.Image` layout).
FRAME = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])


# --------------------------------------------------------------------------- typed records


@dataclass(frozen=True, kw_only=True)
class Frame:
    """One image: inline ``bytes`` or a ``path`` (relative paths resolve against the data dir)."""

    bytes: bytes | None = None
    path: str | None = None


@dataclass(frozen=True, kw_only=True)
class Author:
    """An author (live-streamer; for MovieLens, a movie) and its content at ``event_timestamp``."""

    author_id: str
    event_timestamp: datetime
    profile_text: str
    location: str | None = None
    asr_text: str | None = None
    comments: list[str] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Interaction:
    """One user->author event. ``label`` is 1 for a positive (tip, high rating)."""

    user_id: str
    author_id: str
    event_timestamp: datetime
    action: str
    value: float
    label: int


@dataclass(frozen=True, kw_only=True)
class User:
    """A user and optional profile fields."""

    user_id: str
    age: int | None = None
    gender: str | None = None
    occupation: str | None = None
    region: str | None = None


@dataclass(frozen=True, kw_only=True)
class Preference:
    """A user's preference snapshot, valid from ``event_timestamp`` (the as-of instant).

    ``history_count`` counts the user's positives with timestamp strictly before the as-of
    instant that the text was built from; ``history_last_ts`` is the newest of them.
    """

    user_id: str
    event_timestamp: datetime
    created_timestamp: datetime
    history_count: int
    history_last_ts: datetime | None
    pref_text: str
    pref_emb: list[float]
    model_version: str
    prompt_hash: str
    pref_status: str | None = None
    pref_decoding: str | None = None


@dataclass(frozen=True, kw_only=True)
class AuthorProfile:
    """An author's generated description and embedding, valid from ``event_timestamp``."""

    author_id: str
    event_timestamp: datetime
    created_timestamp: datetime
    author_text: str
    author_emb: list[float]
    model_version: str
    prompt_hash: str
    author_status: str | None = None
    author_decoding: str | None = None


# --------------------------------------------------------------------------- contracts

#: How a generated text came out: its JSON answer parsed as is (``ok``), after repairs
#: (``repaired``), or not (``failed``: the text is a fallback and must not be served as good).
GEN_STATUSES = ("ok", "repaired", "failed")
#: How it was decoded: constrained to the answer schema, free-form, or no LLM (template).
GEN_DECODINGS = ("constrained", "free", "none")


@dataclass(frozen=True, kw_only=True)
class Contract:
    """A named schema plus the rules validation enforces on each row.

    Attributes:
        name: contract name, also the file stem (``authors.parquet``).
        schema: the pyarrow schema of accepted rows.
        record: the typed record class for one row.
        key: columns that identify a row; duplicates after the first are quarantined.
        required: columns that must be present in the input and non-null in every row.
        entity_refs: column -> entity contract name whose ids it must reference.
        finite: numeric columns that must be finite (no NaN/inf).
        vectors: embedding columns whose length must match the configured dimension.
        timestamps: columns holding UTC instants.
        allowed: column -> the only values it may take.
        vector_groups: columns within whose values every vector of a column has one length
            (one model version writes one embedding size).
        built_before: column saying when the newest information a row was built from happened
            -> the column holding the row's as-of instant; the first must be strictly earlier
            (a point-in-time rule: a row never carries information from its own future).
        history: (count column, newest-event column) of the events a row was built from: both
            zero/null or both set.
        nonnegative: numeric columns that must be >= 0.
    """

    name: str
    schema: pa.Schema
    record: type
    key: tuple[str, ...]
    required: tuple[str, ...]
    entity_refs: dict[str, str] = field(default_factory=dict)
    finite: tuple[str, ...] = ()
    vectors: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    allowed: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    vector_groups: tuple[str, ...] = ()
    built_before: dict[str, str] = field(default_factory=dict)
    history: tuple[str, str] | None = None
    nonnegative: tuple[str, ...] = ()

    registry: ClassVar[dict[str, Contract]] = {}

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    @property
    def optional(self) -> list[str]:
        return [c for c in self.schema.names if c not in self.required]

    def to_records(self, table: pa.Table) -> list[Any]:
        """Convert an accepted table into typed records."""
        rows = table.select(self.columns).to_pylist()
        out = []
        for row in rows:
            if "frames" in row:
                row["frames"] = [Frame(**f) for f in (row["frames"] or [])]
            if "attributes" in row:
                row["attributes"] = dict(row["attributes"] or [])
            if "comments" in row:
                row["comments"] = list(row["comments"] or [])
            out.append(self.record(**row))
        return out

    def from_records(self, records: list[Any]) -> pa.Table:
        """Build a table with this contract's schema from typed records."""
        rows = []
        for r in records:
            row = dataclasses.asdict(r)
            if "attributes" in row:
                row["attributes"] = list(row["attributes"].items())
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=self.schema)

    def empty(self) -> pa.Table:
        return self.schema.empty_table()


def _contract(**kw: Any) -> Contract:
    c = Contract(**kw)
    Contract.registry[c.name] = c
    return c


AUTHORS = _contract(
    name="authors",
    record=Author,
    schema=pa.schema(
        [
            pa.field("author_id", pa.string(), nullable=False),
            pa.field("event_timestamp", TS, nullable=False),
            pa.field("profile_text", pa.string(), nullable=False),
            pa.field("location", pa.string()),
            pa.field("asr_text", pa.string()),
            pa.field("comments", pa.list_(pa.string())),
            pa.field("frames", pa.list_(FRAME)),
            pa.field("attributes", pa.map_(pa.string(), pa.string())),
        ]
    ),
    key=("author_id", "event_timestamp"),
    required=("author_id", "event_timestamp", "profile_text"),
    timestamps=("event_timestamp",),
)

INTERACTIONS = _contract(
    name="interactions",
    record=Interaction,
    schema=pa.schema(
        [
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("author_id", pa.string(), nullable=False),
            pa.field("event_timestamp", TS, nullable=False),
            pa.field("action", pa.string(), nullable=False),
            pa.field("value", pa.float64(), nullable=False),
            pa.field("label", pa.int8(), nullable=False),
        ]
    ),
    key=("user_id", "author_id", "event_timestamp", "action"),
    required=("user_id", "author_id", "event_timestamp", "action", "value", "label"),
    entity_refs={"user_id": "users", "author_id": "authors"},
    finite=("value",),
    timestamps=("event_timestamp",),
    allowed={"label": (0, 1)},
)

USERS = _contract(
    name="users",
    record=User,
    schema=pa.schema(
        [
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("age", pa.int32()),
            pa.field("gender", pa.string()),
            pa.field("occupation", pa.string()),
            pa.field("region", pa.string()),
        ]
    ),
    key=("user_id",),
    required=("user_id",),
)

PREFERENCES = _contract(
    name="preferences",
    record=Preference,
    schema=pa.schema(
        [
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("event_timestamp", TS, nullable=False),
            pa.field("created_timestamp", TS, nullable=False),
            pa.field("history_count", pa.int64(), nullable=False),
            pa.field("history_last_ts", TS),
            pa.field("pref_text", pa.string(), nullable=False),
            pa.field("pref_emb", EMB, nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("prompt_hash", pa.string(), nullable=False),
            pa.field("pref_status", pa.string()),
            pa.field("pref_decoding", pa.string()),
        ]
    ),
    key=("user_id", "event_timestamp", "model_version"),
    required=(
        "user_id",
        "event_timestamp",
        "created_timestamp",
        "history_count",
        "pref_text",
        "pref_emb",
        "model_version",
        "prompt_hash",
    ),
    entity_refs={"user_id": "users"},
    vectors=("pref_emb",),
    vector_groups=("model_version",),
    timestamps=("event_timestamp", "created_timestamp", "history_last_ts"),
    # history_last_ts is the newest positive the text was built from: strictly before the
    # as-of instant, or the snapshot would be served to rows before the events it summarises.
    built_before={"history_last_ts": "event_timestamp"},
    history=("history_count", "history_last_ts"),
    nonnegative=("history_count",),
    allowed={"pref_status": GEN_STATUSES, "pref_decoding": GEN_DECODINGS},
)

AUTHOR_PROFILES = _contract(
    name="author_profiles",
    record=AuthorProfile,
    schema=pa.schema(
        [
            pa.field("author_id", pa.string(), nullable=False),
            pa.field("event_timestamp", TS, nullable=False),
            pa.field("created_timestamp", TS, nullable=False),
            pa.field("author_text", pa.string(), nullable=False),
            pa.field("author_emb", EMB, nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("prompt_hash", pa.string(), nullable=False),
            pa.field("author_status", pa.string()),
            pa.field("author_decoding", pa.string()),
        ]
    ),
    key=("author_id", "event_timestamp", "model_version"),
    required=(
        "author_id",
        "event_timestamp",
        "created_timestamp",
        "author_text",
        "author_emb",
        "model_version",
        "prompt_hash",
    ),
    entity_refs={"author_id": "authors"},
    vectors=("author_emb",),
    vector_groups=("model_version",),
    timestamps=("event_timestamp", "created_timestamp"),
    allowed={"author_status": GEN_STATUSES, "author_decoding": GEN_DECODINGS},
)


def get_contract(name: str) -> Contract:
    """Look up a contract by name.

    Raises:
        KeyError: with the valid names listed.
    """
    try:
        return Contract.registry[name]
    except KeyError:
        raise KeyError(f"unknown contract {name!r}; valid: {sorted(Contract.registry)}") from None
