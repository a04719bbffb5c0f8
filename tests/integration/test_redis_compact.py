"""Compact sets served from Redis: the bytes per entity ``mspa compact`` reports are measured
in Redis itself and equal what an independent computation from raw Redis commands gives
(issue 16: "the bytes-per-entity figures are measured from the online store").

A real ``redis-server`` on 127.0.0.1 (``test_redis_online.RedisServer``: a free port, a
password). The run (db 0) holds ``test_feast_repo``'s hand-made ``template`` set (3 users x 3
snapshots, 3 authors, 384-d) and four compact sets of it: PCA to 4 dims and truncation to 32,
each int8 and float16, so both Redis hash encodings occur (a float16 32-d value is 67 bytes,
past the 64 bytes a listpack value may hold by default).

Independent of :func:`mspa_features.serving.compact.online_bytes`:

* value bytes: the codec's payload (``1 + 2d`` float16, ``5 + d`` int8) in a ``ValueProto``;
* the view's field bytes: Feast's key for each user (``_redis_key``), its 4-byte ``mmh3``
  field names and ``_ts:<view>``, and the ``ValueProto`` / ``Timestamp`` sizes of the compact
  set's latest parquet row per user;
* store bytes of a set alone: Feast materializes that set alone into another database of the
  same server; ``MEMORY USAGE`` of those keys (after one read of every field, as a server
  does) must be what the probe measured, and the encoding the one Redis's
  ``hash-max-listpack-value`` rule gives;
* shared key bytes: ``MEMORY USAGE`` of the run's user keys right after the measurement.
"""

from __future__ import annotations

import statistics
from datetime import UTC
from pathlib import Path

import pandas as pd
import pytest
from test_feast_repo import AUTHORS, REPO, SNAPS, T_END, USERS, write_feature_set
from test_redis_online import PASSWORD, PASSWORD_ENV, RedisServer

from mspa_features.config import DataConfig, RedisConfig, RunConfig, ServingConfig, Workspace

pytestmark = pytest.mark.integration

SPLIT = SNAPS[2]  # the reducer sees the first two snapshots and the authors
#: (method, dims): PCA within the 9 pre-split rows, truncation wide enough for a hashtable
SIZES = (("pca", 4), ("truncate", 32))
#: the sets also materialized alone (another database each): one listpack, one hashtable, full
ALONE = ("template_pca4_int8", "template_trunc32_float16", "template")


def _cfg(root: Path, port: int, db: int, name: str = "toy") -> RunConfig:
    return RunConfig(
        name=name,
        workspace=root / "ws",
        data=DataConfig(source="movielens"),
        serving=ServingConfig(
            online_store="redis",
            redis=RedisConfig(host="127.0.0.1", port=port, db=db, password_env=PASSWORD_ENV),
        ),
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from mspa_features.evaluation.compact import build_compact_sets, compact_root
    from mspa_features.serving.compact import apply_compact_sets
    from mspa_features.serving.materialize import apply_and_materialize

    root = tmp_path_factory.mktemp("redis_compact")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(PASSWORD_ENV, PASSWORD)
        server = RedisServer(root / "redis").start()
        try:
            cfg = _cfg(root, server.port, db=0)
            write_feature_set(Workspace(cfg.workspace).features(cfg.name) / "template", "template")
            apply_and_materialize(cfg, ["template"], repo_path=REPO, end=T_END)
            manifests = []
            for method, dims in SIZES:
                manifests += build_compact_sets(
                    cfg,
                    "template",
                    fit_before=SPLIT,
                    dims=[dims],
                    dtypes=["int8", "float16"],
                    methods=[method],
                )
            folders = {m.name: compact_root(cfg) / m.name for m in manifests}
            apply_compact_sets(cfg, folders, repo_path=REPO)
            # Each of ALONE in a database of its own, written by Feast as the run's was.
            alone_db = {}
            for db, name in enumerate(ALONE, start=1):
                other = _cfg(root, server.port, db=db, name=f"alone{db}")
                if name == "template":
                    write_feature_set(Workspace(other.workspace).features(other.name) / name, name)
                    apply_and_materialize(other, ["template"], repo_path=REPO, end=T_END)
                else:
                    apply_compact_sets(other, {name: folders[name]}, repo_path=REPO)
                alone_db[name] = db
            yield server, cfg, {m.name: m for m in manifests}, folders, alone_db
        finally:
            server.stop()


def _store(cfg: RunConfig):
    from mspa_features.serving.materialize import open_store

    return open_store(cfg, repo_path=REPO)


def _client(server: RedisServer, db: int):
    import redis

    return redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD, db=db)


