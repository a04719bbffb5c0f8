"""Contracts: schemas carry the conventions every stage relies on; records round-trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from mspa_features.data.contracts import (
    AUTHOR_PROFILES,
    AUTHORS,
    INTERACTIONS,
    PREFERENCES,
    USERS,
    Author,
    Frame,
    Interaction,
    Preference,
    get_contract,
)


@pytest.mark.parametrize("contract", [AUTHORS, INTERACTIONS, USERS, PREFERENCES, AUTHOR_PROFILES])
def test_timestamps_are_utc_microseconds_and_ids_strings(contract):
    for name in contract.timestamps:
        typ = contract.schema.field(name).type
        assert typ == pa.timestamp("us", tz="UTC"), (contract.name, name, typ)
    for name in contract.schema.names:
        if name.endswith("_id"):
            assert contract.schema.field(name).type == pa.string()
    for key in contract.key:
        assert key in contract.required


def test_issue_fields_present():
    assert set(PREFERENCES.columns) >= {
        "user_id",
        "event_timestamp",
        "created_timestamp",
        "history_count",
        "history_last_ts",
        "pref_text",
        "pref_emb",
        "model_version",
        "prompt_hash",
    }
    assert set(AUTHOR_PROFILES.columns) >= {
        "author_id",
        "event_timestamp",
        "author_text",
        "author_emb",
        "model_version",
    }
    assert set(AUTHORS.columns) >= {
        "author_id",
        "event_timestamp",
        "profile_text",
        "location",
        "asr_text",
        "comments",
        "frames",
    }
    assert set(INTERACTIONS.columns) == {
        "user_id",
        "author_id",
        "event_timestamp",
        "action",
        "value",
        "label",
    }
    assert PREFERENCES.schema.field("pref_emb").type == pa.list_(pa.float32())


def test_author_record_round_trip_keeps_frames_and_attributes():
    ts = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    a = Author(
        author_id="a1",
        event_timestamp=ts,
        profile_text="singer",
        comments=["wow"],
        frames=[Frame(bytes=b"\x89PNG"), Frame(path="f/1.png")],
        attributes={"region": "north"},
    )
    table = AUTHORS.from_records([a])
    assert table.schema == AUTHORS.schema
    (back,) = AUTHORS.to_records(table)
    assert back == a


def test_interaction_and_preference_round_trip():
    ts = datetime(2026, 1, 1, tzinfo=UTC)
    i = Interaction(
        user_id="u", author_id="a", event_timestamp=ts, action="tip", value=2.5, label=1
    )
    assert INTERACTIONS.to_records(INTERACTIONS.from_records([i])) == [i]
    p = Preference(
        user_id="u",
        event_timestamp=ts,
        created_timestamp=ts,
        history_count=3,
        history_last_ts=None,
        pref_text="likes x",
        pref_emb=[0.5, 0.25],
        model_version="m",
        prompt_hash="h",
    )
    assert PREFERENCES.to_records(PREFERENCES.from_records([p])) == [p]


def test_get_contract_lists_valid_names():
    assert get_contract("users") is USERS
    with pytest.raises(KeyError, match="valid: .*interactions"):
        get_contract("nope")
