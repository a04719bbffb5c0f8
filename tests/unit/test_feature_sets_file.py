"""feature_sets.yaml: validated at load (file and field named), paths relative to its folder."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from mspa_features.errors import ConfigError
from mspa_features.serving.repo import (
    FeatureSetEntry,
    FeatureSetsFile,
    FolderEntry,
    bind,
    load_feature_sets,
    offline_kind,
    save_feature_sets,
    update_feature_sets,
)

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


def test_shipped_file_is_the_movielens_policy() -> None:
    fsf = load_feature_sets(REPO / "feature_sets.yaml")
    assert fsf.ttl == timedelta(days=36500)
    assert set(fsf.feature_sets) == {"template"}
    assert fsf.feature_sets["template"].path == (
        REPO.parent / "workspace" / "features" / "movielens" / "template"
    )
    assert fsf.leak_sets == {} and fsf.aligned_sets == {}


def test_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "feature_sets.yaml"
    bad.write_text("ttl_dayz: 3\nfeature_sets: {t: {path: x, leakd: true}}\n")
    with pytest.raises(ConfigError) as e:
        load_feature_sets(bad)
    msg = str(e.value)
    assert str(bad) in msg
    assert "ttl_dayz" in msg and "did you mean 'ttl_days'" in msg
    assert "feature_sets.t.leakd" in msg
    bad.write_text("ttl_days: -1\n")
    with pytest.raises(ConfigError, match="ttl_days"):
        load_feature_sets(bad)


def test_round_trip_keeps_paths_relative_to_the_file(tmp_path: Path) -> None:
    store = tmp_path / "ws" / "feast" / "run" / "sqlite"
    data = tmp_path / "ws" / "features" / "run"
    fsf = FeatureSetsFile(
        ttl_days=36500,
        emb_dim=8,
        feature_sets={"llm": FeatureSetEntry(path=data / "llm", model_version="m1", leaked=True)},
        leak_sets={"next_positive_n7": FolderEntry(path=data / "leaks" / "next_positive_n7")},
    )
    save_feature_sets(store / "feature_sets.yaml", fsf)
    raw = yaml.safe_load((store / "feature_sets.yaml").read_text())
    assert raw["feature_sets"]["llm"] == {
        "path": "../../../features/run/llm",
        "model_version": "m1",
        "leaked": True,
    }
    back = load_feature_sets(store / "feature_sets.yaml")
    assert back.feature_sets["llm"].path == (data / "llm").resolve()
    assert back.leak_sets["next_positive_n7"].path == (data / "leaks/next_positive_n7").resolve()
    assert back.ttl_days == 36500 and back.emb_dim == 8

    # update: the TTL of a new file comes from default_ttl; an existing file keeps its own.
    other = tmp_path / "other"
    fresh = update_feature_sets(other, lambda f: None, default_ttl=timedelta(days=7))
    assert fresh.ttl == timedelta(days=7)
    kept = update_feature_sets(store, lambda f: None, default_ttl=timedelta(days=7))
    assert kept.ttl == timedelta(days=36500)


def test_offline_kind_follows_feasts_yaml_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FEAST_FS_YAML_FILE_PATH", raising=False)
    assert offline_kind(REPO) == "duckdb"
    monkeypatch.setenv("FEAST_FS_YAML_FILE_PATH", str(REPO / "stores" / "spark.yaml"))
    assert offline_kind(REPO) == "spark"
    monkeypatch.delenv("FEAST_FS_YAML_FILE_PATH")
    assert offline_kind(tmp_path) == "duckdb"  # no yaml: FileSources


def test_bind_names_each_object_once(tmp_path: Path) -> None:
    from mspa_features.serving.definitions import build_definitions, entities

    objs = build_definitions({"a-b": tmp_path}, emb_dim=4)
    ns: dict[str, object] = {}
    names = bind(ns, [*entities(), *objs])
    # The entities appear twice (equal objects): bound once.
    assert len(names) == len(objs)
    assert ns["featureview__user_preferences__a_b"] is objs[4]
    from feast import Entity, ValueType

    user, _ = entities()
    other = Entity(name="user", join_keys=["other_id"], value_type=ValueType.STRING)
    with pytest.raises(ConfigError, match="two different Entitys named 'user'"):
        bind({}, [user, other])
