"""The plain Feast CLI on our repos, run as a subprocess the way a Feast user runs it.

- ``feature_repo/`` as shipped, copied (a fresh clone: no backfill yet): ``feast plan`` declares
  the entities and the template feature set listed in ``feature_sets.yaml``. No command here
  prints a ``RuntimeWarning`` (Feast's on-demand view notice is silenced by the repo).
- The same copy on a small 1997-98 backfill: ``feast apply`` + ``feast materialize-incremental``
  load each user's latest snapshot under the file's TTL policy; with a 365-day TTL Feast starts
  at now - 365 days and loads nothing (exit 0), which is why MovieLens's policy is 36500 days.
- A run's store folder after ``mspa register`` plus a leak set and an aligned set: ``feast plan``
  there creates and deletes nothing, ``feast apply`` keeps every view mspa registered, and
  ``feast materialize-incremental`` loads the rows mspa reads back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mspa_features.config import DataConfig, FeaturesConfig, RunConfig, Workspace
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
FEAST = Path(sys.executable).with_name("feast")
DIM = 8
T0 = datetime(1997, 9, 22, tzinfo=UTC)  # MovieLens-like instants
SNAPS = [datetime(1997, 10, 6, tzinfo=UTC), datetime(1997, 11, 3, tzinfo=UTC)]
END = "1998-06-01T00:00:00"
USERS = ["u0", "u1"]
AUTHORS = ["a0", "a1"]
# What Python prints for a RuntimeWarning: "<file>:<line>: RuntimeWarning: <message>".
RUNTIME_WARNING = re.compile(r"^\S+:\d+: RuntimeWarning: .*$", re.MULTILINE)


def _emb(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


def write_backfill(root: Path) -> None:
    """``preferences`` (2 users x 2 weekly snapshots) and ``author_profiles`` (2 authors)."""
    for k, snap in enumerate(SNAPS):
        rows = [
            {
                "user_id": u,
                "event_timestamp": snap,
                "created_timestamp": snap,
                "history_count": k + 1,
                "history_last_ts": snap - timedelta(hours=1),
                "pref_text": f"{u}@{k}",
                "pref_emb": _emb(10 * i + k),
                "model_version": "tmpl-v1",
                "prompt_hash": "h0",
                "pref_status": "ok",
                "pref_decoding": "none",
            }
            for i, u in enumerate(USERS)
        ]
        d = root / "preferences" / f"ds={snap:%Y-%m-%d}"
        d.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(rows, schema=PREFERENCES.schema)
        pq.write_table(table, d / "part-00000.parquet", coerce_timestamps="us")
    rows = [
        {
            "author_id": a,
            "event_timestamp": T0,
            "created_timestamp": T0,
            "author_text": f"author {a}",
            "author_emb": _emb(100 + i),
            "model_version": "tmpl-v1",
            "prompt_hash": "h0",
            "author_status": "ok",
            "author_decoding": "none",
        }
        for i, a in enumerate(AUTHORS)
    ]
    d = root / "author_profiles" / f"ds={T0:%Y-%m-%d}"
    d.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=AUTHOR_PROFILES.schema)
    pq.write_table(table, d / "part-00000.parquet", coerce_timestamps="us")


def feast(folder: Path, *args: str) -> str:
    """Run the Feast CLI in ``folder``; returns stdout + stderr, fails the test on exit != 0
    or on a RuntimeWarning in stderr (the repo's definitions silence Feast's on-demand view
    notice, which every plan and apply of it printed)."""
    env = {k: v for k, v in os.environ.items() if k != "FEAST_FS_YAML_FILE_PATH"}
    proc = subprocess.run(
        [str(FEAST), *args],
        cwd=folder,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"feast {' '.join(args)} exited {proc.returncode}:\n{out}"
    assert not RUNTIME_WARNING.findall(proc.stderr), f"feast {' '.join(args)}:\n{proc.stderr}"
    return out


def declared(out: str, verb: str) -> list[str]:
    """``<verb> <object kind> <name>`` lines of a plan/apply output (e.g. ``Created``)."""
    kinds = "entity|feature view|on demand feature view|feature service|data source|project"
    return re.findall(rf"^{verb} (?:{kinds}) (\S+)", out, flags=re.MULTILINE)


def copy_repo(tmp: Path) -> Path:
    dst = tmp / "feature_repo"
    shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return dst


def online_texts(folder: Path) -> list[str | None]:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(folder))
    resp = store.get_online_features(
        features=["user_preferences__template:pref_text"],
        entity_rows=[{"user_id": u} for u in USERS],
    ).to_dict()
    return resp["pref_text"]


def test_shipped_repo_plans_on_a_fresh_clone(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path)
    # As shipped: the template set of the MovieLens run, not backfilled in this copy's checkout.
    sets = yaml.safe_load((repo / "feature_sets.yaml").read_text())
    assert sets["feature_sets"] == {
        "template": {"path": "../workspace/features/movielens/template"}
    }
    assert not (repo / sets["feature_sets"]["template"]["path"]).exists()
    out = feast(repo, "plan")
    created = declared(out, "Created")
    for name in (
        "user",
        "author",
        "user_preferences__template",
        "author_profiles__template",
        "user_author_cosine__template",
        "baseline__template",
        "with_preference__template",
        "with_author__template",
        "all__template",
    ):
        assert name in created, out
    assert declared(out, "Deleted") == []


@pytest.mark.parametrize(("ttl_days", "loaded"), [(36500, True), (365, False)])
def test_apply_and_materialize_incremental_follow_the_ttl_policy(
    tmp_path: Path, ttl_days: int, loaded: bool
) -> None:
    repo = copy_repo(tmp_path)
    write_backfill(tmp_path / "features" / "template")
    sets = yaml.safe_load((repo / "feature_sets.yaml").read_text())
    sets["ttl_days"] = ttl_days
    sets["emb_dim"] = DIM
    sets["feature_sets"]["template"]["path"] = "../features/template"
    (repo / "feature_sets.yaml").write_text(yaml.safe_dump(sets))

    out = feast(repo, "apply")
    assert "user_preferences__template" in declared(out, "Created"), out
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    views = {v.name: v for v in store.list_feature_views()}
    assert set(views) == {"user_preferences__template", "author_profiles__template"}
    assert views["user_preferences__template"].ttl == timedelta(days=ttl_days)
    assert views["user_preferences__template"].tags["model_version"] == "tmpl-v1"
    assert {s.name for s in store.list_feature_services()} == {
        f"{v}__template" for v in ("baseline", "with_preference", "with_author", "all")
    }

    feast(repo, "materialize-incremental", END)
    texts = online_texts(repo)
    if loaded:  # each user's latest snapshot
        assert texts == [f"{u}@1" for u in USERS]
    else:  # Feast started at now - 365 days, after the data: nothing loaded, exit 0
        assert texts == [None, None]


def _leak_frame() -> pd.DataFrame:
    ts = pd.Timestamp(SNAPS[0])
    return pd.DataFrame(
        {
            "user_id": USERS,
            "event_timestamp": [ts] * 2,
            "created_timestamp": [ts] * 2,
            "knowledge_ts": [int(pd.Timestamp(SNAPS[1]).value // 1000)] * 2,
            "next_positive_author": ["a1", "a0"],
        }
    )


def _aligned_frame() -> pd.DataFrame:
    ts = pd.Timestamp(T0)
    return pd.DataFrame(
        {
            "author_id": AUTHORS,
            "event_timestamp": [ts] * 2,
            "created_timestamp": [ts] * 2,
            "aligned_author_id_emb": [np.asarray(_emb(7 + i), np.float32) for i in range(2)],
            "knowledge_ts": [int(ts.value // 1000)] * 2,
        }
    )


def test_run_store_is_a_feast_repo_that_keeps_what_mspa_registered(tmp_path: Path) -> None:
    from feast import FeatureStore

    from mspa_features.serving.materialize import apply_and_materialize, open_store
    from ranker_hooks.aligned_id.feast_defs import register_aligned, write_aligned_set
    from ranker_hooks.lis.feast_defs import leaks_root, register_leaks, write_leak_set

    cfg = RunConfig(
        name="ml",
        workspace=tmp_path / "ws",
        data=DataConfig(source="movielens"),
        features=FeaturesConfig(ttl_days=36500),
    )
    write_backfill(Workspace(cfg.workspace).features(cfg.name) / "template")
    rep = apply_and_materialize(cfg, None, repo_path=REPO, materialize=False)
    write_leak_set(
        leaks_root(cfg),
        _leak_frame(),
        kind="next_positive",
        horizon_days=7,
        key="user_id",
        window_start=SNAPS[0],
        window_end=SNAPS[1],
    )
    register_leaks(cfg, repo_path=REPO)
    write_aligned_set(
        cfg,
        _aligned_frame(),
        feature_set="template",
        model_version="adapter-v1",
        split_at=SNAPS[1],
        knowledge_ts=T0,
    )
    register_aligned(cfg, "template", repo_path=REPO)

    store_dir = rep.store_dir
    assert store_dir is not None
    assert Path(rep.registry) == store_dir / "registry.db"
    for name in ("feature_store.yaml", "feature_sets.yaml", "feature_definitions.py"):
        assert (store_dir / name).is_file(), name
    sets = yaml.safe_load((store_dir / "feature_sets.yaml").read_text())
    assert sets["ttl_days"] == 36500
    assert set(sets["feature_sets"]) == {"template"}
    assert set(sets["leak_sets"]) == {"next_positive_n7"}
    assert set(sets["aligned_sets"]) == {"template"}
    before = (store_dir / "feature_sets.yaml").read_text()

    views = {
        "user_preferences__template",
        "author_profiles__template",
        "leak__next_positive_n7",
        "aligned_author_id__template",
    }
    services = {
        *(f"{v}__template" for v in ("baseline", "with_preference", "with_author", "all")),
        "lis__next_positive_n7",
        "aligned__template",
    }

    # The plain CLI declares exactly what mspa registered: nothing to create or delete.
    out = feast(store_dir, "plan")
    assert declared(out, "Deleted") == [], out
    assert declared(out, "Created") == [], out
    assert "No changes to infrastructure" in out, out
    out = feast(store_dir, "apply")
    assert declared(out, "Deleted") == [], out

    cli_store = FeatureStore(repo_path=str(store_dir))
    mspa_store = open_store(cfg, repo_path=REPO)
    for store in (cli_store, mspa_store):
        store.refresh_registry()
        assert {v.name for v in store.list_feature_views()} == views
        assert {s.name for s in store.list_feature_services()} == services
        assert {v.name for v in store.list_on_demand_feature_views()} == {
            "user_author_cosine__template"
        }
    fv = {v.name: v for v in cli_store.list_feature_views()}
    assert fv["leak__next_positive_n7"].tags["leaked"] == "true"
    assert fv["aligned_author_id__template"].ttl == timedelta(days=36500)

    # Materialization by the plain CLI: the latest snapshot per user, leak rows too; mspa's
    # store reads the same online store.
    feast(store_dir, "materialize-incremental", END)
    assert online_texts(store_dir) == [f"{u}@1" for u in USERS]
    leak = mspa_store.get_online_features(
        features=["leak__next_positive_n7:next_positive_author"],
        entity_rows=[{"user_id": u} for u in USERS],
    ).to_dict()
    assert leak["next_positive_author"] == ["a1", "a0"]

    # A store registered before feature_sets.yaml existed: mspa register lists what its
    # registry holds (leak and aligned sets too) before adding its own sets.
    (store_dir / "feature_sets.yaml").unlink()
    apply_and_materialize(cfg, ["template"], repo_path=REPO, materialize=False)
    sets = yaml.safe_load((store_dir / "feature_sets.yaml").read_text())
    assert set(sets["leak_sets"]) == {"next_positive_n7"}
    assert set(sets["aligned_sets"]) == {"template"}
    assert sets == yaml.safe_load(before)
