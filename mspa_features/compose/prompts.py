"""Versioned, hashed prompts (MSPA sections 3.1-3.2), the domain prompt sets, and how authors
are rendered into them.

A prompt's ``hash`` covers its name, version, full text and answer schema. It is written next to
every generated feature (``prompt_hash``) and is part of the composer cache key, so editing a
prompt can never silently mix old and new outputs.

A :class:`PromptSet` is the three prompts a composer uses (preference, author description,
recommendation) plus how an author is rendered into them. Built-in sets (:data:`PROMPT_SETS`):

* ``livestream``: the MSPA set for live-stream data: talent, environment (indoor/outdoor,
  lighting), region, style; authors rendered with location, ASR, comments and frames;
* ``catalogue``: for item catalogues such as MovieLens: genres, era, themes, audience (no
  lighting or region of a movie); items rendered from their profile text and attributes only.

Every built-in template puts its instructions (and the answer's JSON shape) first and the data
last (version 2; version 1 had the data first). Prompts of one kind then share the system and
instruction text as a token prefix, and a user's weekly snapshots share everything up to the
authors added since the week before, so the llama.cpp backend prefills that prefix once and
copies its KV cache (``LlamaCppOptions.prefix_share``): on the weekly-snapshot bench this cut
our CPU seconds by 28 % (10.6 s to 7.6 s for 16 snapshots, parse rate 100 % both; README,
Benchmarks). A user's own template gains the same by ending with its placeholder.

A user's own set is a YAML file (:func:`load_prompt_file`, schema :class:`PromptFile`), validated
at load; the run config picks a set by name or path (``composer.prompts``).
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from mspa_features.config_base import StrictModel
from mspa_features.data.contracts import Author
from mspa_features.errors import ConfigError, InputMismatchError, InvalidValueError
from mspa_features.generation.base import ChatMessage

LETTERS = string.ascii_uppercase

# Caps keep one noisy author (huge comment threads, long transcripts) from eating the budget.
MAX_FIELD_CHARS = 300
MAX_COMMENTS = 5
MAX_COMMENT_CHARS = 120

Domain = Literal["livestream", "catalogue"]


def keys_schema(keys: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of an answer made of the string fields ``keys``, all required."""
    return {
        "type": "object",
        "properties": {k: {"type": "string"} for k in keys},
        "required": list(keys),
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Prompt:
    """A system message plus a user template with ``{placeholders}``, and its answer schema.

    Attributes:
        answer_keys: the answer's string fields, in the order they are written back as text.
        schema_json: the answer's JSON schema (canonical JSON; empty: every key a required
            string). A generation backend constrains decoding to it; the recommendation's
            ``Answer`` is narrowed to the lettered candidates by the caller.
    """

    name: str
    version: str
    system: str
    template: str
    answer_keys: tuple[str, ...]
    schema_json: str = ""

    @property
    def answer_schema(self) -> dict[str, Any]:
        """The answer's JSON schema (a fresh dict each call)."""
        if self.schema_json:
            return json.loads(self.schema_json)
        return keys_schema(self.answer_keys)

    @property
    def hash(self) -> str:
        sep = "\x1f"  # a separator no prompt text contains
        schema = json.dumps(self.answer_schema, sort_keys=True)
        text = f"{self.name}{sep}{self.version}{sep}{self.system}{sep}{self.template}{sep}{schema}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def messages(self, images: Sequence[bytes] = (), **fields: str) -> list[ChatMessage]:
        return [
            ChatMessage("system", self.system),
            ChatMessage("user", self.template.format(**fields), tuple(images)),
        ]


PREFERENCE = Prompt(
    name="preference_extraction",
    version="2",
    system=(
        "You are an analyst of user preferences for author recommendation. You read the "
        "authors a user engaged with, oldest first, and describe what the user likes."
    ),
    template=(
        "Describe the user's preferences: author types (talent, appearance, genre), "
        "environment (indoor/outdoor, lighting), regional bias, and style. Answer with JSON "
        'only: {{"Author Types": "...", "Environment": "...", "Regional Bias": "...", '
        '"Style": "...", "Summary": "..."}}\n\n'
        "The user engaged with these authors, oldest first:\n{history}"
    ),
    answer_keys=("Author Types", "Environment", "Regional Bias", "Style", "Summary"),
)

AUTHOR = Prompt(
    name="author_description",
    version="2",
    system="You describe authors (creators) for a recommender system, briefly and concretely.",
    template=(
        "Describe this author: type (talent, genre), environment, region and style. Answer "
        'with JSON only: {{"Author Type": "...", "Environment": "...", "Region": "...", '
        '"Style": "...", "Description": "..."}}\n\nAuthor:\n{author}'
    ),
    answer_keys=("Author Type", "Environment", "Region", "Style", "Description"),
)

RECOMMEND = Prompt(
    name="recommendation",
    version="2",
    system=(
        "You recommend authors. Given a user's preferences and lettered candidate authors, "
        "pick the one the user will engage with and explain why it fits and the others do not."
    ),
    template=(
        'Answer with JSON only: {{"User Preference": "...", "Recommendation Reason": "...", '
        '"Answer": "<letter>"}}\n\n'
        "User preferences:\n{preference}\n\nCandidates:\n{candidates}"
    ),
    answer_keys=("User Preference", "Recommendation Reason", "Answer"),
)

PROMPTS = {p.name: p for p in (PREFERENCE, AUTHOR, RECOMMEND)}

# The catalogue set: items (movies, books, products) have genres, an era, themes and an
# audience; they have no lighting, no indoor/outdoor scene and no streamer's region.
CATALOGUE_PREFERENCE = Prompt(
    name="catalogue/preference_extraction",
    version="2",
    system=(
        "You are an analyst of user tastes for a catalogue recommender. You read the items a "
        "user liked, oldest first, and describe what the user likes."
    ),
    template=(
        "Describe the user's taste: favourite genres, preferred era, recurring themes, and the "
        'audience the items are made for. Answer with JSON only: {{"Genres": "...", '
        '"Era": "...", "Themes": "...", "Audience": "...", "Summary": "..."}}\n\n'
        "The user liked these items, oldest first:\n{history}"
    ),
    answer_keys=("Genres", "Era", "Themes", "Audience", "Summary"),
)

CATALOGUE_AUTHOR = Prompt(
    name="catalogue/item_description",
    version="2",
    system="You describe catalogue items for a recommender system, briefly and concretely.",
    template=(
        "Describe this item: genres, era, themes and audience. Answer with JSON only: "
        '{{"Genres": "...", "Era": "...", "Themes": "...", "Audience": "...", '
        '"Description": "..."}}\n\nItem:\n{author}'
    ),
    answer_keys=("Genres", "Era", "Themes", "Audience", "Description"),
)

CATALOGUE_RECOMMEND = Prompt(
    name="catalogue/recommendation",
    version="2",
    system=(
        "You recommend catalogue items. Given a user's taste and lettered candidate items, "
        "pick the one the user will like and explain why it fits and the others do not."
    ),
    template=(
        'Answer with JSON only: {{"User Preference": "...", "Recommendation Reason": "...", '
        '"Answer": "<letter>"}}\n\n'
        "User taste:\n{preference}\n\nCandidates:\n{candidates}"
    ),
    answer_keys=("User Preference", "Recommendation Reason", "Answer"),
)


def _clip(text: str | None, limit: int = MAX_FIELD_CHARS) -> str:
    if not text:
        return ""
    t = " ".join(text.split())
    return t if len(t) <= limit else t[: limit - 3] + "..."


def render_author(author: Author, *, with_frames: bool = False) -> str:
    """One author as prompt text: profile, location, ASR, a few comments, attributes.

    Frames are not text: with ``with_frames`` a placeholder line says how many images follow
    (a vision-language backend receives them as images of the same message).
    """
    parts = [f"Profile: {_clip(author.profile_text)}"]
    if author.location:
        parts.append(f"Location: {_clip(author.location, 60)}")
    if author.asr_text:
        parts.append(f"Says: {_clip(author.asr_text)}")
    comments = [_clip(c, MAX_COMMENT_CHARS) for c in author.comments[:MAX_COMMENTS] if c]
    if comments:
        parts.append("Comments: " + " | ".join(comments))
    if with_frames and author.frames:
        parts.append(f"Frames: {len(author.frames)} image(s)")
    return "; ".join(parts)


def render_candidates(authors: Sequence[str], *, image_counts: Sequence[int] | None = None) -> str:
    """Lettered candidate lines: ``A. <description>``.

    With ``image_counts`` (one per candidate) each line ends with ``; Frames: k image(s)``, as
    in :func:`render_author`; the images themselves travel beside the text, in letter order.
    The count is added after clipping so a long description cannot cut it off.
    """
    if len(authors) > len(LETTERS):
        raise InvalidValueError(
            "number of candidates", len(authors), f"at most {len(LETTERS)} (one letter each)"
        )
    lines = [f"{LETTERS[i]}. {_clip(a)}" for i, a in enumerate(authors)]
    if image_counts is not None:
        if len(image_counts) != len(authors):
            raise InputMismatchError(
                "must have one entry per candidate",
                {"image_counts": len(image_counts), "candidates": len(authors)},
            )
        lines = [
            f"{line}; Frames: {k} image(s)" for line, k in zip(lines, image_counts, strict=True)
        ]
    return "\n".join(lines)


def render_item(author: Author, *, with_frames: bool = False) -> str:
    """One catalogue item as prompt text: its profile text and the attributes it does not
    already spell out (genres, era from the release year).

    Location, ASR, comments and frames belong to live streams and are left out; ``with_frames``
    is accepted for the common signature and ignored.
    """
    del with_frames
    profile = _clip(author.profile_text)
    parts = [profile]
    attrs = []
    for k, v in sorted(author.attributes.items()):
        if not v:
            continue
        if k == "genres":
            v = ", ".join(g for g in v.split("|") if g)
        elif k == "release_year" and v.isdigit():
            k, v = "era", f"{v[:3]}0s"
        if v in profile:  # already said (MovieLens profiles spell out the genres): save tokens
            continue
        attrs.append(f"{k.replace('_', ' ')}: {_clip(v, 80)}")
    if attrs:
        parts.append("; ".join(attrs))
    return "; ".join(p for p in parts if p)


# --------------------------------------------------------------------------- prompt sets

#: The placeholders each prompt's template must use (and no others).
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "preference": frozenset({"history"}),
    "author": frozenset({"author"}),
    "recommend": frozenset({"preference", "candidates"}),
}
#: Fields the recommendation answer must hold: rewards and Acc@m read them.
RECOMMEND_KEYS = ("Recommendation Reason", "Answer")