def _user_key(project: str, user: str) -> bytes:
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    ek = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)])
    return _redis_key(project, ek, entity_key_serialization_version=3)


def _latest(folder: Path, table: str, key: str) -> pd.DataFrame:
    import pyarrow.dataset as ds

    df = ds.dataset(folder / table, format="parquet", partitioning="hive").to_table().to_pandas()
    return df.sort_values([key, "event_timestamp"]).groupby(key).tail(1).set_index(key)


def _expected_user_field_bytes(project: str, view: str, row: pd.Series, code: str) -> int:
    """Key + the view's hash fields (names and values) for one user, from the parquet row."""
    from feast.protos.feast.types.Value_pb2 import Value
    from google.protobuf.timestamp_pb2 import Timestamp

    values = [
        Value(bytes_val=bytes(row[code])),
        Value(int64_val=int(row["history_count"])),
        Value(string_val=str(row["pref_status"])),
        Value(string_val=str(row["pref_decoding"])),
        Value(string_val=str(row["model_version"])),
    ]
    ts = Timestamp()
    ts.FromDatetime(row["event_timestamp"].to_pydatetime().astimezone(UTC))
    fields = 4 * len(values) + sum(v.ByteSize() for v in values)  # mmh3 names are 4 bytes
    fields += len(f"_ts:{view}".encode()) + ts.ByteSize()
    return len(_user_key(project, str(row.name))) + fields


def _alone_memory(server: RedisServer, db: int, project: str, view: str, features: list[str]):
    """Mean MEMORY USAGE and the encodings of the user keys of a database holding one set,
    after one read of every field of the view (Feast's field names, computed here)."""
    from feast.infra.online_stores.helpers import _mmh3

    fields = [_mmh3(f"{view}:{f}") for f in features] + [f"_ts:{view}".encode()]
    with _client(server, db) as c:
        keys = [_user_key(project, u) for u in USERS]
        assert c.exists(*keys) == len(USERS)
        for k in keys:
            assert all(v is not None for v in c.hmget(k, fields))
        usage = [int(c.memory_usage(k, samples=0)) for k in keys]
        encodings = {c.object("encoding", k) for k in keys}
    return statistics.fmean(usage), {e.decode() if isinstance(e, bytes) else e for e in encodings}


