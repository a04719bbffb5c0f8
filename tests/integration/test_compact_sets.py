"""Compact serving embeddings on a small real backfill: what Feast serves decodes to the PCA
projection of the source rows within the quantisation bound, the reducer saw only rows before
the split, and the bytes per entity are what the online store holds.

The first two weeks of MovieLens-100K through the Spark backfill (template composer, real
encoder; as in ``test_drift_report.py``), split at 1997-09-27: compact sets ``template_pca16_int8``
and ``template_pca16_float16`` are built, registered beside ``template`` (duckdb offline,
SQLite online) and read back through Feast, online and point in time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
START, END = date(1997, 9, 20), date(1997, 10, 3)
SPLIT = datetime(1997, 9, 27, tzinfo=UTC)
K = 16


@pytest.fixture(scope="module")
def compacted(tmp_path_factory, template_backfill):
    from mspa_features.evaluation.compact import build_compact_sets, compact_root
    from mspa_features.serving.compact import apply_compact_sets
    from mspa_features.serving.materialize import apply_and_materialize

    root = tmp_path_factory.mktemp("compact")
    cfg, _bf, src = template_backfill(root, START, END, "mspa-compact-test")
    end = datetime.combine(END + timedelta(days=1), datetime.min.time(), UTC)
    apply_and_materialize(cfg, ["template"], repo_path=REPO / "feature_repo", end=end)
    manifests = build_compact_sets(
        cfg, "template", fit_before=SPLIT, dims=[K], dtypes=["int8", "float16"]
    )
    folders = {m.name: compact_root(cfg) / m.name for m in manifests}
    apply_compact_sets(cfg, folders, repo_path=REPO / "feature_repo")
    return cfg, src, {m.name: m for m in manifests}, folders


def _source(src: Path, table: str) -> pd.DataFrame:
    import pyarrow.dataset as ds

    return ds.dataset(src / table, format="parquet", partitioning="hive").to_table().to_pandas()


def _store(cfg):
    from mspa_features.serving.materialize import open_store

    return open_store(cfg, repo_path=REPO / "feature_repo")


def test_reducer_saw_only_rows_before_the_split(compacted) -> None:
    from mspa_features.evaluation.compact import Reducer

    _cfg, src, manifests, folders = compacted
    prefs, authors = _source(src, "preferences"), _source(src, "author_profiles")
    before = [
        np.stack(df.loc[df["event_timestamp"] < SPLIT, col].tolist())
        for df, col in ((prefs, "pref_emb"), (authors, "author_emb"))
    ]
    after = [(prefs["event_timestamp"] >= SPLIT).sum(), (authors["event_timestamp"] >= SPLIT).sum()]
    assert all(len(b) > 10 for b in before) and all(n > 0 for n in after)
    pooled = np.concatenate(before).astype(np.float64)
    everything = np.concatenate(
        [np.stack(prefs["pref_emb"].tolist()), np.stack(authors["author_emb"].tolist())]
    )
    for name, m in manifests.items():
        assert m.fit_rows == {"preferences": len(before[0]), "author_profiles": len(before[1])}
        assert pd.Timestamp(m.fit_max_event_timestamp) < SPLIT
        r = Reducer.load(folders[name] / "reducer.npz")
        assert r.n_fit == len(pooled)
        # PCA's mean is the mean of exactly the rows it saw: the pre-split ones, not all.
        assert np.allclose(r.mean, pooled.mean(0), atol=1e-9)
        assert not np.allclose(r.mean, everything.mean(0), atol=1e-6)
        # And its components are those of PCA on those rows.
        from sklearn.decomposition import PCA

        ref = PCA(n_components=K, svd_solver="full").fit(pooled)
        assert np.allclose(np.abs(r.components @ ref.components_.T), np.eye(K), atol=1e-6)


def test_served_rows_decode_to_the_projection_within_the_bound(compacted) -> None:
    from mspa_features.evaluation.compact import Reducer
    from mspa_features.serving.compact import decoded_view_name, float16_error_bound, unpack
    from mspa_features.serving.reads import historical_features

    cfg, src, manifests, folders = compacted
    store = _store(cfg)
    prefs = _source(src, "preferences").sort_values(["user_id", "event_timestamp"])
    for name, m in manifests.items():
        r = Reducer.load(folders[name] / "reducer.npz")
        # The written rows: same ids and timestamps as the source, codes within the bound.
        rows = _source(folders[name], "preferences").sort_values(["user_id", "event_timestamp"])
        assert (
            rows[["user_id", "event_timestamp", "created_timestamp"]]
            .reset_index(drop=True)
            .equals(
                prefs[["user_id", "event_timestamp", "created_timestamp"]].reset_index(drop=True)
            )
        )
        z = r.transform(np.stack(prefs["pref_emb"].tolist()))  # (n, K)
        dec = np.stack([unpack(b) for b in rows["pref_emb_code"]])
        assert dec.shape == z.shape == (len(prefs), K)
        if m.dtype == "int8":
            bound = (np.abs(z).max(1) / 127.0 / 2.0)[:, None] * (1 + 1e-5) + 1e-7
        else:
            bound = float16_error_bound(z) + 1e-7
        assert np.all(np.abs(dec - z) <= bound)

        # Point in time through Feast: each entity row sees its latest snapshot at or before it.
        probe = prefs.groupby("user_id").tail(1).head(12)
        entity_df = pd.DataFrame(
            {
                "user_id": probe["user_id"].tolist(),
                "author_id": "1",
                "event_timestamp": (probe["event_timestamp"] + timedelta(hours=1)).tolist(),
            }
        )
        got = historical_features(store, f"with_preference__{name}", entity_df)
        want = r.transform(np.stack(probe["pref_emb"].tolist()))
        served = np.stack([np.asarray(v, np.float64) for v in got["pref_emb"]])
        tol = 1.01 * np.abs(want).max(1, keepdims=True) / 254 + 1e-6
        assert np.all(np.abs(served - want) <= tol)

        # Online: the latest snapshot per user, decoded by the on-demand view.
        latest = prefs.groupby("user_id").tail(1).head(5)
        online = store.get_online_features(
            features=[f"{decoded_view_name('pref', name)}:pref_emb"],
            entity_rows=[{"user_id": u} for u in latest["user_id"]],
        ).to_dict()
        want = r.transform(np.stack(latest["pref_emb"].tolist()))
        served = np.stack([np.asarray(v, np.float64) for v in online["pref_emb"]])
        assert np.all(
            np.abs(served - want) <= 1.01 * np.abs(want).max(1, keepdims=True) / 254 + 1e-6
        )


def test_bytes_per_entity_are_measured_from_the_online_store(compacted) -> None:
    from feast.protos.feast.types.Value_pb2 import FloatList
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from mspa_features.serving.compact import PREF_CODE, online_bytes, value_bytes
    from mspa_features.serving.definitions import author_view_name, pref_view_name

    cfg, src, manifests, _ = compacted
    store = _store(cfg)
    users = _source(src, "preferences")["user_id"].nunique()
    full = online_bytes(store, pref_view_name("template"), "pref_emb")
    expected_full = ValueProto(float_list_val=FloatList(val=[0.5] * 384)).ByteSize()
    assert full.entities == users and full.embedding == expected_full
    for name, m in manifests.items():
        got = online_bytes(store, pref_view_name(name), PREF_CODE)
        payload = value_bytes(K, m.dtype)  # 21 (int8) or 33 (float16)
        assert got.entities == users
        assert got.embedding == ValueProto(bytes_val=b"x" * payload).ByteSize() == payload + 2
        assert got.embedding_max == payload + 2
        assert got.row > got.embedding  # the key, history count and statuses beside it
        assert got.embedding < full.embedding / 40
        authors = online_bytes(store, author_view_name(name), "author_emb_code")
        assert authors.embedding == payload + 2
