"""Every written table keeps its contract's schema when it is empty (issue 14 item 9).

One test per writer not covered beside its own module: validation's accepted and quarantine
tables, the evaluation answers, the U2A set. (Leak, aligned and A2A sets: test_leak_build,
test_aligned_defs, test_eval_datasets; align rows: test_align_dataset; backfill partitions:
tests/integration/test_tiny_own_data.)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mspa_features.data.contracts import INTERACTIONS
from mspa_features.data.validation import QUARANTINE_SCHEMA, validate

TS = pa.timestamp("us", tz="UTC")


def _interactions(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[f.name for f in INTERACTIONS.schema])


@pytest.mark.parametrize(
    ("rows", "accepted", "quarantined"),
    [
        ([("u1", "a1", "2024-01-01T00:00:00Z", "rate", 5.0, 1)], 1, 0),  # empty quarantine
        ([("u1", "a1", "not a time", "rate", 5.0, 1)], 0, 1),  # empty accepted
        ([], 0, 0),  # both empty
    ],
)
def test_validation_writes_empty_tables_with_their_schemas(
    tmp_path: Path, rows: list[tuple], accepted: int, quarantined: int
) -> None:
    res = validate(_interactions(rows), INTERACTIONS, source="x.csv")
    res.write(tmp_path / "acc.parquet", tmp_path / "q.parquet")
    acc, q = pq.read_table(tmp_path / "acc.parquet"), pq.read_table(tmp_path / "q.parquet")
    assert (acc.num_rows, q.num_rows) == (accepted, quarantined)
    assert acc.schema.field("user_id").type == pa.string()
    assert acc.schema.field("author_id").type == pa.string()
    assert acc.schema.field("event_timestamp").type == TS
    assert acc.schema.field("value").type == pa.float64()
    assert acc.schema.field("label").type == pa.int8()
    assert q.schema.equals(QUARANTINE_SCHEMA)


def test_no_answer_gives_a_typed_answers_table(tmp_path: Path) -> None:
    from mspa_features.compose.jobs import ANSWER_SCHEMA, answers_table
    from mspa_features.io import write_parquet_atomic

    path = write_parquet_atomic(answers_table([]), tmp_path / "x.answers.parquet")
    back = pq.read_table(path)
    assert back.num_rows == 0
    assert back.schema.equals(ANSWER_SCHEMA)
    assert back.schema.field("user_id").type == pa.string()
    assert back.schema.field("pick").type == pa.int64()
    assert back.schema.field("correct").type == pa.bool_()


def test_an_empty_u2a_set_reads_back_typed(tmp_path: Path) -> None:
    """Every user has fewer than min_positives positives: no question, typed columns."""
    from mspa_features.evaluation.datasets import U2ADataset, build_u2a

    ts = pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True)
    df = pd.DataFrame(
        {"user_id": ["u1", "u2"], "author_id": ["a1", "a2"], "event_timestamp": ts,
         "action": "rate", "value": 5.0, "label": [1, 1]}
    )  # fmt: skip
    ds = build_u2a(df, num_candidates=(4,), min_positives=3, all_author_ids=["a1", "a2"])
    assert ds.report["n_users_out"] == 0
    schema = pq.read_schema(ds.save(tmp_path))
    assert schema.field("user_id").type == pa.string()
    assert schema.field("history_author_ids").type == pa.list_(pa.string())
    assert schema.field("target_ts").type == TS
    assert schema.field("candidates_m4").type == pa.list_(pa.string())
    assert schema.field("answer_index_m4").type == pa.int64()
    assert len(U2ADataset.load(tmp_path).table) == 0
