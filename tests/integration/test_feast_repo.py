"""The Feast feature repo end to end on hand-made backfill output with known snapshot times.

3 users x 3 preference snapshots (T0, T0+10d, T0+20d, one ``ds=`` partition each) and 3
authors, in two feature sets side by side (``template`` and ``llm``). The latest snapshot of
user ``u<k>`` is built to point at author ``a<k>`` so U2A retrieval has a known answer.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mspa_features.config import DataConfig, RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
DIM = 384
T0 = datetime(2024, 1, 1, tzinfo=UTC)
SNAPS = [T0, T0 + timedelta(days=10), T0 + timedelta(days=20)]
T_END = T0 + timedelta(days=25)  # materialize up to here
USERS = ["u0", "u1", "u2"]
AUTHORS = ["a0", "a1", "a2"]
SETS = {"template": ("tmpl-v1", 0), "llm": ("llm-v1", 100)}  # model_version, count offset


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def author_emb(fs: str, a: int) -> np.ndarray:
    seed = 1000 + a + (50 if fs == "llm" else 0)
    return _unit(np.random.default_rng(seed).normal(size=DIM))


def pref_emb(fs: str, u: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(10 * u + k + (500 if fs == "llm" else 0))
    if k == len(SNAPS) - 1:  # the latest snapshot points at author a<u>
        return _unit(author_emb(fs, u) + 0.3 * _unit(rng.normal(size=DIM)))
    return _unit(rng.normal(size=DIM))


def history_count(fs: str, u: int, k: int) -> int:
    return SETS[fs][1] + 10 * u + k


def pref_text(fs: str, u: int, k: int) -> str:
    return f"{fs}:u{u}@s{k}"


def pref_status(fs: str, u: int, k: int) -> str:
    """llm: user u1's latest snapshot failed to parse, u2's earlier ones were repaired."""
    if fs != "llm":
        return "ok"
    if u == 1 and k == len(SNAPS) - 1:
        return "failed"
    return "repaired" if u == 2 and k < len(SNAPS) - 1 else "ok"


def author_status(fs: str, a: int) -> str:
    return "failed" if fs == "llm" and a == 2 else "ok"


def decoding(fs: str) -> str:
    return "constrained" if fs == "llm" else "none"


def write_prefs(root: Path, fs: str, k: int, snap: datetime) -> None:
    rows = [
        {
            "user_id": f"u{u}",
            "event_timestamp": snap,
            "created_timestamp": snap + timedelta(hours=1),
            "history_count": history_count(fs, u, k),
            "history_last_ts": snap - timedelta(hours=1),
            "pref_text": pref_text(fs, u, k),
            "pref_emb": pref_emb(fs, u, k).tolist(),
            "model_version": SETS[fs][0],
            "prompt_hash": "h0",
            "pref_status": pref_status(fs, u, k),
            "pref_decoding": decoding(fs),
        }
        for u in range(len(USERS))
    ]
    d = root / "preferences" / f"ds={snap:%Y-%m-%d}"
    d.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=PREFERENCES.schema)
    pq.write_table(table, d / "part-00000.parquet", coerce_timestamps="us")


def write_feature_set(root: Path, fs: str) -> None:
    for k, snap in enumerate(SNAPS):
        write_prefs(root, fs, k, snap)
    rows = [
        {
            "author_id": f"a{a}",
            "event_timestamp": T0,
            "created_timestamp": T0,
            "author_text": f"{fs}:author {a}",
            "author_emb": author_emb(fs, a).tolist(),
            "model_version": SETS[fs][0],
            "prompt_hash": "h0",
            "author_status": author_status(fs, a),
            "author_decoding": decoding(fs),
        }
        for a in range(len(AUTHORS))
    ]
    d = root / "author_profiles" / f"ds={T0:%Y-%m-%d}"
    d.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=AUTHOR_PROFILES.schema)
    pq.write_table(table, d / "part-00000.parquet", coerce_timestamps="us")


def make_cfg(tmp: Path, name: str, sets: tuple[str, ...] = ("template", "llm")) -> RunConfig:
    cfg = RunConfig(name=name, workspace=tmp / "ws", data=DataConfig(source="movielens"))
    for fs in sets:
        write_feature_set(Workspace(cfg.workspace).features(cfg.name) / fs, fs)
    return cfg


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


def expected_snapshot(t: datetime, ttl: timedelta = timedelta(days=365)) -> int | None:
    """Index of the latest snapshot with event_timestamp <= t and within the TTL, else None."""
    ks = [k for k, s in enumerate(SNAPS) if s <= t]
    if not ks or t - SNAPS[ks[-1]] > ttl:
        return None
    return ks[-1]


# Entity rows: before the first snapshot, exactly at each, between, after the last (within
# TTL), and past the TTL; every user.
OFFSETS = [
    timedelta(days=-1),
    timedelta(0),
    timedelta(days=5),
    timedelta(days=10),
    timedelta(days=10, seconds=-1),
    timedelta(days=15),
    timedelta(days=20),
    timedelta(days=60),
    timedelta(days=20 + 366),
]


def entity_frame() -> pd.DataFrame:
    rows = [
        {"user_id": u, "author_id": AUTHORS[(i + j) % 3], "event_timestamp": T0 + off}
        for i, u in enumerate(USERS)
        for j, off in enumerate(OFFSETS)
    ]
    df = pd.DataFrame(rows)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df["label"] = np.arange(len(df)) % 2  # passed through untouched
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)  # order must be kept


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory: pytest.TempPathFactory):
    from mspa_features.serving.materialize import open_store, register

    cfg = make_cfg(tmp_path_factory.mktemp("feast"), "toy")
    report = register(cfg, None, repo_path=REPO, end=T_END)
    return cfg, report, open_store(cfg, repo_path=REPO)


# --------------------------------------------------------------------------- registration


def test_register_reports_views_services_and_materialization(sqlite_run) -> None:
    cfg, rep, _ = sqlite_run
    assert set(rep.feature_sets) == {"llm", "template"}
    assert rep.offline_store == "duckdb"
    ws = Workspace(cfg.workspace).root
    assert Path(rep.registry).is_relative_to(ws)  # the repo folder stays clean
    assert not (REPO / "data").exists()
    names = {v.name for v in rep.views}
    for fs in SETS:
        assert {
            f"user_preferences__{fs}",
            f"author_profiles__{fs}",
            f"user_author_cosine__{fs}",
        } <= names
    mats = {m.view: m for m in rep.materialized}
    assert mats["user_preferences__template"].mode == "first"
    assert mats["user_preferences__template"].rows == 9
    assert mats["user_preferences__template"].entities == 3
    assert mats["user_preferences__template"].start == SNAPS[0]
    assert mats["user_preferences__template"].latest_snapshot == SNAPS[-1]
    assert mats["author_profiles__llm"].entities == 3


def test_feature_services_refs_and_tags(sqlite_run) -> None:
    _, rep, store = sqlite_run
    services = {s.name: s for s in rep.services}
    p, a, c = (
        "user_preferences__template",
        "author_profiles__template",
        "user_author_cosine__template",
    )
    pref_refs = [
        f"{p}:pref_emb",
        f"{p}:pref_text",
        f"{p}:history_count",
        f"{p}:pref_status",
        f"{p}:pref_decoding",
    ]
    author_refs = [
        f"{a}:author_emb",
        f"{a}:author_text",
        f"{a}:author_status",
        f"{a}:author_decoding",
    ]
    assert services["baseline__template"].feature_refs == []
    assert services["with_preference__template"].feature_refs == pref_refs
    assert services["with_author__template"].feature_refs == author_refs
    assert services["all__template"].feature_refs == [
        *pref_refs,
        *author_refs,
        f"{c}:pref_author_cosine",
    ]
    for fs, (mv, _) in SETS.items():
        for view in (f"user_preferences__{fs}", f"author_profiles__{fs}"):
            tags = store.get_feature_view(view).tags
            assert tags == {"model_version": mv, "leaked": "false", "feature_set": fs}
        svc = store.get_feature_service(f"all__{fs}")
        assert svc.tags["leaked"] == "false"
        assert svc.tags["model_version"] == mv
        assert svc.tags["service_kind"] == "all"


# --------------------------------------------------------------------------- historical


def test_point_in_time_correct_with_nulls_and_ttl(sqlite_run) -> None:
    from mspa_features.serving.reads import historical_features

    _, _, store = sqlite_run
    ent = entity_frame()
    out = historical_features(store, "all__template", ent)
    assert len(out) == len(ent)  # nothing dropped
    pd.testing.assert_frame_equal(
        out[["user_id", "author_id", "event_timestamp", "label"]], ent, check_dtype=False
    )
    n_null = 0
    for row in out.itertuples(index=False):
        u, a = int(row.user_id[1:]), int(row.author_id[1:])
        k = expected_snapshot(row.event_timestamp.to_pydatetime())
        if k is None:
            n_null += 1
            assert pd.isna(row.history_count), row
            assert row.pref_text is None or pd.isna(row.pref_text), row
            assert row.pref_emb is None, row
            assert pd.isna(row.pref_author_cosine), row
            continue
        assert row.history_count == history_count("template", u, k), row
        assert row.pref_text == pref_text("template", u, k), row
        np.testing.assert_allclose(row.pref_emb, pref_emb("template", u, k), atol=1e-7)
        assert row.pref_emb.shape == (DIM,)
        assert row.author_text == f"template:author {a}"
        expect = cosine(pref_emb("template", u, k), author_emb("template", a))
        assert row.pref_author_cosine == pytest.approx(expect, abs=1e-5)
    assert n_null == 2 * len(USERS)  # before the first snapshot + past the TTL, per user
    assert str(out["history_count"].dtype) == "Int64"


def test_raw_feast_historical_keeps_every_row(sqlite_run) -> None:
    _, _, store = sqlite_run
    ent = entity_frame()
    out = store.get_historical_features(
        entity_df=ent, features=store.get_feature_service("with_preference__template")
    ).to_df()
    assert len(out) == len(ent)
    assert int(out["history_count"].isna().sum()) == 2 * len(USERS)


def test_historical_rejects_naive_timestamps(sqlite_run) -> None:
    from mspa_features.serving.reads import historical_features

    _, _, store = sqlite_run
    ent = entity_frame()
    ent["event_timestamp"] = ent["event_timestamp"].dt.tz_localize(None)
    with pytest.raises(TypeError, match="timezone-aware"):
        historical_features(store, "all__template", ent)


# --------------------------------------------------------------------------- online


def test_online_latest_snapshot_and_on_demand_cosine(sqlite_run) -> None:
    from mspa_features.serving.reads import online_features

    _, _, store = sqlite_run
    pairs = [("u1", "a2"), ("u0", "a0"), ("u1", "a2"), ("nobody", "a1")]
    out = online_features(store, "all__template", pairs, as_of=T_END)
    assert list(out["user_id"]) == [p[0] for p in pairs]
    assert list(out["author_id"]) == [p[1] for p in pairs]
    last = len(SNAPS) - 1
    for i, (u_id, a_id) in enumerate(pairs[:3]):
        u, a = int(u_id[1:]), int(a_id[1:])
        row = out.iloc[i]
        assert row["history_count"] == history_count("template", u, last)
        assert row["pref_text"] == pref_text("template", u, last)
        assert isinstance(row["pref_emb"], list) and len(row["pref_emb"]) == DIM
        assert all(isinstance(x, float) for x in row["pref_emb"])
        np.testing.assert_allclose(row["pref_emb"], pref_emb("template", u, last), atol=1e-7)
        np.testing.assert_allclose(row["author_emb"], author_emb("template", a), atol=1e-7)
        expect = cosine(np.asarray(row["pref_emb"]), np.asarray(row["author_emb"]))
        assert row["pref_author_cosine"] == pytest.approx(expect, abs=1e-5)
    unknown = out.iloc[3]
    assert unknown["pref_emb"] is None and pd.isna(unknown["history_count"])
    assert unknown["author_text"] == "template:author 1"
    assert pd.isna(unknown["pref_author_cosine"])


# --------------------------------------------------------------------------- TTL: one rule

TTL = timedelta(days=365)
US = timedelta(microseconds=1)


def _same(a, b) -> bool:
    """Both null, or equal (vectors elementwise, floats to 1e-5)."""
    null_a = a is None or a is pd.NA or (isinstance(a, float) and np.isnan(a))
    null_b = b is None or b is pd.NA or (isinstance(b, float) and np.isnan(b))
    if null_a or null_b:
        return null_a and null_b
    if isinstance(a, list | np.ndarray):
        return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=1e-6)
    if isinstance(a, float):
        return abs(a - float(b)) < 1e-5
    return a == b


# (request instant, preference served?, author served?) for user u0 and author a0: the latest
# preference snapshot is SNAPS[-1] = T0+20d, the author's only profile is at T0; TTL 365 days.
TTL_CASES = [
    (T0 + TTL - US, True, True),  # both inside
    (T0 + TTL, True, True),  # the author exactly at its TTL: still visible (inclusive)
    (T0 + TTL + US, True, False),  # the author just outside
    (SNAPS[-1] + TTL, True, False),  # the preference exactly at its TTL
    (SNAPS[-1] + TTL + US, False, False),  # the preference just outside
]


@pytest.mark.parametrize(("t", "pref_served", "author_served"), TTL_CASES)
def test_ttl_boundary_same_for_training_and_serving(
    sqlite_run, t: datetime, pref_served: bool, author_served: bool
) -> None:
    """At the TTL boundary, from both sides, the online read at ``as_of=t`` serves exactly
    what the historical (training) read gives a row at ``t``: values, or nulls (issue 14: 6)."""
    from mspa_features.serving.reads import historical_features, online_features

    _, _, store = sqlite_run
    ent = pd.DataFrame({"user_id": ["u0"], "author_id": ["a0"]})
    ent["event_timestamp"] = pd.to_datetime([t], utc=True)
    hist = historical_features(store, "all__template", ent).iloc[0]
    online = online_features(store, "all__template", [("u0", "a0")], as_of=t).iloc[0]
    feats = [c for c in online.index if c not in ("user_id", "author_id")]
    assert {"pref_text", "author_text", "pref_author_cosine", "history_count"} <= set(feats)
    for c in feats:
        assert _same(online[c], hist[c]), (t, c, online[c], hist[c])
    last = len(SNAPS) - 1
    assert online["pref_text"] == (pref_text("template", 0, last) if pref_served else None)
    assert online["history_count"] == (history_count("template", 0, last) if pref_served else None)
    assert online["author_text"] == ("template:author 0" if author_served else None)
    if pref_served and author_served:
        expect = cosine(pref_emb("template", 0, last), author_emb("template", 0))
        assert online["pref_author_cosine"] == pytest.approx(expect, abs=1e-5)
    else:  # computed from an expired input: expired with it, as in training
        assert online["pref_author_cosine"] is None and pd.isna(hist["pref_author_cosine"])


@pytest.mark.parametrize(("t", "served"), [(T0 + TTL, True), (T0 + TTL + US, False)])
def test_ttl_on_demand_alone_follows_its_sources(sqlite_run, t: datetime, served: bool) -> None:
    """The cosine requested without its inputs (the ``cosine`` variant) expires with them."""
    from mspa_features.serving.reads import historical_features, online_features

    _, _, store = sqlite_run
    refs = ["user_author_cosine__template:pref_author_cosine"]
    online = online_features(store, refs, [("u1", "a1"), ("u2", "a2")], as_of=t)
    ent = pd.DataFrame({"user_id": ["u1", "u2"], "author_id": ["a1", "a2"]})
    ent["event_timestamp"] = pd.to_datetime([t, t], utc=True)
    hist = historical_features(store, refs, ent)
    assert list(online.columns) == ["user_id", "author_id", "pref_author_cosine"]
    for i in range(2):
        assert _same(online.loc[i, "pref_author_cosine"], hist.loc[i, "pref_author_cosine"])
        assert (online.loc[i, "pref_author_cosine"] is not None) is served


def test_ttl_zero_never_expires_on_either_path(tmp_path: Path) -> None:
    """A view registered with ttl=0 (Feast: no expiry) is served ten years on, online and in
    training alike; as_of must be an instant, not a naive time."""
    from mspa_features.serving.materialize import open_store, register
    from mspa_features.serving.reads import historical_features, online_features

    cfg = make_cfg(tmp_path, "nottl", sets=("template",))
    register(cfg, ["template"], repo_path=REPO, end=T_END, ttl=timedelta(0))
    store = open_store(cfg, repo_path=REPO)
    t = T0 + timedelta(days=3650)
    online = online_features(store, "with_preference__template", [("u2", "a0")], as_of=t)
    ent = pd.DataFrame({"user_id": ["u2"], "author_id": ["a0"]})
    ent["event_timestamp"] = pd.to_datetime([t], utc=True)
    hist = historical_features(store, "with_preference__template", ent)
    assert online.loc[0, "pref_text"] == hist.loc[0, "pref_text"] == pref_text("template", 2, 2)
    with pytest.raises(TypeError, match="timezone-aware"):
        online_features(
            store, "with_preference__template", [("u2", "a0")], as_of=datetime(2024, 1, 2)
        )


def test_baseline_service_serves_ids_only(sqlite_run) -> None:
    from mspa_features.serving.reads import historical_features, online_features

    _, _, store = sqlite_run
    out = online_features(store, "baseline__template", [("u0", "a1")], as_of=T_END)
    assert list(out.columns) == ["user_id", "author_id"]
    ent = entity_frame()
    hist = historical_features(store, "baseline__template", ent)
    assert list(hist.columns) == list(ent.columns)
    assert len(hist) == len(ent)


def test_two_feature_sets_side_by_side(sqlite_run) -> None:
    from mspa_features.serving.reads import historical_features, online_features

    _, _, store = sqlite_run
    last = len(SNAPS) - 1
    both = {
        fs: online_features(store, f"all__{fs}", [("u2", "a0")], as_of=T_END).iloc[0] for fs in SETS
    }
    for fs, row in both.items():
        assert row["history_count"] == history_count(fs, 2, last)
        assert row["author_text"] == f"{fs}:author 0"
        np.testing.assert_allclose(row["pref_emb"], pref_emb(fs, 2, last), atol=1e-7)
    assert both["llm"]["pref_author_cosine"] != pytest.approx(
        both["template"]["pref_author_cosine"]
    )
    ent = entity_frame()
    hist = historical_features(store, "with_preference__llm", ent)
    for row in hist.itertuples(index=False):
        k = expected_snapshot(row.event_timestamp.to_pydatetime())
        if k is not None:
            assert row.pref_text == pref_text("llm", int(row.user_id[1:]), k)


def test_status_columns_through_feast_historical_and_online(sqlite_run) -> None:
    """Each row's generation status comes back from both reads, point in time, and the
    ranker side masks, flags or drops a failed row instead of serving it as if good."""
    from mspa_features.serving.reads import historical_features, online_features
    from ranker_hooks.inject import InjectionSpec, offline_matrix, online_matrix

    _, _, store = sqlite_run
    last = len(SNAPS) - 1
    ent = entity_frame()
    hist = historical_features(store, "all__llm", ent)
    n_failed = 0
    for row in hist.itertuples(index=False):
        k = expected_snapshot(row.event_timestamp.to_pydatetime())
        u, a = int(row.user_id[1:]), int(row.author_id[1:])
        if k is None:
            assert pd.isna(row.pref_status) and pd.isna(row.pref_decoding)
        else:
            assert row.pref_status == pref_status("llm", u, k)
            assert row.pref_decoding == "constrained"
            n_failed += row.pref_status == "failed"
        if row.author_emb is None:  # before the author's profile, or past the TTL
            assert pd.isna(row.author_status)
        else:
            assert row.author_status == author_status("llm", a)
    assert n_failed > 0 and (hist["pref_status"] == "repaired").any()
    tmpl = historical_features(store, "with_author__template", ent)
    assert set(tmpl["author_status"].dropna()) == {"ok"}
    assert set(tmpl["author_decoding"].dropna()) == {"none"}

    pairs = [("u1", "a0"), ("u0", "a2"), ("u0", "a0")]
    online = online_features(store, "all__llm", pairs, as_of=T_END)
    assert list(online["pref_status"]) == ["failed", "ok", "ok"]
    assert list(online["author_status"]) == ["ok", "failed", "ok"]
    assert list(online["pref_decoding"]) == ["constrained"] * 3
    assert online.loc[0, "pref_text"] == pref_text("llm", 1, last)  # the raw text is kept

    cols = ("pref_emb", "history_count", "author_emb", "pref_author_cosine")
    masked = online_matrix(store, "all__llm", pairs, InjectionSpec(columns=cols), as_of=T_END)
    names = masked.dense_names
    miss = {c: masked.dense[:, names.index(f"{c}__missing")] for c in cols}
    assert list(miss["pref_emb"]) == [1.0, 0.0, 0.0]  # the failed preference is not served
    assert list(miss["author_emb"]) == [0.0, 1.0, 0.0]
    assert list(miss["pref_author_cosine"]) == [1.0, 1.0, 0.0]
    assert list(miss["history_count"]) == [0.0, 0.0, 0.0]  # a count, not generated text
    emb = masked.dense[:, [i for i, n in enumerate(names) if n.startswith("pref_emb[")]]
    assert not emb[0].any() and emb[1].any()

    flagged = online_matrix(
        store, "all__llm", pairs, InjectionSpec(columns=cols, on_failed="flag"), as_of=T_END
    )
    fn = flagged.dense_names
    assert list(flagged.dense[:, fn.index("pref_status__failed")]) == [1.0, 0.0, 0.0]
    assert list(flagged.dense[:, fn.index("author_status__failed")]) == [0.0, 1.0, 0.0]
    assert list(flagged.dense[:, fn.index("pref_emb__missing")]) == [0.0, 0.0, 0.0]

    dropped = online_matrix(
        store, "all__llm", pairs, InjectionSpec(columns=cols, on_failed="drop"), as_of=T_END
    )
    assert list(dropped.user_ids) == ["u0"] and list(dropped.author_ids) == ["a0"]

    # Training reads apply the same rule: offline rows with a failed status are masked too.
    off = offline_matrix(store, "all__llm", ent, InjectionSpec(columns=cols))
    on_names = off.dense_names
    failed_pref = (hist["pref_status"] == "failed").to_numpy()
    assert (off.dense[failed_pref, on_names.index("pref_emb__missing")] == 1.0).all()
    failed_author = (hist["author_status"] == "failed").to_numpy()
    assert (off.dense[failed_author, on_names.index("author_emb__missing")] == 1.0).all()
    ok_rows = ~failed_author & hist["author_emb"].notna().to_numpy()
    assert (off.dense[ok_rows, on_names.index("author_emb__missing")] == 0.0).all()


def test_reads_accept_feature_refs(sqlite_run) -> None:
    from mspa_features.serving.reads import historical_features, online_features

    _, _, store = sqlite_run
    refs = ["user_preferences__llm:history_count", "user_author_cosine__llm:pref_author_cosine"]
    row = online_features(store, refs, [("u1", "a1")], as_of=T_END).iloc[0]
    assert list(row.index) == ["user_id", "author_id", "history_count", "pref_author_cosine"]
    assert row["history_count"] == history_count("llm", 1, len(SNAPS) - 1)
    expect = cosine(pref_emb("llm", 1, len(SNAPS) - 1), author_emb("llm", 1))
    assert row["pref_author_cosine"] == pytest.approx(expect, abs=1e-5)
    hist = historical_features(store, refs[:1], entity_frame())
    assert str(hist["history_count"].dtype) == "Int64"
    assert int(hist["history_count"].isna().sum()) == 2 * len(USERS)


def test_cli_register_and_online(sqlite_run, tmp_path: Path, monkeypatch) -> None:
    import yaml
    from typer.testing import CliRunner

    from mspa_features.cli import app
    from mspa_features.cli.common import console

    # The private field: monkeypatch restores it to None (width from COLUMNS again), where
    # restoring the `width` property would pin the shared console at 80 columns for later tests.
    monkeypatch.setattr(console, "_width", 240)  # no wrapping inside table cells
    cfg, _, _ = sqlite_run
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["register", str(cfg_file), "-s", "template", "--repo", str(REPO), "--end", "2024-01-27"],
    )
    assert res.exit_code == 0, res.output
    assert "all__template" in res.output and "incremental" in res.output
    res = runner.invoke(
        app,
        [
            "features",
            "online",
            str(cfg_file),
            "--user",
            "u1",
            "--author",
            "a1",
            "--repo",
            str(REPO),
            "--as-of",
            "2024-01-26",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "template:u1@s2" in res.output and "384-d" in res.output
    assert "pref_author_cosine" in res.output


def test_store_config_errors_name_the_file(tmp_path: Path) -> None:
    from mspa_features.errors import ConfigError
    from mspa_features.serving.materialize import store_config

    cfg = RunConfig(name="x", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    bad = tmp_path / "feature_store.yaml"
    bad.write_text(
        "project: p\nregistry: r.db\nprovider: local\nonline_store: {type: sqlite}\n"
        "entity_key_serialization_version: three\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="entity_key_serialization_version") as e:
        store_config(cfg, store_yaml=bad)
    assert str(bad) in str(e.value)
    bad.write_text("project: p\nonline_store: {type: cassandra}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cassandra"):
        store_config(cfg, store_yaml=bad)


def test_build_definitions_names_tags_and_errors(tmp_path: Path) -> None:
    from feast import Entity, FeatureService, FeatureView, FileSource
    from feast.on_demand_feature_view import OnDemandFeatureView

    from mspa_features.serving.definitions import build_definitions

    objs = build_definitions(
        {"aligned-7": tmp_path / "none-yet", "template": tmp_path / "t"},
        leaked={"aligned-7": True},
        model_versions={"template": "tmpl-v9"},
    )
    by_type: dict[type, list[str]] = {}
    for o in objs:
        by_type.setdefault(type(o), []).append(o.name)
    assert by_type[Entity] == ["user", "author"]
    assert len(by_type[FileSource]) == 4 and len(by_type[OnDemandFeatureView]) == 2
    assert len(by_type[FeatureService]) == 8
    views = {o.name: o for o in objs if isinstance(o, FeatureView)}
    aligned = views["user_preferences__aligned-7"]
    assert aligned.tags == {
        "model_version": "unknown",
        "leaked": "true",
        "feature_set": "aligned-7",
    }
    assert views["author_profiles__template"].tags["model_version"] == "tmpl-v9"
    assert aligned.ttl == timedelta(days=365)
    with pytest.raises(ValueError, match="without '__'"):
        build_definitions({"a__b": tmp_path})
    with pytest.raises(ValueError, match="unknown feature set .other.; valid: template"):
        build_definitions({"template": tmp_path}, leaked={"other": True})


# --------------------------------------------------------------------------- incremental


def test_incremental_materialize_picks_up_new_partition(tmp_path: Path) -> None:
    from mspa_features.serving.materialize import open_store, register
    from mspa_features.serving.reads import online_features

    cfg = make_cfg(tmp_path, "inc", sets=("template",))
    first = register(cfg, ["template"], repo_path=REPO, end=T_END)
    assert {m.mode for m in first.materialized} == {"first"}
    store = open_store(cfg, repo_path=REPO)
    before = online_features(store, "with_preference__template", [("u0", "a0")], as_of=T_END).iloc[
        0
    ]
    assert before["pref_text"] == pref_text("template", 0, 2)

    # a new backfill day lands: snapshot index 3 at T0+30d
    snap3 = T0 + timedelta(days=30)
    write_prefs(Workspace(cfg.workspace).features(cfg.name) / "template", "template", 3, snap3)
    again = register(cfg, ["template"], repo_path=REPO, end=snap3 + timedelta(days=1))
    mats = {m.view: m for m in again.materialized}
    pref = mats["user_preferences__template"]
    assert pref.mode == "incremental" and pref.start == T_END
    assert (pref.rows, pref.entities) == (3, 3)
    assert mats["author_profiles__template"].rows == 0  # nothing new for authors
    after = online_features(
        store, "with_preference__template", [("u0", "a0")], as_of=snap3 + timedelta(days=1)
    ).iloc[0]
    assert after["pref_text"] == pref_text("template", 0, 3)
    assert after["history_count"] == history_count("template", 0, 3)

    # nothing new: skipped, values unchanged
    idle = register(cfg, ["template"], repo_path=REPO, end=snap3 + timedelta(days=1))
    assert {m.mode for m in idle.materialized} == {"skipped"}

    # A backfill rerun rewrites an OLD partition (corrected texts for snapshot 1) and adds an
    # author: incremental register picks both up although their event times precede the
    # previous end, and the newer snapshot 3 stays what u0 is served.
    root = Workspace(cfg.workspace).features(cfg.name) / "template"
    write_prefs(root, "template", 1, SNAPS[1])
    late = AUTHORS[0] + "_late"
    d = root / "author_profiles" / f"ds={SNAPS[1]:%Y-%m-%d}"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "author_id": late,
                    "event_timestamp": SNAPS[1],
                    "created_timestamp": SNAPS[1],
                    "author_text": "late author",
                    "author_emb": author_emb("template", 0).tolist(),
                    "model_version": SETS["template"][0],
                    "prompt_hash": "h0",
                }
            ],
            schema=AUTHOR_PROFILES.schema,
        ),
        d / "part-00000.parquet",
        coerce_timestamps="us",
    )
    redo = register(cfg, ["template"], repo_path=REPO, end=snap3 + timedelta(days=2))
    modes = {m.view: m.mode for m in redo.materialized}
    assert modes == {
        "user_preferences__template": "incremental+rewritten",
        "author_profiles__template": "incremental+rewritten",
    }
    served = online_features(
        store, "all__template", [("u0", late)], as_of=snap3 + timedelta(days=2)
    ).iloc[0]
    assert served["author_text"] == "late author"
    assert served["pref_text"] == pref_text("template", 0, 3)


def test_register_unknown_feature_set_lists_found(tmp_path: Path) -> None:
    from mspa_features.serving.materialize import FeatureRepoError, register

    cfg = make_cfg(tmp_path, "missing", sets=("template",))
    with pytest.raises(FeatureRepoError, match=r"\['aligned-x'\].*template"):
        register(cfg, ["aligned-x"], repo_path=REPO)


def test_register_refuses_feature_set_names_feast_cannot_hold(tmp_path: Path) -> None:
    """A feature set name becomes part of Feast object names: a folder made by hand with a
    name that cannot be one, or a store that needs plain SQL identifiers, is refused before
    anything is applied (issue 14: 5)."""
    from mspa_features.serving.materialize import FeatureRepoError, register

    cfg = make_cfg(tmp_path, "names", sets=("template",))
    root = Workspace(cfg.workspace).features(cfg.name)
    write_feature_set(root / "it's", "template")
    with pytest.raises(FeatureRepoError, match='feature set must be a name Feast .*, got "it\'s"'):
        register(cfg, None, repo_path=REPO, materialize=False)
    with pytest.raises(FeatureRepoError, match="feature set must be a name Feast .*, got 'a b'"):
        register(cfg, ["a b"], repo_path=REPO)
    assert not (Workspace(cfg.workspace).root / "feast" / "names" / "sqlite").exists()
    shutil.rmtree(root / "it's")
    write_feature_set(root / "aligned-7", "template")
    spark_yaml = REPO / "stores" / "spark.yaml"
    with pytest.raises(FeatureRepoError, match="'aligned-7' cannot be used with the spark store"):
        register(cfg, ["aligned-7"], repo_path=REPO, store_yaml=spark_yaml, materialize=False)
    rep = register(cfg, ["aligned-7"], repo_path=REPO, materialize=False)  # duckdb + sqlite: fine
    assert "all__aligned-7" in {s.name for s in rep.services}


@pytest.mark.parametrize("folder", ["o'brien ws", 'q"uote; x', "pct%20 #hash"])
def test_workspace_path_with_quotes_and_spaces(tmp_path: Path, folder: str) -> None:
    """Paths reach Feast's SQL (duckdb reads the sources, SQLite holds the online rows) and
    MLflow's URI: a workspace under a folder with quotes, spaces, '%' and '#' works end to end
    (issue 14: 5)."""
    from mspa_features.serving.materialize import open_store, register
    from mspa_features.serving.reads import historical_features, online_features
    from ranker_hooks.ablation.run import default_tracking_uri

    cfg = make_cfg(tmp_path / folder, "quoted", sets=("template",))
    register(cfg, None, repo_path=REPO, end=T_END)
    store = open_store(cfg, repo_path=REPO)
    online = online_features(store, "all__template", [("u2", "a2")], as_of=T_END).iloc[0]
    ent = pd.DataFrame({"user_id": ["u2"], "author_id": ["a2"]})
    ent["event_timestamp"] = pd.to_datetime([T_END], utc=True)
    hist = historical_features(store, "all__template", ent).iloc[0]
    assert online["pref_text"] == hist["pref_text"] == pref_text("template", 2, 2)
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=default_tracking_uri(cfg)).create_experiment("e")
    assert (Workspace(cfg.workspace).root / "mlflow.db").is_file()


# --------------------------------------------------------------------------- Redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_server():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found (apt-get install -y redis-server)")
    pytest.importorskip("redis", reason="the 'redis' extra is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_online_store(redis_server: str, tmp_path: Path) -> None:
    from mspa_features.serving.materialize import open_store, register
    from mspa_features.serving.reads import online_features

    cfg = make_cfg(tmp_path, "redis", sets=("template",))
    rep = register(
        cfg, ["template"], repo_path=REPO, end=T_END, online="redis", redis_url=redis_server
    )
    assert rep.online_store.startswith("redis")
    assert "/redis/" in rep.registry
    store = open_store(cfg, repo_path=REPO, online="redis", redis_url=redis_server)
    row = online_features(store, "all__template", [("u2", "a1")], as_of=T_END).iloc[0]
    assert row["pref_text"] == pref_text("template", 2, 2)
    assert len(row["pref_emb"]) == DIM
    expect = cosine(pref_emb("template", 2, 2), author_emb("template", 1))
    assert row["pref_author_cosine"] == pytest.approx(expect, abs=1e-5)


# --------------------------------------------------------------------------- Spark


@pytest.mark.slow
def test_spark_offline_store_matches_duckdb(sqlite_run, tmp_path: Path, monkeypatch) -> None:
    from mspa_features.serving.materialize import open_store, register
    from mspa_features.serving.reads import historical_features

    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    _, _, duck_store = sqlite_run
    cfg = make_cfg(tmp_path, "spark", sets=("template",))
    spark_yaml = REPO / "stores" / "spark.yaml"
    rep = register(cfg, ["template"], repo_path=REPO, store_yaml=spark_yaml, materialize=False)
    assert rep.offline_store == "spark"
    store = open_store(cfg, repo_path=REPO, store_yaml=spark_yaml)
    ent = entity_frame()
    try:
        got = historical_features(store, "all__template", ent)
    finally:
        from pyspark.sql import SparkSession

        if (s := SparkSession.getActiveSession()) is not None:
            s.stop()
    want = historical_features(duck_store, "all__template", ent)
    assert len(got) == len(ent)
    cols = ["user_id", "author_id", "event_timestamp", "label", "history_count", "pref_text"]
    pd.testing.assert_frame_equal(got[cols], want[cols], check_dtype=False)
    np.testing.assert_allclose(
        got["pref_author_cosine"].astype(float),
        want["pref_author_cosine"].astype(float),
        atol=1e-6,
    )
    for g, w in zip(got["pref_emb"], want["pref_emb"], strict=True):
        assert (g is None) == (w is None)
        if g is not None:
            np.testing.assert_allclose(g, w, atol=1e-7)


# --------------------------------------------------------------------------- Milvus


def test_milvus_lite_u2a_vector_search(tmp_path: Path) -> None:
    pytest.importorskip("pymilvus", reason="the 'vector' extra (feast[milvus]) is not installed")
    from mspa_features.serving.materialize import open_store, register
    from mspa_features.serving.reads import nearest_authors, online_features

    cfg = make_cfg(tmp_path, "milvus", sets=("template",))
    rep = register(cfg, ["template"], repo_path=REPO, end=T_END, online="milvus")
    assert rep.online_store.startswith("milvus")
    store = open_store(cfg, repo_path=REPO, online="milvus")
    last = len(SNAPS) - 1
    for u in range(len(USERS)):
        query = online_features(
            store, "with_preference__template", [(f"u{u}", "a0")], as_of=T_END
        ).iloc[0]
        hits = nearest_authors(store, "template", query["pref_emb"], top_k=3)
        assert hits["author_id"].iloc[0] == f"a{u}"
        assert sorted(hits["author_id"]) == AUTHORS
        for row in hits.itertuples(index=False):
            a = int(row.author_id[1:])
            expect = cosine(pref_emb("template", u, last), author_emb("template", a))
            assert row.score == pytest.approx(expect, abs=1e-5)
            assert row.author_text == f"template:author {a}"
        assert list(hits["score"]) == sorted(hits["score"], reverse=True)
    assert os.path.exists(Path(rep.online_store.split(" ", 1)[1]))
