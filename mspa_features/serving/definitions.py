"""Feast definitions for the MSPA feature sets: entities, sources, views, on-demand cosine, services.

One *feature set* is one backfill output folder (``template``, ``llm``, ``aligned-<id>``, ...)
holding ``preferences/ds=*/part-*.parquet`` and ``author_profiles/ds=*/part-*.parquet`` (the
``preferences`` and ``author_profiles`` contracts). Every object a feature set contributes is
named ``<object>__<feature_set>`` so several sets (base vs aligned model, leaked vs clean) live
side by side in one registry and a ranker reads one by service name. Each feature set gets one
feature service per *service kind* (:data:`SERVICE_KINDS`), named ``<kind>__<fs>``
(:func:`service_name`); an ablation *variant* (``ranker_hooks.ablation.variants``) is something
else: a ranker trained on one of these services, with its injection settings.

=============================  ===============================================================
``user_preferences__{fs}``     pref_emb, pref_text, history_count, pref_status, pref_decoding,
                               model_version (key user_id)
``author_profiles__{fs}``      author_emb, author_text, author_status, author_decoding,
                               model_version (key author_id)
``user_author_cosine__{fs}``   on-demand: pref_author_cosine = cos(pref_emb, author_emb)
``baseline__{fs}``             no feature at all: entity ids only (see below)
``with_preference__{fs}``      pref_emb, pref_text, history_count, pref_status, pref_decoding
``with_author__{fs}``          author_emb, author_text, author_status, author_decoding
``all__{fs}``                  pref + author + pref_author_cosine
=============================  ===============================================================

Status columns: ``pref_status``/``author_status`` say how the generated text came out (``ok``,
``repaired``, ``failed``) and ``*_decoding`` how it was decoded (``constrained``, ``free``,
``none`` for the template). Every service that serves a text or its embedding serves its status
with it, so a ranker (``ranker_hooks.inject``, ``InjectionSpec.on_failed``) can drop, mask or
flag a failed row instead of serving it as if it were good. A row written before the columns
existed reads as null (unknown), which the ranker side treats as not failed.

Services leave ``model_version`` out: both views carry a feature of that name, and Feast refuses
one request holding two features with the same short name; it stays readable per view
(``user_preferences__{fs}:model_version``) and is a tag on every view and service.

``baseline`` is empty on purpose: the ranker without MSPA features. Feast 0.67 accepts an empty
service, online (the response holds the entity ids only) and offline (the entity frame comes back
unchanged), so one read path serves every variant of an ablation.

Deprecated: ``VARIANTS`` is :data:`SERVICE_KINDS` (a ``DeprecationWarning`` when read).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from mspa_features.errors import InvalidValueError, UnknownNameError

USER_ENTITY = "user"
AUTHOR_ENTITY = "author"
COSINE_FEATURE = "pref_author_cosine"
#: The feature services every feature set gets, named ``<kind>__<fs>`` (:func:`service_name`):
#: no feature (the ranker without MSPA), the preference, the author, and both plus the cosine.
SERVICE_KINDS = ("baseline", "with_preference", "with_author", "all")
#: What the services serve of each view (statuses always beside the texts they describe).
PREF_SERVED = ("pref_emb", "pref_text", "history_count", "pref_status", "pref_decoding")
AUTHOR_SERVED = ("author_emb", "author_text", "author_status", "author_decoding")
#: status column -> the features whose values it vouches for.
STATUS_COLUMNS: dict[str, tuple[str, ...]] = {
    "pref_status": ("pref_emb", "pref_text", "pref_author_cosine"),
    "author_status": ("author_emb", "author_text", "pref_author_cosine"),
}
UNKNOWN_MODEL_VERSION = "unknown"


def entities() -> tuple[Any, Any]:
    """The two Feast entities every view joins on: ``user`` (key ``user_id``) and ``author``
    (key ``author_id``), both string ids as in the contracts.

    Declared once here for the MSPA, leak and aligned views (Feast docs, "Entity": an entity is
    the collection of join keys a feature view is keyed by; re-applying equal entities changes
    nothing in the registry).
    """
    from feast import Entity, ValueType

    user = Entity(
        name=USER_ENTITY,
        join_keys=["user_id"],
        value_type=ValueType.STRING,
        description="a viewer/tipper (contract: users.user_id)",
    )
    author = Entity(
        name=AUTHOR_ENTITY,
        join_keys=["author_id"],
        value_type=ValueType.STRING,
        description="a live-streamer, or a movie for MovieLens (contract: authors.author_id)",
    )
    return user, author


def pref_view_name(fs: str) -> str:
    return f"user_preferences__{fs}"


def author_view_name(fs: str) -> str:
    return f"author_profiles__{fs}"


def cosine_view_name(fs: str) -> str:
    return f"user_author_cosine__{fs}"


def service_name(kind: str, fs: str) -> str:
    """The name of feature set ``fs``'s feature service of ``kind`` (one of :data:`SERVICE_KINDS`).

    Raises:
        UnknownNameError: ``kind`` is not one of :data:`SERVICE_KINDS`.
    """
    if kind not in SERVICE_KINDS:
        raise UnknownNameError("feature service kind", kind, SERVICE_KINDS)
    return f"{kind}__{fs}"


def feature_services(
    fs: str,
    *,
    pref: Sequence[Any],
    author: Sequence[Any],
    cosine: Any,
    tags: Mapping[str, str],
    of: str = "feature set",
) -> list[Any]:
    """The :data:`SERVICE_KINDS` feature services of ``fs``: what each kind serves, in one place.

    Args:
        fs: the feature set (or compact set) name, the services' suffix.
        pref: the projections (or on-demand views) serving the preference features.
        author: the same for the author features.
        cosine: the on-demand view serving ``pref_author_cosine`` (in ``all`` only).
        tags: tags every service carries; ``service_kind`` is added.
        of: what ``fs`` is, for the descriptions.
    """
    from feast import FeatureService

    members: dict[str, list[Any]] = {
        "baseline": [],
        "with_preference": [*pref],
        "with_author": [*author],
        "all": [*pref, *author, cosine],
    }
    return [
        FeatureService(
            name=service_name(kind, fs),
            features=members[kind],
            tags={**tags, "service_kind": kind},
            description=f"feature service '{kind}' of {of} '{fs}'",
        )
        for kind in SERVICE_KINDS
    ]


def __getattr__(name: str) -> object:
    # Deprecated names, kept importable: "variant" is the ablation's word (a ranker trained on
    # one service), so the serving side names its services by kind.
    if name == "VARIANTS":
        warnings.warn(
            f"{__name__}.VARIANTS is deprecated: use SERVICE_KINDS (the feature service kinds)",
            DeprecationWarning,
            stacklevel=2,
        )
        return SERVICE_KINDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def infer_model_version(table_dir: Path) -> str:
    """The ``model_version`` values found in a contract folder, joined with ``+`` when several.

    Reads only that column (hive-partitioned parquet); a missing or empty folder gives
    ``"unknown"`` so definitions can be applied before the first backfill lands.
    """
    import pyarrow.dataset as ds

    table_dir = Path(table_dir)
    if not table_dir.is_dir() or not any(table_dir.rglob("*.parquet")):
        return UNKNOWN_MODEL_VERSION
    dataset = ds.dataset(table_dir, format="parquet", partitioning="hive")
    col = dataset.to_table(columns=["model_version"]).column("model_version")
    values = sorted({v for v in col.unique().to_pylist() if v})
    return "+".join(values) or UNKNOWN_MODEL_VERSION


def _cosine_udf(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """cos(pref_emb, author_emb) per row; null where either vector is missing or zero.

    Python mode: ``inputs`` maps feature names to one list per column (online reads give
    lists of floats, historical reads numpy arrays, missing values None or NaN).
    Self-contained (imports inside) because Feast serialises the function by value.
    """
    import math

    import numpy as np

    out: list[float | None] = []
    for p, a in zip(inputs["pref_emb"], inputs["author_emb"], strict=True):
        if p is None or a is None or isinstance(p, float) or isinstance(a, float):
            out.append(None)
            continue
        pv = np.asarray(p, dtype=np.float64)  # (d,)
        av = np.asarray(a, dtype=np.float64)  # (d,)
        if pv.ndim != 1 or pv.shape != av.shape or pv.size == 0:
            out.append(None)
            continue
        denom = float(np.linalg.norm(pv) * np.linalg.norm(av))
        value = float(pv @ av) / denom if denom > 0 else math.nan
        out.append(None if math.isnan(value) else value)
    return {"pref_author_cosine": out}


def _source(name: str, path: Path, kind: Literal["file", "spark"], description: str) -> Any:
    from feast import FileSource
    from feast.data_format import ParquetFormat

    if kind == "spark":
        from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import (
            SparkSource,
        )

        return SparkSource(
            name=name,
            path=str(path),
            file_format="parquet",
            timestamp_field="event_timestamp",
            created_timestamp_column="created_timestamp",
            description=description,
        )
    if kind != "file":
        raise UnknownNameError("source kind", kind, ["file", "spark"])
    # A directory of hive-partitioned parquet: the format must be explicit (no .parquet
    # suffix to infer it from); duckdb reads every part file below it.
    return FileSource(
        name=name,
        path=str(path),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description=description,
    )


def build_definitions(
    feature_sets: Mapping[str, str | Path],
    *,
    emb_dim: int = 384,
    ttl: timedelta = timedelta(days=365),
    leaked: Mapping[str, bool] | None = None,
    model_versions: Mapping[str, str] | None = None,
    source_kind: Literal["file", "spark"] = "file",
) -> list[Any]:
    """The Feast objects for ``feature_sets`` (name -> backfill folder), ready for ``apply``.

    Args:
        feature_sets: feature set name -> folder holding ``preferences/`` and
            ``author_profiles/`` (hive-partitioned parquet). The folders need not exist yet.
        emb_dim: embedding length; sets ``vector_length`` on the indexed author embedding
            (vector stores such as Milvus size their index from it).
        ttl: how far back a point-in-time join looks for a snapshot; older ones read as null.
        leaked: feature set -> whether it was built from leaked (future) data (LIS); tagged on
            every object as ``leaked: "true"/"false"``. Default False.
        model_versions: feature set -> model version tag. Default: the ``model_version``
            values found in the data (``"unknown"`` if none yet).
        source_kind: ``file`` (FileSource, for the duckdb offline store) or ``spark``
            (SparkSource, for the Spark offline store) over the same parquet.

    Returns:
        Entities ``user`` and ``author`` followed by, per feature set, two sources, two
        feature views, one on-demand feature view and four feature services.

    Raises:
        ValueError: a feature set name is empty or holds ``__`` (the name separator), or
            ``source_kind`` is unknown.
    """
    from feast import FeatureView, Field
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.types import Array, Float32, Float64, Int64, String

    leaked = dict(leaked or {})
    model_versions = dict(model_versions or {})
    unknown = set(leaked) - set(feature_sets)
    if unknown:
        raise UnknownNameError(
            "feature set", min(unknown), sorted(feature_sets), hint="named in 'leaked'"
        )

    user, author = entities()
    objects: list[Any] = [user, author]

    for fs, root in feature_sets.items():
        if not fs or "__" in fs:
            raise InvalidValueError(
                "feature set name", fs, "non-empty and without '__' (the name separator)"
            )
        root = Path(root).resolve()
        pref_dir, author_dir = root / "preferences", root / "author_profiles"
        if fs in model_versions:
            pref_mv = author_mv = model_versions[fs]
        else:
            pref_mv, author_mv = infer_model_version(pref_dir), infer_model_version(author_dir)
        is_leaked = "true" if leaked.get(fs, False) else "false"

        def tags(model_version: str, fs: str = fs, is_leaked: str = is_leaked) -> dict[str, str]:
            return {"model_version": model_version, "leaked": is_leaked, "feature_set": fs}

        pref_source = _source(
            f"preferences__{fs}", pref_dir, source_kind, f"user preference snapshots ({fs})"
        )
        author_source = _source(
            f"author_profiles__{fs}", author_dir, source_kind, f"author profiles ({fs})"
        )
        pref_view = FeatureView(
            name=pref_view_name(fs),
            entities=[user],
            ttl=ttl,
            schema=[
                # Indexed like author_emb: Milvus types every float array as a vector column and
                # only writes it as one when vector_index is set (otherwise it stringifies it).
                Field(
                    name="pref_emb",
                    dtype=Array(Float32),
                    vector_index=True,
                    vector_length=emb_dim,
                    vector_search_metric="COSINE",
                    description="P_emb, L2-normalised",
                ),
                Field(name="pref_text", dtype=String, description="P_text from the composer"),
                Field(name="history_count", dtype=Int64, description="positives before as-of"),
                Field(name="pref_status", dtype=String, description="ok | repaired | failed"),
                Field(name="pref_decoding", dtype=String, description="constrained | free | none"),
                Field(name="model_version", dtype=String),
            ],
            source=pref_source,
            online=True,
            tags=tags(pref_mv),
            description=f"MSPA user preference snapshot, valid from event_timestamp ({fs})",
        )
        author_view = FeatureView(
            name=author_view_name(fs),
            entities=[author],
            ttl=ttl,
            schema=[
                # Indexed for U2A/A2A nearest-neighbour search on vector stores (Milvus);
                # ignored by stores without vector search.
                Field(
                    name="author_emb",
                    dtype=Array(Float32),
                    vector_index=True,
                    vector_length=emb_dim,
                    vector_search_metric="COSINE",
                    description="author description embedding, L2-normalised",
                ),
                Field(name="author_text", dtype=String, description="generated description"),
                Field(name="author_status", dtype=String, description="ok | repaired | failed"),
                Field(
                    name="author_decoding", dtype=String, description="constrained | free | none"
                ),
                Field(name="model_version", dtype=String),
            ],
            source=author_source,
            online=True,
            tags=tags(author_mv),
            description=f"MSPA author profile, valid from event_timestamp ({fs})",
        )
        both_mv = pref_mv if pref_mv == author_mv else f"{pref_mv}|{author_mv}"
        cosine = OnDemandFeatureView(
            name=cosine_view_name(fs),
            sources=[pref_view[["pref_emb"]], author_view[["author_emb"]]],
            schema=[Field(name=COSINE_FEATURE, dtype=Float64)],
            udf=_fresh_udf(),
            udf_string=_COSINE_UDF_SOURCE,
            mode="python",
            tags=tags(both_mv),
            description="cosine(pref_emb, author_emb): the U2A match score as a ranker feature",
        )
        services = feature_services(
            fs,
            pref=[pref_view[list(PREF_SERVED)]],
            author=[author_view[list(AUTHOR_SERVED)]],
            cosine=cosine,
            tags=tags(both_mv),
        )
        objects += [pref_source, author_source, pref_view, author_view, cosine, *services]
    return objects


def _fresh_udf() -> Any:
    """A copy of the cosine UDF whose module is ``__main__``.

    dill pickles ``__main__`` functions by value, so the registry holds the function itself
    and a reader (feature server, ranker job) needs no import of this package to run it; a
    copy keeps the module-level function importable under its real module.
    """
    import types

    f = types.FunctionType(
        _cosine_udf.__code__, {"__builtins__": __builtins__}, "_cosine_udf", None, None
    )
    f.__module__ = "__main__"
    f.__doc__ = _cosine_udf.__doc__
    return f


def _udf_source() -> str:
    import inspect

    return inspect.getsource(_cosine_udf)


_COSINE_UDF_SOURCE = _udf_source()