@dataclass(frozen=True)
class PromptSet:
    """The prompts one composer uses and how authors are rendered into them.

    Attributes:
        name: ``livestream``, ``catalogue`` or the ``name`` of a user's prompt file.
        domain: how an author becomes text: ``livestream`` (:func:`render_author`: profile,
            location, ASR, comments, frame count) or ``catalogue`` (:func:`render_item`).
        source: where the set came from (``builtin`` or the file path).
    """

    name: str
    domain: Domain
    preference: Prompt
    author: Prompt
    recommend: Prompt
    source: str = "builtin"

    def render(self, author: Author, *, with_frames: bool = False) -> str:
        """``author`` as prompt text in this set's domain."""
        if self.domain == "catalogue":
            return render_item(author, with_frames=with_frames)
        return render_author(author, with_frames=with_frames)

    @property
    def hash(self) -> str:
        """One hash over the three prompts and the domain (for manifests and logs)."""
        text = f"{self.domain}|{self.preference.hash}|{self.author.hash}|{self.recommend.hash}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


LIVESTREAM = PromptSet(
    name="livestream",
    domain="livestream",
    preference=PREFERENCE,
    author=AUTHOR,
    recommend=RECOMMEND,
)
CATALOGUE = PromptSet(
    name="catalogue",
    domain="catalogue",
    preference=CATALOGUE_PREFERENCE,
    author=CATALOGUE_AUTHOR,
    recommend=CATALOGUE_RECOMMEND,
)
PROMPT_SETS: dict[str, PromptSet] = {s.name: s for s in (LIVESTREAM, CATALOGUE)}


