"""Versioned, hashed prompts (MSPA sections 3.1-3.2) and how authors are rendered into them.

A prompt's ``hash`` covers its name, version and full text. It is written next to every
generated feature (``prompt_hash``) and is part of the composer cache key, so editing a prompt
can never silently mix old and new outputs.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass

from mspa_features.contracts import Author
from mspa_features.generation.base import ChatMessage

LETTERS = string.ascii_uppercase

# Caps keep one noisy author (huge comment threads, long transcripts) from eating the budget.
MAX_FIELD_CHARS = 300
MAX_COMMENTS = 5
MAX_COMMENT_CHARS = 120


@dataclass(frozen=True)
class Prompt:
    """A system message plus a user template with ``{placeholders}``."""

    name: str
    version: str
    system: str
    template: str
    answer_keys: tuple[str, ...]

    @property
    def hash(self) -> str:
        sep = "\x1f"  # a separator no prompt text contains
        text = f"{self.name}{sep}{self.version}{sep}{self.system}{sep}{self.template}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def messages(self, images: Sequence[bytes] = (), **fields: str) -> list[ChatMessage]:
        return [
            ChatMessage("system", self.system),
            ChatMessage("user", self.template.format(**fields), tuple(images)),
        ]


PREFERENCE = Prompt(
    name="preference_extraction",
    version="1",
    system=(
        "You are an analyst of user preferences for author recommendation. You read the "
        "authors a user engaged with, oldest first, and describe what the user likes."
    ),
    template=(
        "The user engaged with these authors, oldest first:\n{history}\n\n"
        "Describe the user's preferences: author types (talent, appearance, genre), "
        "environment (indoor/outdoor, lighting), regional bias, and style. Answer with JSON "
        'only: {{"Author Types": "...", "Environment": "...", "Regional Bias": "...", '
        '"Style": "...", "Summary": "..."}}'
    ),
    answer_keys=("Author Types", "Environment", "Regional Bias", "Style", "Summary"),
)

AUTHOR = Prompt(
    name="author_description",
    version="1",
    system="You describe authors (creators) for a recommender system, briefly and concretely.",
    template=(
        "Author:\n{author}\n\nDescribe this author: type (talent, genre), environment, "
        'region and style. Answer with JSON only: {{"Author Type": "...", "Environment": "...", '
        '"Region": "...", "Style": "...", "Description": "..."}}'
    ),
    answer_keys=("Author Type", "Environment", "Region", "Style", "Description"),
)

RECOMMEND = Prompt(
    name="recommendation",
    version="1",
    system=(
        "You recommend authors. Given a user's preferences and lettered candidate authors, "
        "pick the one the user will engage with and explain why it fits and the others do not."
    ),
    template=(
        "User preferences:\n{preference}\n\nCandidates:\n{candidates}\n\n"
        'Answer with JSON only: {{"User Preference": "...", "Recommendation Reason": "...", '
        '"Answer": "<letter>"}}'
    ),
    answer_keys=("User Preference", "Recommendation Reason", "Answer"),
)

PROMPTS = {p.name: p for p in (PREFERENCE, AUTHOR, RECOMMEND)}


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
        raise ValueError(f"at most {len(LETTERS)} candidates can be lettered, got {len(authors)}")
    lines = [f"{LETTERS[i]}. {_clip(a)}" for i, a in enumerate(authors)]
    if image_counts is not None:
        if len(image_counts) != len(authors):
            raise ValueError(f"{len(image_counts)} image counts for {len(authors)} candidates")
        lines = [
            f"{line}; Frames: {k} image(s)" for line, k in zip(lines, image_counts, strict=True)
        ]
    return "\n".join(lines)
