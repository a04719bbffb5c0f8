"""Domain prompt sets and a user's own prompt file: validated at load, versioned and hashed."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from mspa_features.compose.prompts import (
    CATALOGUE,
    LIVESTREAM,
    PREFERENCE,
    PROMPT_SETS,
    get_prompt_set,
    load_prompt_file,
)
from mspa_features.config import load_config
from mspa_features.data.contracts import Author, Frame
from mspa_features.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

MOVIE = Author(
    author_id="1",
    event_timestamp=datetime(1997, 9, 20, tzinfo=UTC),
    profile_text="Toy Story (1995). Genres: Animation, Children's, Comedy.",
    location="somewhere",
    asr_text="a transcript",
    comments=["nice"],
    frames=[Frame(bytes=b"x")],
    attributes={"genres": "Animation|Children's|Comedy", "release_year": "1995"},
)

GOOD = {
    "name": "books",
    "version": "3",
    "domain": "catalogue",
    "preference": {
        "system": "You analyse readers.",
        "template": 'Books read:\n{history}\nJSON only: {{"Authors": "...", "Summary": "..."}}',
        "answer_schema": {
            "type": "object",
            "properties": {"Authors": {"type": "string"}, "Summary": {"type": "string"}},
        },
    },
    "author": {
        "system": "You describe books.",
        "template": 'Book:\n{author}\nJSON only: {{"Description": "..."}}',
        "answer_schema": {"properties": {"Description": {"type": "string"}}},
    },
}


def _write(tmp_path: Path, data: dict, name: str = "mine.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_builtin_sets_differ_by_domain_and_keep_the_mspa_livestream_prompts():
    assert set(PROMPT_SETS) == {"livestream", "catalogue"}
    assert LIVESTREAM.preference is PREFERENCE
    cat = CATALOGUE.preference.template + CATALOGUE.author.template
    assert "Genres" in cat and "Era" in cat and "Themes" in cat and "Audience" in cat
    # A movie has no lighting, scene or streamer's region.
    for word in ("lighting", "indoor", "Region"):
        assert word not in cat
    assert CATALOGUE.preference.hash != PREFERENCE.hash
    # Catalogue items are rendered from profile + attributes only (no location/ASR/comments).
    item = CATALOGUE.render(MOVIE, with_frames=True)
    assert item == "Toy Story (1995). Genres: Animation, Children's, Comedy.; era: 1990s"
    live = LIVESTREAM.render(MOVIE, with_frames=True)
    assert "Location: somewhere" in live and "Says: a transcript" in live
    assert "Frames: 1 image(s)" in live


def test_answer_schema_is_every_key_a_required_string_and_part_of_the_hash():
    s = PREFERENCE.answer_schema
    assert s["required"] == list(PREFERENCE.answer_keys)
    assert s["properties"]["Summary"] == {"type": "string"}
    assert s["additionalProperties"] is False
    other = dataclasses.replace(PREFERENCE, schema_json='{"type": "object"}')
    assert other.hash != PREFERENCE.hash


def test_user_prompt_file_loads_versioned_and_hashed(tmp_path):
    ps = load_prompt_file(_write(tmp_path, GOOD))
    assert ps.name == "books" and ps.domain == "catalogue" and ps.source.endswith("mine.yaml")
    assert ps.preference.name == "books/preference" and ps.preference.version == "3"
    assert ps.preference.answer_keys == ("Authors", "Summary")
    assert ps.author.answer_schema["required"] == ["Description"]
    # recommend falls back to the domain's built-in (rewards read its Answer field)
    assert ps.recommend is CATALOGUE.recommend
    msgs = ps.preference.messages(history="1. Dune")
    assert (
        msgs[1].content == 'Books read:\n1. Dune\nJSON only: {"Authors": "...", "Summary": "..."}'
    )
    bumped = _write(tmp_path, {**GOOD, "version": "4"}, "v4.yaml")
    assert load_prompt_file(bumped).preference.hash != ps.preference.hash
    assert load_prompt_file(bumped).hash != ps.hash


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"domain": "podcast"}, "domain: Input should be 'livestream' or 'catalogue'"),
        ({"preference": None}, "preference: Input should be a valid dictionary"),
        (
            {"author": {**GOOD["author"], "template": "Book: {item}"}},
            "author.template: placeholders ['item'], expected exactly ['author']",
        ),
        (
            {"author": {**GOOD["author"], "template": 'JSON {"a": 1} {author}'}},
            "author.template: placeholders",
        ),
        (
            {"author": {**GOOD["author"], "answer_schema": {"properties": {}}}},
            "author.answer_schema.properties: Dictionary should have at least 1 item",
        ),
        (
            {"author": {**GOOD["author"], "answer_schema": {"properties": {"D": {"type": "int"}}}}},
            "author.answer_schema.properties.D.type: Input should be 'string'",
        ),
        (
            {
                "author": {
                    **GOOD["author"],
                    "answer_schema": {"properties": {"D": {}}, "required": ["E"]},
                }
            },
            "author.answer_schema.required: ['E'] not in properties",
        ),
        (
            {"recommend": {**GOOD["author"], "template": "{preference} {candidates}"}},
            "recommend.answer_schema.properties: lacks ['Recommendation Reason', 'Answer']",
        ),
    ],
)
def test_prompt_file_errors_name_the_file_and_field(tmp_path, edit, expected):
    p = _write(tmp_path, {**GOOD, **edit}, "bad.yaml")
    with pytest.raises(ConfigError) as e:
        load_prompt_file(p)
    assert e.value.path.endswith("bad.yaml")
    assert any(expected in problem for problem in e.value.problems), e.value.problems


def test_run_config_picks_a_set_by_name_or_file(tmp_path):
    assert load_config(REPO / "configs/movielens.yaml").composer.prompts == "catalogue"
    assert load_config(REPO / "configs/synthetic.yaml").composer.prompts == "livestream"
    _write(tmp_path, GOOD, "books.yaml")
    run = {"name": "x", "data": {"source": "movielens"}, "composer": {"prompts": "books.yaml"}}
    cfg = load_config(_write(tmp_path, run, "run.yaml"))
    assert cfg.composer.prompts == str((tmp_path / "books.yaml").resolve())
    assert get_prompt_set(cfg.composer.prompts).name == "books"

    run["composer"]["prompts"] = "podcasts"
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, run, "run2.yaml"))
    assert e.value.path.endswith("run2.yaml") and "unknown prompt set 'podcasts'" in str(e.value)

    _write(tmp_path, {**GOOD, "version": ""}, "broken.yaml")
    run["composer"]["prompts"] = "broken.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(_write(tmp_path, run, "run3.yaml"))
    assert e.value.path.endswith("broken.yaml") and "version" in str(e.value)
