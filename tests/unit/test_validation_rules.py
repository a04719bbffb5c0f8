"""The rule set and the engine choice (issue 13: 2); the engines' agreement is in
tests/integration/test_validation_engines.py."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mspa_features.config import DataConfig
from mspa_features.data import rules as R
from mspa_features.data.contracts import INTERACTIONS, PREFERENCES
from mspa_features.errors import IncompatibleSettingsError


def _parquet(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "interactions.parquet"
    pq.write_table(pa.table({"x": pa.array(range(n), pa.int64())}), p)
    return p


def test_rules_follow_the_contract() -> None:
    rs = R.contract_rules(INTERACTIONS)
    assert [r.column for r in rs.columns] == INTERACTIONS.columns
    label = rs.column("label")
    assert label.kind == "integer" and label.allowed == (0, 1) and label.finite
    assert rs.column("value").finite and rs.column("event_timestamp").kind == "timestamp"
    assert [r.column for r in rs.references] == ["user_id", "author_id"]
    assert rs.key == INTERACTIONS.key
    prefs = R.contract_rules(PREFERENCES)
    assert prefs.column("pref_emb").kind == "vector"
    assert prefs.built_before == (("history_last_ts", "event_timestamp"),)


def test_reason_templates_put_the_value_in_place() -> None:
    before, after = R.template(R.not_one_of("label", (0, 1), R.VALUE))
    assert before + "2" + after == "label: must be one of [0, 1], got 2"
    text = R.duplicate_key([("user_id", "u1"), ("ts", "2026-01-01T00:00:00Z")], "3")
    assert text == "duplicate key (user_id=u1, ts=2026-01-01T00:00:00Z) first seen at row 3"
    assert R.show("x" * 61) == "x" * 60 + "..."


def test_auto_picks_spark_by_size(tmp_path: Path) -> None:
    small = _parquet(tmp_path, 10)
    got = R.choose_engine("auto", "interactions", small, spark_available=True, memory=2**34)
    assert got.engine == "pandas" and got.rows == 10
    # pandas would need more than half of the memory: Spark
    got = R.choose_engine("auto", "interactions", small, spark_available=True, memory=1000)
    assert got.engine == "spark" and "GiB" in got.why
    # no Spark engine wired: pandas (which may then refuse)
    got = R.choose_engine("auto", "interactions", small, spark_available=False, memory=1000)
    assert got.engine == "pandas"
    assert R.choose_engine("pandas", "i", small, spark_available=True).engine == "pandas"
    with pytest.raises(IncompatibleSettingsError, match="validation_engine"):
        R.choose_engine("spark", "interactions", small, spark_available=False)


def test_pandas_refusal_is_one_line_with_the_size_and_the_switch() -> None:
    assert R.pandas_fits("interactions", 1000, memory=2**34) is None
    msg = R.pandas_fits("interactions", 10_000_000, memory=8 * 2**30, source="i.parquet")
    assert msg is not None and "\n" not in msg
    assert "10,000,000 rows" in msg and "data.validation_engine: spark" in msg


def test_config_selects_the_engine() -> None:
    assert DataConfig(source="files", path="x").validation_engine == "auto"
    assert DataConfig(source="files", path="x", validation_engine="spark").validation_engine == (
        "spark"
    )
    with pytest.raises(ValueError, match="validation_engine"):
        DataConfig(source="files", path="x", validation_engine="dask")  # type: ignore[arg-type]
