"""Structured outputs without a model: schemas, the vLLM/TRL regex, per-conversation seeds, the
seeded row sampler, and what the composer and the Acc@m evaluation hand the backend."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel, Field

from mspa_features.compose.prompts import PREFERENCE, RECOMMEND
from mspa_features.errors import MspaError, SchemaConstraintError
from mspa_features.generation.base import (
    BackendConfig,
    Generation,
    GenerationBackend,
    GenerationConfig,
    sequence_seed,
)
from mspa_features.generation.structured import (
    bound_strings,
    check_schema,
    conforms,
    letter_schema,
    max_answer_chars,
    schema_key,
    schema_regex,
    schemas_for,
    to_json_schema,
)

REC = RECOMMEND.answer_schema


class Pref(BaseModel):
    genres: str = Field(alias="Genres", max_length=40)
    era: str = Field(alias="Era")


# ----------------------------------------------------------------------------- schemas


def test_pydantic_model_and_dict_give_the_same_kind_of_schema() -> None:
    s = to_json_schema(Pref)
    assert s["type"] == "object" and list(s["properties"]) == ["Genres", "Era"]
    assert s["properties"]["Genres"]["maxLength"] == 40
    d = to_json_schema(REC)
    assert d == REC and d is not REC  # a copy: narrowing never edits the prompt's schema


@pytest.mark.parametrize(
    "bad", [{"type": "string"}, {"type": "object"}, ["not", "a", "schema"], 42, None]
)
def test_non_object_schemas_are_refused(bad: Any) -> None:
    with pytest.raises(SchemaConstraintError) as e:
        to_json_schema(bad)
    assert isinstance(e.value, MspaError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("m", [2, 4, 10, 26])
def test_letter_schema_is_an_enum_of_exactly_the_candidates(m: int) -> None:
    s = letter_schema(REC, m)
    letters = s["properties"]["Answer"]["enum"]
    assert letters == [chr(ord("A") + i) for i in range(m)]
    assert list(s["properties"]) == list(REC["properties"])  # order kept: reason before answer
    assert "enum" not in REC["properties"]["Answer"]  # the prompt's schema is untouched


def test_letter_schema_errors_name_the_problem() -> None:
    with pytest.raises(SchemaConstraintError, match="no 'Answer' property"):
        letter_schema(PREFERENCE.answer_schema, 4)
    with pytest.raises(SchemaConstraintError, match="1..26"):
        letter_schema(REC, 27)


@pytest.mark.parametrize("max_new", [24, 48, 96, 256])
def test_bound_strings_fits_the_answer_in_the_token_budget(max_new: int) -> None:
    s = bound_strings(letter_schema(REC, 4), max_new)
    props = s["properties"]
    assert props["Answer"] == {"type": "string", "enum": ["A", "B", "C", "D"]}  # untouched
    bounds = [props[k]["maxLength"] for k in ("User Preference", "Recommendation Reason")]
    assert len(set(bounds)) == 1 and bounds[0] >= 16
    # With the default 3 chars/token, a longest answer takes at most ~max_new tokens of
    # SmolLM2-like text (>= 3 chars per token) once the floor is not binding.
    longest = {"User Preference": "x" * bounds[0], "Recommendation Reason": "y" * bounds[0]}
    longest["Answer"] = "D"
    if bounds[0] > 16:
        assert len(json.dumps(longest)) <= 3 * max_new + 2
    assert max_answer_chars(s) >= len(json.dumps(longest))
    assert max_answer_chars(REC) is None  # unbounded strings: no bound
    with pytest.raises(SchemaConstraintError):
        bound_strings(REC, 0)


def test_bounded_answers_cannot_pass_the_schema_with_an_empty_required_value() -> None:
    """The parser counts an empty required value as missing (a failed answer), so the schema
    every backend decodes under must refuse it: a constrained answer once came back
    `"User Preference": ""` and failed although decoding was constrained."""
    from mspa_features.compose.parsing import parse_answer

    s = bound_strings(letter_schema(REC, 4), 48)
    empty = {"User Preference": "", "Recommendation Reason": "fits", "Answer": "B"}
    full = {**empty, "User Preference": "likes jazz"}
    assert parse_answer(json.dumps(empty), RECOMMEND.answer_keys).status == "failed"
    assert not conforms(json.dumps(empty), s)
    assert conforms(json.dumps(full), s)
    assert s["properties"]["User Preference"]["minLength"] == 1
    assert "minLength" not in s["properties"]["Answer"]  # an enum bounds itself
    # a string the caller bounded keeps its bounds; an optional one may stay empty
    own = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "minLength": 0},
            "b": {"type": "string", "pattern": "^x*$"},
            "c": {"type": "string"},
        },
        "required": ["a", "b"],
    }
    props = bound_strings(own, 48)["properties"]
    assert props["a"]["minLength"] == 0 and "minLength" not in props["b"]
    assert "minLength" not in props["c"]


def test_schema_key_is_canonical_and_keeps_property_order() -> None:
    a = {"type": "object", "properties": {"x": {"type": "string"}, "y": {"type": "string"}}}
    b = {"properties": {"x": {"type": "string"}, "y": {"type": "string"}}, "type": "object"}
    c = {"type": "object", "properties": {"y": {"type": "string"}, "x": {"type": "string"}}}
    assert schema_key(a) == schema_key(dict(a))
    assert schema_key(c) != schema_key(a)  # the answer's key order is part of the grammar
    assert json.loads(schema_key(b)) == b


def test_schemas_for_broadcasts_and_checks_length() -> None:
    assert schemas_for(None, 3) == [None, None, None]
    one = schemas_for(REC, 2)
    assert one[0] == REC and one[1] == REC
    mixed = schemas_for([REC, None, letter_schema(REC, 4)], 3)
    assert mixed[1] is None and mixed[2]["properties"]["Answer"]["enum"] == list("ABCD")
    with pytest.raises(SchemaConstraintError, match="2 schemas for 3 conversations"):
        schemas_for([REC, REC], 3)


# ----------------------------------------------------------------------------- regex / vLLM


def _answer(pref: str = "likes jazz", reason: str = "a jazz club", letter: str = "B") -> str:
    return json.dumps(
        {"User Preference": pref, "Recommendation Reason": reason, "Answer": letter},
        ensure_ascii=False,
    )


def test_schema_regex_matches_exactly_the_schema_answers() -> None:
    schema = bound_strings(letter_schema(REC, 4), 48)
    limit = schema["properties"]["Recommendation Reason"]["maxLength"]
    rx = re.compile(schema_regex(schema))
    good = [
        _answer(),
        _answer(letter="D"),
        _answer(pref='quotes "escaped"', reason="tab\tand unicode é"),
        _answer(reason="r" * limit),
    ]
    for text in good:
        assert rx.fullmatch(text), text
        assert conforms(text, schema)
    bad = [
        _answer(letter="E"),  # not a candidate
        _answer(letter="I think B"),
        _answer(pref=""),  # an empty required value: the parser would count it missing
        _answer(reason="r" * (limit + 1)),  # too long
        _answer().replace(", ", ","),  # not json.dumps layout
        '{"Answer": "B", "User Preference": "x", "Recommendation Reason": "y"}',  # order
        _answer() + " trailing",
        '{"User Preference": "x", "Recommendation Reason": "y"}',  # missing Answer
    ]
    for text in bad:
        assert not rx.fullmatch(text), text


def test_schema_regex_refuses_what_it_cannot_express() -> None:
    nested = {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}}
    with pytest.raises(SchemaConstraintError, match="string properties only"):
        schema_regex(nested)
    optional = {"type": "object", "properties": {"a": {"type": "string"}}, "required": []}
    with pytest.raises(SchemaConstraintError, match="optional"):
        schema_regex(optional)


def test_check_schema_compiles_or_names_the_problem() -> None:
    assert check_schema(letter_schema(REC, 10))["properties"]["Answer"]["enum"][-1] == "J"
    with pytest.raises(SchemaConstraintError, match="unclosed group"):
        check_schema({"type": "object", "properties": {"a": {"type": "string", "pattern": "(("}}})
    with pytest.raises(SchemaConstraintError, match="strin"):
        check_schema({"type": "object", "properties": {"a": {"type": "strin"}}})


def test_conforms_checks_each_rule() -> None:
    s = bound_strings(letter_schema(REC, 4), 48)
    assert conforms(_answer(), s)
    assert not conforms(_answer()[:-1], s)  # cut off
    assert not conforms("[1, 2]", s)
    assert not conforms(json.dumps({"User Preference": "x", "Answer": "A"}), s)  # missing
    extra = json.loads(_answer())
    extra["More"] = "x"
    assert not conforms(json.dumps(extra), s)  # additionalProperties: false
    assert not conforms(json.dumps({**json.loads(_answer()), "Answer": 1}), s)


# ----------------------------------------------------------------------------- seeds


def test_sequence_seeds_differ_per_position_and_per_call_seed() -> None:
    seeds = {sequence_seed(s, i) for s in range(5) for i in range(200)}
    assert len(seeds) == 1000  # no collisions: calls seeded 0 and 1 share no streams
    assert all(0 <= x < 2**31 for x in seeds)
    assert sequence_seed(7, 3) == sequence_seed(7, 3)  # deterministic
    assert sequence_seed(0, 1) != sequence_seed(1, 0)


def test_seeded_sampler_rows_depend_only_on_their_own_seed() -> None:
    torch = pytest.importorskip("torch")
    from mspa_features.generation.structured import SeededSampler

    torch.manual_seed(0)
    logits = torch.randn(1, 50).repeat(4, 1)  # four identical rows: (4, 50)

    def draw(seeds: Sequence[int], steps: int = 12) -> list[list[int]]:
        sampler = SeededSampler(seeds, temperature=1.0, top_p=1.0)
        out = [[] for _ in seeds]
        for _ in range(steps):
            scores = sampler(None, logits[: len(seeds)].clone())
            assert (scores == 0).sum(dim=1).tolist() == [1] * len(seeds)  # one token left
            for i, tok in enumerate(scores.argmax(dim=1).tolist()):
                out[i].append(tok)
        return out

    seeds = [sequence_seed(0, i) for i in range(4)]
    together = draw(seeds)
    assert len({tuple(r) for r in together}) == 4  # same logits, distinct seeds: distinct draws
    assert draw(seeds[2:3])[0] == together[2]  # alone or batched: the same draws
    assert draw(seeds) == together
    torch.manual_seed(123)  # the global RNG plays no part
    assert draw(seeds) == together


def test_seeded_sampler_top_p_keeps_the_nucleus() -> None:
    torch = pytest.importorskip("torch")
    from mspa_features.generation.structured import SeededSampler

    logits = torch.tensor([[5.0, 4.0, -10.0, -10.0, -10.0]])
    sampler = SeededSampler([sequence_seed(0, 0)], temperature=1.0, top_p=0.5)
    picks = {int(sampler(None, logits.clone()).argmax()) for _ in range(50)}
    assert picks == {0}  # token 0 alone holds > 50% of the mass
    with pytest.raises(ValueError, match="temperature > 0"):
        SeededSampler([0], temperature=0.0, top_p=1.0)


# ----------------------------------------------------------------------------- callers


class _Recorder(GenerationBackend):
    """Answers every conversation with canned text; records the schemas it was handed."""

    name = "recorder"
    supports_schema = True

    def __init__(self, answers: Sequence[str], *, supports_schema: bool = True):
        super().__init__(BackendConfig())
        self.answers = list(answers)
        self.supports_schema = supports_schema
        self.schemas: list[Any] = []
        self.caps: list[int] = []  # max_new_tokens of each call

    @property
    def model_version(self) -> str:
        return "recorder"

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, conversations, cfg, *, schema=None) -> list[Generation]:  # type: ignore[override]
        self.schemas.append(schema)
        self.caps.append(cfg.max_new_tokens)
        given = schemas_for(schema, len(conversations))
        return [
            Generation(self.answers[i % len(self.answers)], 5, 5, "stop", s is not None)
            for i, s in enumerate(given)
        ]


def test_composer_hands_the_bounded_prompt_schema_only_when_structured() -> None:
    from datetime import UTC, datetime

    from mspa_features.compose.composer import LLMComposer, UserHistory
    from mspa_features.data.contracts import Author

    ts = datetime(2026, 1, 1, tzinfo=UTC)
    author = Author(author_id="a1", event_timestamp=ts, profile_text="jazz singer")
    hist = UserHistory("u1", ts, (author,), 1, ts)
    text = json.dumps({k: "x" for k in PREFERENCE.answer_keys})

    backend = _Recorder([text])
    comp = LLMComposer(backend, gen=GenerationConfig(max_new_tokens=96), structured=True)
    (row,) = comp.compose_preferences([hist])
    (schema,) = backend.schemas
    assert schema == bound_strings(PREFERENCE.answer_schema, 96)
    assert row.status == "ok" and row.decoding == "constrained"

    free = _Recorder([text])
    (row,) = LLMComposer(free, structured=False).compose_preferences([hist])
    assert free.schemas == [None] and row.decoding == "free"
    unable = _Recorder([text], supports_schema=False)
    (row,) = LLMComposer(unable, structured=True).compose_preferences([hist])
    assert unable.schemas == [None] and row.decoding == "free"


def test_constrained_composer_answers_get_headroom_beyond_their_bounded_strings() -> None:
    # The strings are bounded for max_new_tokens; the backend gets twice the tokens, so runs of
    # short tokens still reach the closing brace (an answer cut before its last key fails).
    from datetime import UTC, datetime

    from mspa_features.compose.composer import CONSTRAINED_HEADROOM, LLMComposer, UserHistory
    from mspa_features.data.contracts import Author

    ts = datetime(2026, 1, 1, tzinfo=UTC)
    author = Author(author_id="a1", event_timestamp=ts, profile_text="jazz singer")
    hist = UserHistory("u1", ts, (author,), 1, ts)
    text = json.dumps({k: "x" for k in PREFERENCE.answer_keys})
    gen = GenerationConfig(max_new_tokens=96)
    constrained, free = _Recorder([text]), _Recorder([text])
    comp = LLMComposer(constrained, gen=gen, structured=True)
    comp.compose_preferences([hist])
    LLMComposer(free, gen=gen, structured=False).compose_preferences([hist])
    assert CONSTRAINED_HEADROOM >= 2
    assert constrained.caps == [CONSTRAINED_HEADROOM * 96] and free.caps == [96]
    assert constrained.schemas == [bound_strings(PREFERENCE.answer_schema, 96)]
    # the cache key names the headroom: an answer cut under the old cap is composed again
    old = LLMComposer(constrained, gen=gen, structured=False)
    assert comp._gen_key(PREFERENCE, "h", []) != old._gen_key(PREFERENCE, "h", [])


def test_acc_at_m_constrains_each_question_to_its_own_letters() -> None:
    from mspa_features.compose.composer import CONSTRAINED_HEADROOM
    from mspa_features.compose.parsing import ParseStats
    from mspa_features.evaluation.composer_eval import recommend_letters

    backend = _Recorder([_answer(letter="B")])
    cands = [["a", "b", "c", "d"], ["a", "b"], ["a", "b", "c", "d"]]
    answers: list[dict[str, Any]] = []
    gen = GenerationConfig(max_new_tokens=48, temperature=0.7)
    picks = recommend_letters(
        backend, ["p"] * 3, cands, gen, ParseStats(), answers=answers, constrained=True
    )
    assert picks == [1, 1, 1]
    # the same headroom as the composer: strings bounded for 48 tokens, 2x the tokens to decode
    assert backend.caps == [CONSTRAINED_HEADROOM * 48]
    (schemas,) = backend.schemas
    assert [s["properties"]["Answer"]["enum"] for s in schemas] == [list("ABCD"), ["A", "B"]] + [
        list("ABCD")
    ]
    assert all(s["properties"]["User Preference"]["maxLength"] >= 16 for s in schemas)
    assert [a["decoding"] for a in answers] == ["constrained"] * 3
    free = _Recorder([_answer(letter="I think B")])
    assert recommend_letters(free, ["p"], [["a", "b"]], gen, ParseStats()) == [-1]
    assert free.schemas == [None]


def test_generate_keyword_is_part_of_every_shipped_backend() -> None:
    import inspect

    from mspa_features.generation.hf import TransformersBackend
    from mspa_features.generation.llamacpp import LlamaCppBackend
    from mspa_features.generation.vllm_backend import VLLMBackend
    from mspa_features.generation.vlm import QwenVLBackend

    for cls in (TransformersBackend, LlamaCppBackend, VLLMBackend, QwenVLBackend):
        assert cls.supports_schema, cls
        params = inspect.signature(cls.generate).parameters
        assert params["schema"].kind is inspect.Parameter.KEYWORD_ONLY, cls