class AnswerField(StrictModel):
    """One string field of an answer schema."""

    type: Literal["string"] = "string"
    description: str | None = None
    enum: list[str] | None = Field(None, min_length=1)


class AnswerSchema(StrictModel):
    """A JSON schema of an object of string fields (what every backend can constrain to)."""

    type: Literal["object"] = "object"
    properties: dict[str, AnswerField] = Field(min_length=1)
    required: list[str] | None = Field(
        None, description="required fields (default: every property)"
    )
    additionalProperties: Literal[False] = False

    @field_validator("required")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            repeated = sorted({k for k in v if v.count(k) > 1})
            raise InvalidValueError(
                "required", v, "distinct field names", hint=f"repeats {repeated}"
            )
        return v

    def keys(self) -> tuple[str, ...]:
        return tuple(self.properties)

    def to_json_schema(self) -> dict[str, Any]:
        props = {k: f.model_dump(exclude_none=True) for k, f in self.properties.items()}
        return {
            "type": "object",
            "properties": props,
            "required": list(self.required if self.required is not None else self.properties),
            "additionalProperties": False,
        }


class PromptSpec(StrictModel):
    """One prompt of a user's file: system message, user template, answer schema."""

    system: str = Field(min_length=1)
    template: str = Field(min_length=1)
    answer_schema: AnswerSchema


