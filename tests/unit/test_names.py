"""User-given names that reach folders, Feast object names and URIs: one rule each, checked at
config load with the file and field named (issue 14: 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mspa_features.errors import ConfigError
from mspa_features.names import (
    check_feature_set_for_store,
    experiment_name,
    feature_set_name,
    folder_name,
    sqlite_uri,
)

# Plain text with quotes, commas, spaces and brackets is a fine run or ablation name.
GOOD_FOLDER = ["it's", "bob's ais, v2", 'say "hi"', "a [b] c", "ünïcode", "x" * 120]
BAD_FOLDER = [
    ("", "is empty"),
    ("   ", "is empty"),
    (" lead", "starts or ends with a space"),
    ("a/b", "path separator"),
    ("..", "relative folder reference"),
    ("a\\b", "path separator"),
    ("tab\there", "control character"),
    ("x" * 121, "longer than 120"),
]


@pytest.mark.parametrize("name", GOOD_FOLDER)
def test_folder_name_accepts_plain_text(name: str) -> None:
    assert folder_name(name) == name


@pytest.mark.parametrize(("name", "why"), BAD_FOLDER)
def test_folder_name_refuses_with_the_value_named(name: str, why: str) -> None:
    with pytest.raises(ValueError, match="run name") as e:
        folder_name(name, "run name")
    assert why in str(e.value) and repr(name) in str(e.value)


@pytest.mark.parametrize("name", ["template", "llm", "smollm2-135m-grpo-0a1b2c3d4e", "v1.2_x"])
def test_feature_set_name_accepts(name: str) -> None:
    assert feature_set_name(name) == name


@pytest.mark.parametrize("name", ["it's", "a b", "a__b", "-lead", ".hidden", "", 'q"x', "x" * 65])
def test_feature_set_name_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="must be a name Feast objects can hold") as e:
        feature_set_name(name)
    assert repr(name) in str(e.value)


def test_store_specific_rule_for_spark_and_milvus() -> None:
    assert check_feature_set_for_store("a-b.c", offline="duckdb", online="sqlite") is None
    assert check_feature_set_for_store("a-b.c", offline="duckdb", online="redis") is None
    why = check_feature_set_for_store("a-b.c", offline="spark", online="sqlite")
    assert why is not None and "the spark store" in why and "'a_b_c'" in why
    why = check_feature_set_for_store("aligned-7", offline="spark", online="milvus")
    assert why is not None and "spark and milvus" in why
    assert check_feature_set_for_store("a_b", offline="spark", online="milvus") is None


def test_experiment_name() -> None:
    assert experiment_name("bob's exp, v2") == "bob's exp, v2"
    for bad in ("", "  ", "a\nb", "x" * 201):
        with pytest.raises(ValueError, match="must be non-empty printable text"):
            experiment_name(bad)


@pytest.mark.parametrize(
    ("folder", "tail"),
    [
        ("plain", "/plain/mlflow.db"),
        ("o'brien ws", "/o'brien ws/mlflow.db"),  # unchanged: SQLAlchemy reads it as is
        ("with#hash", "/with#hash/mlflow.db"),
        ("q?x=1", "/q%3Fx=1/mlflow.db"),  # '?' would start URL query parameters
        ("pct%20x", "/pct%2520x/mlflow.db"),  # '%' would be decoded
    ],
)
def test_sqlite_uri_escapes_what_sqlalchemy_misreads(tmp_path: Path, folder: str, tail: str):
    uri = sqlite_uri(tmp_path / folder / "mlflow.db")
    assert uri.startswith("sqlite:////") and uri.endswith(tail)


def test_sqlite_uri_opens_the_right_file(tmp_path: Path) -> None:
    """The URI of a path holding '?' and '%' opens that very file (not a truncated one)."""
    from sqlalchemy import create_engine, text

    folder = tmp_path / "q?x=1 %20"
    folder.mkdir()
    engine = create_engine(sqlite_uri(folder / "m.db"))
    with engine.connect() as c:
        c.execute(text("create table t (x int)"))
    engine.dispose()
    assert (folder / "m.db").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q?x=1 %20"]


# --------------------------------------------------------------------------- at config load


def _write(tmp_path: Path, name: str, doc: dict) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_run_config_name_is_checked_at_load(tmp_path: Path) -> None:
    from mspa_features.config import load_config

    good = _write(tmp_path, "ok.yaml", {"name": "bob's run", "data": {"source": "movielens"}})
    assert load_config(good).name == "bob's run"
    bad = _write(tmp_path, "bad.yaml", {"name": "../up", "data": {"source": "movielens"}})
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert msg.startswith(f"invalid config {bad}:")
    assert "name: Value error, run name must be plain text that can name a folder" in msg
    assert "got '../up'" in msg


SPLIT = {"train_start": "2024-01-01T00:00:00Z", "split_at": "2024-02-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("name", "a/b", "name: Value error, name must be plain text that can name a folder, got"),
        ("feature_set", "it's", "feature_set: Value error, feature set must be a name Feast"),
        ("llm_feature_set", "a__b", "llm_feature_set: Value error, feature set must be a name"),
        ("mlflow", {"experiment": ""}, "mlflow.experiment: Value error, mlflow.experiment must"),
    ],
)
def test_ablation_config_names_are_checked_at_load(tmp_path: Path, field, value, expect) -> None:
    from ranker_hooks.ablation.run import load_ablation_config

    path = _write(tmp_path, "ab.yaml", {"split": SPLIT, field: value})
    with pytest.raises(ConfigError) as e:
        load_ablation_config(path)
    assert str(e.value).startswith(f"invalid config {path}:")
    got = value if isinstance(value, str) else value["experiment"]
    assert expect in str(e.value) and f"got {got!r}" in str(e.value)


def test_ablation_name_with_quotes_loads(tmp_path: Path) -> None:
    from ranker_hooks.ablation.run import load_ablation_config

    path = _write(tmp_path, "ab.yaml", {"split": SPLIT, "name": "bob's ais, v2"})
    assert load_ablation_config(path).name == "bob's ais, v2"


def test_align_experiment_is_checked_at_load() -> None:
    from pydantic import ValidationError

    from mspa_features.align.config import TrackingConfig

    assert TrackingConfig(experiment="bob's align").experiment == "bob's align"
    with pytest.raises(ValidationError, match="tracking.experiment must be .*, got 'a\\\\nb'"):
        TrackingConfig(experiment="a\nb")


def test_backfill_feature_set_is_checked_before_spark() -> None:
    from pydantic import ValidationError

    from mspa_features.snapshots.backfill import BackfillConfig

    assert BackfillConfig(feature_set="smollm2-135m-grpo-0a1b").feature_set_name.startswith("s")
    with pytest.raises(
        ValidationError, match='feature_set must be a name Feast objects can hold, got "it\'s"'
    ):
        BackfillConfig(feature_set="it's")
