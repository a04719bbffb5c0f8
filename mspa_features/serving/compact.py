"""Compact serving embeddings: the byte codec, the Feast definitions of a compact feature set,
and what its online store costs (bytes per entity, read latency).

A *compact set* (``template_pca32_int8``) is a reduced and quantised copy of a feature set's
embeddings, written beside it (``<workspace>/features/<run>/compact/<name>/``, built by
:mod:`mspa_features.evaluation.compact`) with the same entity ids, event and created timestamps
as the source rows (so point-in-time reads see the same snapshots), and a ``compact.json``
manifest. Each embedding is one ``Bytes`` value (Feast stores it as one ``ValueProto.bytes_val``;
an ``Array(Float32)`` of 384 floats costs 4 bytes a float plus the list framing):

====================  =============================================================
``float16``           ``0x01`` then ``d`` little-endian float16           (``1 + 2d`` bytes)
``int8``              ``0x02``, a float32 scale, then ``d`` int8 codes   (``5 + d`` bytes)
====================  =============================================================

``int8`` is symmetric per-vector quantisation: ``scale = max|x| / 127``, ``q = round(x / scale)``,
so every component decodes within ``scale / 2`` of its value. The first byte names the codec,
so a reader needs no side information to decode a value.

Feast objects of compact set ``cs`` (the service names are those of a full set, so an
ablation reads ``with_preference__{cs}`` exactly as it reads ``with_preference__template``):

=================================  ===========================================================
``user_preferences__{cs}``         pref_emb_code (Bytes), history_count, pref_status,
                                   pref_decoding, model_version (key user_id)
``author_profiles__{cs}``          author_emb_code (Bytes), author_status, author_decoding,
                                   model_version (key author_id)
``pref_emb_decoded__{cs}``         on-demand: pref_emb = decode(pref_emb_code), Array(Float32)
``author_emb_decoded__{cs}``       on-demand: author_emb = decode(author_emb_code)
``user_author_cosine__{cs}``       on-demand: pref_author_cosine of the decoded vectors
``baseline__`` / ``with_preference__`` / ``with_author__`` / ``all__{cs}``   as for a full set
=================================  ===========================================================
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Unpack

import numpy as np

from mspa_features.errors import FeatureRepoError, InvalidValueError, UnknownNameError

if TYPE_CHECKING:
    from feast import FeatureStore

    from mspa_features.serving.materialize import StoreTarget

DTYPES: tuple[str, ...] = ("int8", "float16")
CODEC_FLOAT16 = 1
CODEC_INT8 = 2
MANIFEST = "compact.json"
PREF_CODE, AUTHOR_CODE = "pref_emb_code", "author_emb_code"
#: what the preference/author views serve besides the code (statuses beside the vectors)
PREF_EXTRA = ("history_count", "pref_status", "pref_decoding")
AUTHOR_EXTRA = ("author_status", "author_decoding")


# --------------------------------------------------------------------------- codec


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-vector int8: ``(q (n, d) int8, scale (n,) float32)``.

    ``scale = max|x_i| / 127`` (float32, the value stored), ``q = round(x / scale)``; a zero
    vector has scale 0 and codes 0. Every component satisfies ``|x - q * scale| <= scale / 2``.

    Raises:
        InvalidValueError: ``x`` is not a finite (n, d) array.
    """
    x = _matrix(x)
    scale = (np.abs(x).max(axis=1) / 127.0).astype(np.float32)  # (n,)
    safe = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float64)
    q = np.clip(np.rint(x / safe[:, None]), -127, 127).astype(np.int8)  # (n, d)
    return q, scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``q * scale`` per row, float32 (n, d)."""
    return (np.asarray(q, dtype=np.float32) * np.asarray(scale, dtype=np.float32)[:, None]).astype(
        np.float32
    )


def int8_error_bound(scale: np.ndarray) -> np.ndarray:
    """Largest absolute error of any component of each int8 vector: ``scale / 2`` (n,)."""
    return np.asarray(scale, dtype=np.float64) / 2.0


def float16_error_bound(x: np.ndarray) -> np.ndarray:
    """Largest absolute error of each float16 component (round to nearest, 11-bit significand):
    ``|x| * 2**-11`` for normal values, ``2**-25`` (half the smallest subnormal) below them."""
    return np.maximum(np.abs(np.asarray(x, dtype=np.float64)) * 2.0**-11, 2.0**-25)


def pack(x: np.ndarray, dtype: str) -> list[bytes]:
    """One self-describing value per row of ``x`` (n, d) (see the module table).

    Raises:
        UnknownNameError: ``dtype`` is not one of :data:`DTYPES`.
    """
    x = _matrix(x)
    if dtype == "float16":
        head = bytes([CODEC_FLOAT16])
        body = x.astype("<f2")
        return [head + row.tobytes() for row in body]
    if dtype == "int8":
        q, scale = quantize_int8(x)
        head = bytes([CODEC_INT8])
        return [
            head + np.asarray(s, dtype="<f4").tobytes() + row.tobytes()
            for s, row in zip(scale, q, strict=True)
        ]
    raise UnknownNameError("compact dtype", dtype, DTYPES)


def unpack(value: bytes) -> np.ndarray:
    """The float32 vector of one packed value.

    Raises:
        InvalidValueError: unknown codec byte or a truncated value.
    """
    b = bytes(value)
    if len(b) >= 1 and b[0] == CODEC_FLOAT16 and len(b) % 2 == 1:
        return np.frombuffer(b, dtype="<f2", offset=1).astype(np.float32)
    if len(b) >= 5 and b[0] == CODEC_INT8:
        scale = np.frombuffer(b, dtype="<f4", count=1, offset=1)[0]
        return (np.frombuffer(b, dtype=np.int8, offset=5).astype(np.float32) * scale).astype(
            np.float32
        )
    raise InvalidValueError(
        "packed embedding", b[:8], "a float16 (0x01) or int8 (0x02) value of the compact codec"
    )


def value_bytes(dim: int, dtype: str) -> int:
    """Payload bytes of one packed ``dim``-vector (before Feast's ValueProto framing)."""
    if dtype == "float16":
        return 1 + 2 * dim
    if dtype == "int8":
        return 5 + dim
    raise UnknownNameError("compact dtype", dtype, DTYPES)


def _matrix(x: Any) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or not np.isfinite(a).all():
        raise InvalidValueError(
            "embeddings", f"array of shape {a.shape}", "a finite 2-d array (n, d)"
        )
    return a


# --------------------------------------------------------------------------- on-demand UDFs


def _decode_udf(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Decode every ``*_emb_code`` column present into ``*_emb`` (lists of floats; None where
    the value is missing). Self-contained: Feast serialises the function by value.

    A value of no known codec decodes to ``[nan]``: Feast infers the output type by feeding
    ``b"hello world"``, and a real reader's width check refuses a one-element vector.
    """
    import numpy as np

    def decode(b: Any) -> list[float] | None:
        if b is None or isinstance(b, float):
            return None
        b = bytes(b)
        if len(b) >= 1 and b[0] == 1 and len(b) % 2 == 1:
            return np.frombuffer(b, dtype="<f2", offset=1).astype(np.float32).tolist()
        if len(b) >= 5 and b[0] == 2:
            s = np.frombuffer(b, dtype="<f4", count=1, offset=1)[0]
            return (np.frombuffer(b, dtype=np.int8, offset=5).astype(np.float32) * s).tolist()
        return [float("nan")]

    out: dict[str, list[Any]] = {}
    for src, dst in (("pref_emb_code", "pref_emb"), ("author_emb_code", "author_emb")):
        if src in inputs:
            out[dst] = [decode(b) for b in inputs[src]]
    return out


def _cosine_udf(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """cos(decode(pref_emb_code), decode(author_emb_code)); null where either is missing or
    zero, NaN where either is of no known codec (see :func:`_decode_udf`). Self-contained:
    Feast serialises the function by value."""
    import math

    import numpy as np

    def decode(b: Any) -> Any:
        if b is None or isinstance(b, float):
            return None
        b = bytes(b)
        if len(b) >= 1 and b[0] == 1 and len(b) % 2 == 1:
            return np.frombuffer(b, dtype="<f2", offset=1).astype(np.float64)
        if len(b) >= 5 and b[0] == 2:
            s = float(np.frombuffer(b, dtype="<f4", count=1, offset=1)[0])
            return np.frombuffer(b, dtype=np.int8, offset=5).astype(np.float64) * s
        return "unknown"

    out: list[float | None] = []
    for p, a in zip(inputs["pref_emb_code"], inputs["author_emb_code"], strict=True):
        pv, av = decode(p), decode(a)
        if pv is None or av is None:
            out.append(None)
            continue
        if isinstance(pv, str) or isinstance(av, str) or pv.shape != av.shape:
            out.append(math.nan)
            continue
        denom = float(np.linalg.norm(pv) * np.linalg.norm(av))
        out.append(float(pv @ av) / denom if denom > 0 else None)
    return {"pref_author_cosine": out}


def _by_value(f: Any) -> Any:
    """A copy of ``f`` whose module is ``__main__``, so dill pickles it by value and a reader
    needs no import of this package (as :mod:`mspa_features.serving.definitions` does)."""
    import types

    g = types.FunctionType(f.__code__, {"__builtins__": __builtins__}, f.__name__, None, None)
    g.__module__ = "__main__"
    g.__doc__ = f.__doc__
    return g


def _source_of(f: Any) -> str:
    import inspect

    return inspect.getsource(f)


# --------------------------------------------------------------------------- manifest


@dataclass(kw_only=True)
class CompactManifest:
    """``compact.json`` of a compact set folder (written by the builder).

    Attributes:
        name: the compact set's name (``template_pca32_int8``).
        source_set: the full feature set it was reduced from; ``source_path`` its folder.
        method: ``pca`` or ``truncate``; ``dims`` the reduced width; ``dtype`` int8 | float16.
        fit_before: ISO instant; the reducer saw only rows with ``event_timestamp`` before it
            (the ablation's split).
        fit_rows: rows the reducer was fitted on, per table (``preferences``, ``author_profiles``).
        fit_max_event_timestamp: the latest ``event_timestamp`` among them.
        model_version: tag of the views: the rows' ``model_version`` values joined with
            ``+`` (each the reduction, its fit cut-off and a digest of the source version:
            ``pca16-int8@fit<1998-03-01:<12 hex>``, short enough for Redis's listpack hashes).
        rows: rows written per table.
        extra: anything else the builder records (explained variance, cosine preservation).
        source_model_versions: the lineage: each row ``model_version`` -> the source set's
            version it was reduced from (empty in manifests written before it was recorded).
    """

    name: str
    source_set: str
    source_path: str
    method: str
    dims: int
    dtype: str
    fit_before: str
    fit_rows: dict[str, int]
    fit_max_event_timestamp: str | None
    model_version: str
    rows: dict[str, int]
    extra: dict[str, Any]
    source_model_versions: dict[str, str] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2, default=str), encoding="utf-8")
        return path


def read_compact_folder(folder: str | Path) -> CompactManifest:
    """The manifest of a compact set folder.

    Raises:
        FeatureRepoError: no ``compact.json`` there, or it is not a manifest.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FeatureRepoError(f"compact set folder {folder} has no {MANIFEST}")
    try:
        return CompactManifest(**json.loads(path.read_text(encoding="utf-8")))
    except (TypeError, json.JSONDecodeError) as e:
        raise FeatureRepoError(f"{path}: not a compact set manifest ({e})") from e


# --------------------------------------------------------------------------- definitions


def decoded_view_name(table: Literal["pref", "author"], cs: str) -> str:
    return f"{table}_emb_decoded__{cs}"


def build_compact_definitions(
    compact_sets: Mapping[str, str | Path],
    *,
    ttl: timedelta = timedelta(days=365),
    source_kind: Literal["file", "spark"] = "file",
) -> list[Any]:
    """The Feast objects of ``compact_sets`` (name -> folder with ``compact.json``).

    Returns:
        Entities, then per set two sources, two feature views, three on-demand views and the
        four services of a full set (see the module table).

    Raises:
        FeatureRepoError: a folder has no manifest.
    """
    from feast import FeatureView, Field
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.types import Bytes, Float64, Int64, String

    from mspa_features.serving.definitions import (
        COSINE_FEATURE,
        _source,
        author_view_name,
        cosine_view_name,
        entities,
        feature_services,
        pref_view_name,
    )

    user, author = entities()
    objects: list[Any] = [user, author]
    for cs, folder in compact_sets.items():
        folder = Path(folder).resolve()
        m = read_compact_folder(folder)
        tags = {
            "model_version": m.model_version,
            "leaked": "false",
            "feature_set": cs,
            "compact_of": m.source_set,
            "compact": f"{m.method}{m.dims}_{m.dtype}",
            # the full lineage: the row versions only carry a digest of their source's
            **(
                {"source_model_version": "+".join(sorted(set(m.source_model_versions.values())))}
                if m.source_model_versions
                else {}
            ),
        }
        code_doc = f"{m.method} {m.dims}-d {m.dtype} code of the {m.source_set} embedding"
        pref_source = _source(
            f"preferences__{cs}", folder / "preferences", source_kind, f"compact preferences ({cs})"
        )
        author_source = _source(
            f"author_profiles__{cs}",
            folder / "author_profiles",
            source_kind,
            f"compact author profiles ({cs})",
        )
        pref_view = FeatureView(
            name=pref_view_name(cs),
            entities=[user],
            ttl=ttl,
            schema=[
                Field(name=PREF_CODE, dtype=Bytes, description=code_doc),
                Field(name="history_count", dtype=Int64, description="positives before as-of"),
                Field(name="pref_status", dtype=String, description="ok | repaired | failed"),
                Field(name="pref_decoding", dtype=String, description="constrained | free | none"),
                Field(name="model_version", dtype=String),
            ],
            source=pref_source,
            online=True,
            tags=tags,
            description=f"compact user preference snapshot ({cs}, of {m.source_set})",
        )
        author_view = FeatureView(
            name=author_view_name(cs),
            entities=[author],
            ttl=ttl,
            schema=[
                Field(name=AUTHOR_CODE, dtype=Bytes, description=code_doc),
                Field(name="author_status", dtype=String, description="ok | repaired | failed"),
                Field(
                    name="author_decoding", dtype=String, description="constrained | free | none"
                ),
                Field(name="model_version", dtype=String),
            ],
            source=author_source,
            online=True,
            tags=tags,
            description=f"compact author profile ({cs}, of {m.source_set})",
        )

        pref_dec = _decoder("pref", pref_view, PREF_CODE, cs, m, tags)
        author_dec = _decoder("author", author_view, AUTHOR_CODE, cs, m, tags)
        cosine = OnDemandFeatureView(
            name=cosine_view_name(cs),
            sources=[pref_view[[PREF_CODE]], author_view[[AUTHOR_CODE]]],
            schema=[Field(name=COSINE_FEATURE, dtype=Float64)],
            udf=_by_value(_cosine_udf),
            udf_string=_COSINE_SOURCE,
            mode="python",
            tags=tags,
            description=f"cosine of the decoded codes ({cs})",
        )
        services = feature_services(
            cs,
            pref=[pref_view[list(PREF_EXTRA)], pref_dec],
            author=[author_view[list(AUTHOR_EXTRA)], author_dec],
            cosine=cosine,
            tags=tags,
            of="compact set",
        )
        objects += [
            pref_source,
            author_source,
            pref_view,
            author_view,
            pref_dec,
            author_dec,
            cosine,
            *services,
        ]
    return objects


def _decoder(
    table: Literal["pref", "author"],
    view: Any,
    code: str,
    cs: str,
    m: CompactManifest,
    tags: dict[str, str],
) -> Any:
    """The on-demand view serving ``<table>_emb`` decoded from ``view``'s ``code``."""
    from feast import Field
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.types import Array, Float32

    return OnDemandFeatureView(
        name=decoded_view_name(table, cs),
        sources=[view[[code]]],
        schema=[
            Field(
                name=f"{table}_emb",
                dtype=Array(Float32),
                # No description: Feast's registry drops it from on-demand outputs, and a
                # service projection holding one then no longer matches the view.
                vector_length=m.dims,
            )
        ],
        udf=_by_value(_decode_udf),
        udf_string=_DECODE_SOURCE,
        mode="python",
        tags=tags,
        description=f"{table}_emb decoded from its {m.dtype} code ({cs})",
    )


_DECODE_SOURCE = _source_of(_decode_udf)
_COSINE_SOURCE = _source_of(_cosine_udf)


# --------------------------------------------------------------------------- online cost


@dataclass(frozen=True, kw_only=True)
class OnlineBytes:
    """Bytes the online store holds per entity key of one view (means over the view's
    entities), measured in the store itself.

    ``embedding`` is the stored value of the embedding feature alone (the serialized
    ``ValueProto``, the same bytes in SQLite and Redis); ``row`` the view's raw bytes per
    entity: in SQLite every feature of the view with the entity key and feature name columns,
    as the table holds them; in Redis the entity key plus the view's hash fields (4-byte
    feature field names, the ``_ts:<view>`` field, their values), no Redis overhead.

    Redis only (None in SQLite):

    * ``store``: ``MEMORY USAGE key SAMPLES 0`` of a hash holding only this view's fields under
      a key of the entity key's length, i.e. what Redis allocates per entity to serve this view
      alone: the key, its keyspace entry, the hash object and its encoding
      (``store_encoding``: listpack while every value is at most ``hash-max-listpack-value``
      bytes, 64 by default, else hashtable, measured once its incremental rehash is done),
      allocator size classes included; not the keyspace's bucket array (8-16 B a key), an
      expiry or replicas. Measured on a probe key written as Feast writes it, read, measured
      and deleted inside one MULTI/EXEC per batch (so the server must accept writes).
    * ``shared_key``: ``MEMORY USAGE`` of the entity keys as the run holds them: Feast keeps
      one hash per entity with the fields of every view of that entity (every feature set and
      compact set registered in the store), so this is the whole entity, not this view.
    """

    online_store: str
    view: str
    feature: str
    entities: int
    embedding: float
    embedding_max: int
    row: float
    store: float | None = None
    store_encoding: str | None = None
    shared_key: float | None = None


def online_bytes(store: FeatureStore, view: str, feature: str) -> OnlineBytes:
    """Measure :class:`OnlineBytes` of ``view`` in the store's online store (SQLite or Redis).

    Raises:
        InvalidValueError: another online store kind, or a Redis cluster / sentinel.
        FeatureRepoError: the view has no entity (or no ``feature``) in the online store.
    """
    kind = str(store.config.online_store.type)
    if kind == "sqlite":
        return _sqlite_bytes(store, view, feature)
    if kind == "redis":
        return _redis_bytes(store, view, feature)
    raise InvalidValueError("online store type", kind, "sqlite or redis (bytes are read there)")


def online_entity_ids(store: FeatureStore, view: str) -> list[str]:
    """The ids of the entities ``view`` holds online (string join key values), sorted.

    Raises:
        InvalidValueError: an online store other than SQLite or Redis.
        FeatureRepoError: SQLite: the view's table is missing.
    """
    from feast.infra.key_encoding_utils import deserialize_entity_key

    kind = str(store.config.online_store.type)
    version = store.config.entity_key_serialization_version
    if kind == "sqlite":
        import sqlite3

        path, table = _sqlite_table(store, view)
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            keys = [r[0] for r in conn.execute(f'SELECT DISTINCT entity_key FROM "{table}"')]
    elif kind == "redis":
        project = store.config.project.encode("utf-8")
        keys = [k[: -len(project)] for k, _ in _redis_view_keys(store, view)]
    else:
        raise InvalidValueError("online store type", kind, "sqlite or redis")
    out = []
    for k in keys:
        ek = deserialize_entity_key(bytes(k), entity_key_serialization_version=version)
        value = ek.entity_values[0]  # the views here have one entity (user_id or author_id)
        out.append(str(getattr(value, value.WhichOneof("val"))))
    return sorted(out)


def _sqlite_table(store: FeatureStore, view: str) -> tuple[Path, str]:
    path = Path(store.config.online_store.path)
    if not path.is_absolute():
        path = Path(store.config.repo_path or ".") / path
    return path, f"{store.config.project}_{view}"


def _sqlite_bytes(store: FeatureStore, view: str, feature: str) -> OnlineBytes:
    import sqlite3

    path, table = _sqlite_table(store, view)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if table not in names:
            raise FeatureRepoError(f"online table {table!r} not found in {path}")
        q = f'"{table}"'
        emb = conn.execute(
            f"SELECT COUNT(*), AVG(LENGTH(value)), MAX(LENGTH(value)) FROM {q} "
            "WHERE feature_name = ?",
            (feature,),
        ).fetchone()
        row = conn.execute(
            "SELECT AVG(b) FROM (SELECT SUM(LENGTH(entity_key) + LENGTH(feature_name) + "
            "IFNULL(LENGTH(value), 0) + IFNULL(LENGTH(value_text), 0) + "
            f"IFNULL(LENGTH(vector_value), 0)) AS b FROM {q} GROUP BY entity_key)"
        ).fetchone()
    if not emb or not emb[0]:
        raise FeatureRepoError(f"online table {table!r} holds no {feature!r} value")
    return OnlineBytes(
        online_store="sqlite",
        view=view,
        feature=feature,
        entities=int(emb[0]),
        embedding=float(emb[1]),
        embedding_max=int(emb[2]),
        row=float(row[0] or 0.0),
    )


#: entity keys per Redis round trip (HMGET pipeline, then one MULTI/EXEC of probes)
_REDIS_BATCH = 500
_GLOB_SPECIAL = frozenset(b"*?[]\\")


def _glob_escape(raw: bytes) -> bytes:
    """``raw`` as a literal in a Redis ``SCAN MATCH`` pattern."""
    return b"".join(b"\\" + bytes([c]) if c in _GLOB_SPECIAL else bytes([c]) for c in raw)


def redis_view_fields(store: FeatureStore, view: str) -> tuple[list[str], list[bytes]]:
    """The features of ``view`` and the Redis hash fields Feast writes for it: one
    ``mmh3("<view>:<feature>")`` (4 bytes) per feature, in the same order, then
    ``_ts:<view>`` (the row's event time)."""
    from feast.infra.online_stores.helpers import _mmh3
    from feast.infra.online_stores.redis import _versioned_fv_name

    fv = store.get_feature_view(view)
    name = _versioned_fv_name(fv, store.config)
    features = [f.name for f in fv.features]
    return features, [_mmh3(f"{name}:{f}") for f in features] + [f"_ts:{name}".encode()]


def _redis_view_keys(
    store: FeatureStore, view: str, fields: Sequence[bytes] | None = None
) -> list[tuple[bytes, list[bytes | None]]]:
    """Every Redis key of ``view``'s entity kind in this project whose hash holds the view
    (its ``_ts:<view>`` field), with the values of ``fields`` (default: the view's own)."""
    from feast.infra.key_encoding_utils import serialize_entity_key_prefix

    from mspa_features.serving.redis_store import redis_client, redis_errors

    fv = store.get_feature_view(view)
    own = redis_view_fields(store, view)[1]
    fields, ts_field = (own if fields is None else fields), own[-1]
    project = store.config.project.encode("utf-8")
    prefix = serialize_entity_key_prefix(
        list(fv.join_keys),
        entity_key_serialization_version=store.config.entity_key_serialization_version,
    )
    pattern = _glob_escape(prefix) + b"*" + _glob_escape(project)
    out: list[tuple[bytes, list[bytes | None]]] = []
    with redis_errors(store.config.online_store, writing=False):
        client = redis_client(store.config.online_store)
        try:
            keys = sorted(set(client.scan_iter(match=pattern, count=1000)))
            for i in range(0, len(keys), _REDIS_BATCH):
                batch = keys[i : i + _REDIS_BATCH]
                with client.pipeline(transaction=False) as pipe:
                    for k in batch:
                        pipe.hmget(k, [*fields, ts_field])
                    got = pipe.execute()
                out += [(k, v[:-1]) for k, v in zip(batch, got, strict=True) if v[-1] is not None]
        finally:
            client.close()
    return out


def _as_feast_writes(fields: Sequence[bytes], values: Sequence[bytes | None]) -> dict:
    """The view's fields of one entity in the order Feast's ``online_write_batch`` sets them
    (``_ts:<view>`` first, then the features), missing values left out."""
    pairs = [(f, x) for f, x in zip(fields, values, strict=True) if x is not None]
    return dict([pairs[-1], *pairs[:-1]])  # the last field, _ts:<view>, is always present here


def _redis_bytes(store: FeatureStore, view: str, feature: str) -> OnlineBytes:
    """:class:`OnlineBytes` from Redis: value and field lengths from the view's hash fields,
    ``store`` from a probe hash of those fields alone, ``shared_key`` from the entity keys."""
    from collections import Counter

    from mspa_features.serving.redis_store import redis_client, redis_errors

    features, fields = redis_view_fields(store, view)
    if feature not in features:
        raise FeatureRepoError(f"feature view {view!r} has no feature {feature!r}")
    at = features.index(feature)
    held = _redis_view_keys(store, view, fields)
    project = store.config.project.encode("utf-8")
    # Feast project names are letters, digits and underscores: a key ending in '~' of the
    # same length as a Feast key is never one.
    probe_tail = b"~" * len(project)
    emb = [len(x) for x in (v[at] for _, v in held) if x is not None]
    if not emb:
        raise FeatureRepoError(f"Redis holds no {feature!r} value of view {view!r}")
    row = [
        len(k) + sum(len(f) + len(x) for f, x in zip(fields, v, strict=True) if x is not None)
        for k, v in held
    ]
    alone: list[int] = []
    shared: list[int] = []
    encodings: Counter[str] = Counter()
    with redis_errors(store.config.online_store, writing=True):
        client = redis_client(store.config.online_store)
        try:
            for i in range(0, len(held), _REDIS_BATCH):
                batch = held[i : i + _REDIS_BATCH]
                probes = [k[: -len(project)] + probe_tail for k, _ in batch]
                if any(client.exists(*probes[j : j + 100]) for j in range(0, len(probes), 100)):
                    raise FeatureRepoError(
                        "a Redis key of the form <entity key>~~~ exists: not measuring over it"
                    )
                with client.pipeline(transaction=True) as pipe:  # one MULTI/EXEC
                    for (key, values), probe in zip(batch, probes, strict=True):
                        pipe.hset(probe, mapping=_as_feast_writes(fields, values))
                        # A read of every field, as serving does: a hash that outgrew its
                        # listpack finishes its incremental rehash (one step per lookup), so
                        # the size is the settled one, not a mid-rehash double table.
                        pipe.hmget(probe, list(fields))
                        pipe.execute_command("MEMORY", "USAGE", probe, "SAMPLES", "0")
                        pipe.object("encoding", probe)
                        pipe.delete(probe)
                        pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
                    got = pipe.execute()
                for j in range(len(batch)):
                    _, _, probe_bytes, encoding, _, key_bytes = got[6 * j : 6 * j + 6]
                    alone.append(int(probe_bytes))
                    shared.append(int(key_bytes))
                    enc = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
                    encodings[enc] += 1
        finally:
            client.close()
    return OnlineBytes(
        online_store="redis",
        view=view,
        feature=feature,
        entities=len(held),
        embedding=float(statistics.fmean(emb)),
        embedding_max=max(emb),
        row=float(statistics.fmean(row)),
        store=float(statistics.fmean(alone)),
        store_encoding="+".join(sorted(encodings)),
        shared_key=float(statistics.fmean(shared)),
    )


@dataclass(frozen=True, kw_only=True)
class ReadLatency:
    """Wall time of single-entity ``get_online_features`` calls, milliseconds."""

    features: list[str]
    calls: int
    p50_ms: float
    p95_ms: float
    mean_ms: float


def time_online_reads(
    store: FeatureStore,
    features: Sequence[str],
    entity_rows: Sequence[dict[str, str]],
    *,
    warmup: int = 5,
) -> ReadLatency:
    """Time one Feast ``get_online_features`` call per entity row (after ``warmup`` calls).

    Raises:
        InvalidValueError: no entity row to time.
    """
    if not entity_rows:
        raise InvalidValueError("entity_rows", 0, "at least one row to time")
    feats = list(features)
    for row in list(entity_rows)[:warmup]:
        store.get_online_features(features=feats, entity_rows=[dict(row)])
    ms: list[float] = []
    for row in entity_rows:
        t0 = time.perf_counter()
        store.get_online_features(features=feats, entity_rows=[dict(row)]).to_dict()
        ms.append((time.perf_counter() - t0) * 1000.0)
    ms_sorted = sorted(ms)
    return ReadLatency(
        features=feats,
        calls=len(ms),
        p50_ms=float(statistics.median(ms)),
        p95_ms=float(ms_sorted[min(len(ms) - 1, int(0.95 * len(ms)))]),
        mean_ms=float(statistics.fmean(ms)),
    )


def measure_sets(
    store: FeatureStore,
    feature_set: str,
    manifests: Sequence[CompactManifest],
    *,
    read_calls: int = 200,
) -> list[dict[str, Any]]:
    """Bytes per entity (:func:`online_bytes`, users and authors) and single-user read
    latency of the full set and each compact set, in ``store``'s online store.

    Returns:
        One dict per set, the full set first: ``name``, ``method`` (``full`` for it),
        ``dims``, ``dtype``, ``manifest`` (compact sets), ``user_bytes`` and ``author_bytes``
        (:class:`OnlineBytes`), ``read`` (:class:`ReadLatency` over the first ``read_calls``
        users by id, the compact embedding read through its decoding view).

    Raises:
        FeatureRepoError: a view holds no entity online.
    """
    from mspa_features.serving.definitions import author_view_name, pref_view_name

    users = online_entity_ids(store, pref_view_name(feature_set))[:read_calls]
    if not users:
        raise FeatureRepoError(f"the online store holds no user of {feature_set!r}")
    rows_u = [{"user_id": u} for u in users]
    full_ref = f"{pref_view_name(feature_set)}:pref_emb"
    got = store.get_online_features(features=[full_ref], entity_rows=rows_u[:1]).to_dict()
    sets: list[dict[str, Any]] = [
        {
            "name": feature_set,
            "method": "full",
            "dims": len(got["pref_emb"][0] or []),
            "dtype": "float32",
            "user_bytes": online_bytes(store, pref_view_name(feature_set), "pref_emb"),
            "author_bytes": online_bytes(store, author_view_name(feature_set), "author_emb"),
            "read": time_online_reads(store, [full_ref], rows_u),
        }
    ]
    for m in manifests:
        sets.append(
            {
                "name": m.name,
                "method": m.method,
                "dims": m.dims,
                "dtype": m.dtype,
                "manifest": m,
                "user_bytes": online_bytes(store, pref_view_name(m.name), PREF_CODE),
                "author_bytes": online_bytes(store, author_view_name(m.name), AUTHOR_CODE),
                "read": time_online_reads(
                    store, [f"{decoded_view_name('pref', m.name)}:pref_emb"], rows_u
                ),
            }
        )
    return sets


# --------------------------------------------------------------------------- apply


def apply_compact_sets(
    cfg: Any,
    compact_sets: Mapping[str, str | Path],
    *,
    materialize: bool = True,
    **target: Unpack[StoreTarget],
) -> list[Any]:
    """Register ``compact_sets`` (name -> folder) in the run's store beside its full sets,
    list them in the store's ``feature_sets.yaml`` (``compact_sets``) so the plain
    ``feast plan`` there keeps them, and materialize both views in full (a compact set is
    rebuilt whole, so its window is its whole span).

    Args:
        **target: the run's store (:class:`~mspa_features.serving.materialize.StoreTarget`;
            default: the run config's ``serving.online_store``).

    Returns:
        One :class:`~mspa_features.serving.materialize.MaterializationReport` per view.

    Raises:
        FeatureRepoError: a folder has no manifest, or a name cannot name Feast objects.
        OnlineStoreUnavailableError: Redis cannot be reached (nothing written) or went away.
        WorkspaceBusyError: another command held the run's store lock past the timeout.
    """
    from datetime import UTC, datetime

    from feast import FeatureStore

    from mspa_features.names import feature_set_name
    from mspa_features.serving import materialize as mat
    from mspa_features.serving.redis_store import redis_errors
    from mspa_features.serving.repo import FEATURE_SETS_FILE, FolderEntry, update_feature_sets

    sets = {n: Path(p).resolve() for n, p in compact_sets.items()}
    for n, p in sets.items():
        try:
            feature_set_name(n, "compact set")
        except ValueError as e:
            raise FeatureRepoError(str(e)) from None
        read_compact_folder(p)
    ttl = timedelta(days=cfg.features.ttl_days)
    mat.check_online_store(cfg, **target)  # Redis down: say so before anything is written
    with mat.store_lock(cfg, "compact"):
        rc = mat.store_config(cfg, **target)
        store = FeatureStore(config=rc)
        store_dir = mat.write_run_repo(cfg, **target)
        if not (store_dir / FEATURE_SETS_FILE).is_file():
            # A store registered before the file existed: list what it holds first, so the
            # plain Feast CLI there keeps the full sets too.
            mat._adopt_registered(store, store_dir, ttl)

        def add(fsf: Any) -> None:
            for n, p in sets.items():
                fsf.compact_sets[n] = FolderEntry(path=p)

        update_feature_sets(store_dir, add, ttl=ttl)
        with redis_errors(rc.online_store, writing=True):
            store.apply(build_compact_definitions(sets, ttl=ttl))
            mat.record_infra(store)
            if not materialize:
                return []
            state = Path(str(rc.registry.path)).parent / mat.MATERIALIZED_STATE
            return mat._materialize(
                store, sets, incremental=False, start=None, end=datetime.now(UTC), state_path=state
            )


__all__ = [
    "DTYPES",
    "MANIFEST",
    "CompactManifest",
    "OnlineBytes",
    "ReadLatency",
    "apply_compact_sets",
    "build_compact_definitions",
    "decoded_view_name",
    "dequantize_int8",
    "float16_error_bound",
    "int8_error_bound",
    "measure_sets",
    "online_bytes",
    "online_entity_ids",
    "pack",
    "quantize_int8",
    "read_compact_folder",
    "redis_view_fields",
    "time_online_reads",
    "unpack",
    "value_bytes",
]