def test_redis_bytes_per_entity_equal_the_raw_redis_computation(served) -> None:
    from feast.protos.feast.types.Value_pb2 import FloatList
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from mspa_features.serving.compact import PREF_CODE, online_bytes, value_bytes
    from mspa_features.serving.definitions import author_view_name, pref_view_name

    server, cfg, manifests, folders, alone_db = served
    store = _store(cfg)
    project = store.config.project
    with _client(server, 0) as c:
        keys_before = c.dbsize()
        listpack_max = int(c.config_get("hash-max-listpack-value")["hash-max-listpack-value"])
    assert keys_before == len(USERS) + len(AUTHORS)  # one hash per entity, all sets inside
    encodings_seen = set()

    for name, m in manifests.items():
        view = pref_view_name(name)
        got = online_bytes(store, view, PREF_CODE)
        # The run's user keys, measured right after (nothing read them in between).
        with _client(server, 0) as c:
            shared = statistics.fmean(
                int(c.memory_usage(_user_key(project, u), samples=0)) for u in USERS
            )
        payload = value_bytes(m.dims, m.dtype)  # 9 / 9 / 37 / 65
        assert got.online_store == "redis" and got.entities == len(USERS)
        assert got.embedding == got.embedding_max == ValueProto(bytes_val=b"x" * payload).ByteSize()
        assert got.embedding == payload + 2  # ValueProto: field tag + one length byte

        latest = _latest(folders[name], "preferences", "user_id")
        assert sorted(latest.index) == USERS and (latest["event_timestamp"] == SNAPS[2]).all()
        want_row = statistics.fmean(
            _expected_user_field_bytes(project, view, latest.loc[u], PREF_CODE) for u in USERS
        )
        assert got.row == want_row
        assert got.shared_key == shared

        # The view alone: listpack while every value fits hash-max-listpack-value.
        values_max = max(
            payload + 2,
            *(
                ValueProto(string_val=str(v)).ByteSize()
                for v in latest["model_version"].tolist() + latest["pref_status"].tolist()
            ),
        )
        want_encoding = "listpack" if values_max <= listpack_max else "hashtable"
        assert got.store_encoding == want_encoding
        encodings_seen.add(got.store_encoding)
        if name in alone_db:
            features = [f.name for f in store.get_feature_view(view).features]
            usage, encodings = _alone_memory(server, alone_db[name], project, view, features)
            assert encodings == {want_encoding}
            assert got.store == usage
        assert got.store > got.row  # key, hash object and allocator overhead on top

        authors = online_bytes(store, author_view_name(name), "author_emb_code")
        assert authors.entities == len(AUTHORS) and authors.embedding == payload + 2

    assert encodings_seen == {"listpack", "hashtable"}  # the test covers both

    full = online_bytes(store, pref_view_name("template"), "pref_emb")
    assert full.embedding == ValueProto(float_list_val=FloatList(val=[0.5] * 384)).ByteSize()
    assert full.store_encoding == "hashtable"
    view = pref_view_name("template")
    features = [f.name for f in store.get_feature_view(view).features]
    usage, _ = _alone_memory(server, alone_db["template"], project, view, features)
    assert full.store == usage

    with _client(server, 0) as c:  # the probes are gone, the run's keys untouched
        assert c.dbsize() == keys_before
        assert not [k for k in c.scan_iter() if k.endswith(b"~" * len(project))]


def test_measure_sets_reads_redis_and_matches_sqlite_value_bytes(served, tmp_path) -> None:
    """What ``mspa compact`` measures (:func:`measure_sets`) on the Redis store, beside the same
    sets registered in SQLite: the embedding values are the same bytes in both stores."""
    from mspa_features.serving.compact import apply_compact_sets, measure_sets, online_entity_ids
    from mspa_features.serving.definitions import author_view_name, pref_view_name
    from mspa_features.serving.materialize import apply_and_materialize

    _server, cfg, manifests, folders, _ = served
    store = _store(cfg)
    assert online_entity_ids(store, pref_view_name("template")) == USERS
    assert online_entity_ids(store, author_view_name("template")) == AUTHORS
    sets = measure_sets(store, "template", list(manifests.values()), read_calls=10)
    assert [s["name"] for s in sets] == ["template", *manifests]
    assert sets[0]["dims"] == 384 and sets[0]["method"] == "full"
    for s in sets:
        assert s["user_bytes"].online_store == "redis" and s["user_bytes"].store is not None
        assert s["read"].calls == len(USERS)  # every user the store holds, fewer than 10

    sqlite_cfg = cfg.model_copy(update={"serving": ServingConfig(), "workspace": tmp_path / "ws"})
    write_feature_set(Workspace(sqlite_cfg.workspace).features(cfg.name) / "template", "template")
    apply_and_materialize(sqlite_cfg, ["template"], repo_path=REPO, end=T_END)
    apply_compact_sets(sqlite_cfg, folders, repo_path=REPO)
    lite = measure_sets(_store(sqlite_cfg), "template", list(manifests.values()), read_calls=10)
    for r, s in zip(sets, lite, strict=True):
        assert s["user_bytes"].online_store == "sqlite" and s["user_bytes"].store is None
        assert r["name"] == s["name"]
        assert r["user_bytes"].embedding == s["user_bytes"].embedding
        assert r["author_bytes"].embedding == s["author_bytes"].embedding