class PromptFile(StrictModel):
    """A user's prompt set (YAML). ``recommend`` defaults to the built-in of ``domain``."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: str = Field(min_length=1)
    domain: Domain = Field(description="how authors are rendered: livestream | catalogue")
    preference: PromptSpec
    author: PromptSpec
    recommend: PromptSpec | None = None


def _placeholders(template: str) -> set[str]:
    """The ``{field}`` names of a format template (raises ValueError when it is malformed)."""
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def _check_prompt(role: str, spec: PromptSpec) -> list[str]:
    problems = []
    try:
        found = _placeholders(spec.template)
    except ValueError as e:
        return [
            f"{role}.template: not a valid format string ({e}); write literal braces as {{{{ }}}}"
        ]
    want = PLACEHOLDERS[role]
    if found != want:
        problems.append(
            f"{role}.template: placeholders {sorted(found)}, expected exactly {sorted(want)}"
        )
    schema = spec.answer_schema
    unknown = [k for k in schema.required or () if k not in schema.properties]
    if unknown:
        problems.append(f"{role}.answer_schema.required: {unknown} not in properties")
    if role == "recommend":
        missing = [k for k in RECOMMEND_KEYS if k not in schema.properties]
        if missing:
            problems.append(
                f"recommend.answer_schema.properties: lacks {missing} (rewards and Acc@m read them)"
            )
    return problems


def _prompt(set_name: str, role: str, version: str, spec: PromptSpec) -> Prompt:
    return Prompt(
        name=f"{set_name}/{role}",
        version=version,
        system=spec.system,
        template=spec.template,
        answer_keys=spec.answer_schema.keys(),
        schema_json=json.dumps(spec.answer_schema.to_json_schema(), sort_keys=True),
    )


def load_prompt_file(path: str | Path) -> PromptSet:
    """Load and validate a user's prompt set from YAML.

    The file holds ``name``, ``version``, ``domain`` and ``preference``/``author`` (and
    optionally ``recommend``) prompts, each with ``system``, ``template`` and
    ``answer_schema`` (a JSON schema of an object of string fields). Templates must use
    exactly their placeholders: ``{history}`` (preference), ``{author}`` (author),
    ``{preference}`` and ``{candidates}`` (recommend); literal braces are doubled.

    Raises:
        ConfigError: naming the file and each offending field.
    """
    from mspa_features.config_base import load_yaml_model

    p = Path(path)
    spec = load_yaml_model(p, PromptFile)
    problems: list[str] = []
    for role in ("preference", "author", "recommend"):
        s = getattr(spec, role)
        if s is not None:
            problems += _check_prompt(role, s)
    if problems:
        raise ConfigError(p, problems)
    base = PROMPT_SETS[spec.domain]
    return PromptSet(
        name=spec.name,
        domain=spec.domain,
        preference=_prompt(spec.name, "preference", spec.version, spec.preference),
        author=_prompt(spec.name, "author", spec.version, spec.author),
        recommend=(
            _prompt(spec.name, "recommend", spec.version, spec.recommend)
            if spec.recommend is not None
            else base.recommend
        ),
        source=str(p),
    )


def get_prompt_set(ref: str | Path, *, base_dir: str | Path | None = None) -> PromptSet:
    """A built-in set by name (:data:`PROMPT_SETS`) or a user's YAML file by path.

    Args:
        ref: ``livestream``, ``catalogue`` or a path (``.yaml``/``.yml``); a relative path is
            resolved against ``base_dir`` (the run config's folder) when given.

    Raises:
        ConfigError: an unknown name (valid names listed) or an invalid file.
    """
    key = str(ref)
    if key in PROMPT_SETS:
        return PROMPT_SETS[key]
    if not key.endswith((".yaml", ".yml")):
        raise ConfigError(
            "composer.prompts",
            [f"unknown prompt set {key!r}; valid: {sorted(PROMPT_SETS)} or a .yaml file"],
        )
    p = Path(key)
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return load_prompt_file(p)


__all__ = [
    "AUTHOR",
    "CATALOGUE",
    "LIVESTREAM",
    "PREFERENCE",
    "PROMPT_SETS",
    "RECOMMEND",
    "Prompt",
    "PromptFile",
    "PromptSet",
    "get_prompt_set",
    "keys_schema",
    "load_prompt_file",
    "render_author",
    "render_candidates",
    "render_item",
]
