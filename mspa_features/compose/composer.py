"""The Multimodal Preference Composer (MSPA section 3.1).

A user's positive-interaction history (distinct authors, oldest first, strictly before the
as-of instant: :mod:`mspa_features.snapshots.history`) becomes a structured preference text and
an embedding; each author becomes a description text and an embedding in the same space.

Two composers share one interface:

* :class:`LLMComposer`: an (M)LLM backend writes the texts (frames go along as images when the
  backend is vision-language); outputs are cached by content;
* :class:`TemplateComposer`: a deterministic structured summary of the history's attributes,
  no LLM. It is the baseline every ablation compares the LLM against.

Histories longer than the token budget keep the newest authors (the oldest are dropped first).
Bad inputs never crash a batch: an empty history or an author with neither text nor frames
gets a ``skipped`` result with the reason, which the caller writes to quarantine.
"""

from __future__ import annotations

import dataclasses
import io
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mspa_features.compose.cache import ComposerCache, content_key
from mspa_features.compose.parsing import ParseStats, parse_answer
from mspa_features.compose.prompts import LIVESTREAM, Prompt, PromptSet, render_author
from mspa_features.data.contracts import Author
from mspa_features.generation.base import GenerationBackend, GenerationConfig
from mspa_features.generation.structured import schema_key

# The history rule lives with the other point-in-time rules (mspa_features.snapshots.history);
# both names stay importable from here for callers of 0.1.
from mspa_features.snapshots.history import UserHistory, build_histories  # noqa: F401

TEMPLATE_VERSION = "template-v2"  # v2: author text no longer repeats "Profile:"

# Small models answer the JSON and then keep talking; stopping at the first "}" + newline saves
# most of the generated tokens. The brace is restored before parsing (see close_json).
JSON_STOP = ("}\n",)


# Constrained answers decode with this many times ``max_new_tokens``: the strings are bounded
# for ``max_new_tokens`` at ~3 characters a token (``bound_strings``), but runs of short tokens
# (years, digits, a word repeated in pieces: "Horror, Horr, Horr") take more, and an answer cut
# before its last key fails to parse (1 of 69 sampled preference snapshots on MovieLens). Answers
# that fit end where they did: the grammar closes them.
CONSTRAINED_HEADROOM = 2


def with_headroom(gen: GenerationConfig) -> GenerationConfig:
    """``gen`` with :data:`CONSTRAINED_HEADROOM` times ``max_new_tokens``, for constrained
    decoding: the schema's strings are bounded (``bound_strings``) for ``gen.max_new_tokens`` at
    ~3 characters a token, but titles, years and one-character tokens run longer, and an answer
    cut before its last key loses it. With the headroom, the grammar, not the cap, ends it."""
    return dataclasses.replace(gen, max_new_tokens=CONSTRAINED_HEADROOM * gen.max_new_tokens)


def close_json(text: str, finish_reason: str) -> str:
    """Restore the closing brace a ``JSON_STOP`` cut removed."""
    if finish_reason == "stop" and text.count("{") > text.count("}"):
        return text + "}"
    return text


#: ``Composed.decoding`` values: schema-constrained LLM decoding, free-form LLM decoding, or
#: no LLM at all (the template composer).
DECODINGS = ("constrained", "free", "none")


@dataclass(frozen=True)
class Composed:
    """One composed text. ``status`` is ``ok``/``repaired``/``failed`` (parse of the model's
    JSON; ``failed`` keeps the raw text as a documented fallback) or ``skipped`` (no input;
    ``reason`` says why, and the row goes to quarantine). ``decoding`` is one of
    :data:`DECODINGS`; the status and decoding are written with every feature row
    (``pref_status``/``pref_decoding``, ``author_status``/``author_decoding``)."""

    text: str
    status: str
    reason: str | None = None
    n_authors_used: int = 0
    cached: bool = False
    decoding: str = "none"


@dataclass
class ComposeStats:
    parse: ParseStats = field(default_factory=ParseStats)
    skipped: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    generated: int = 0
    generated_tokens: int = 0
    frames_used: int = 0
    frames_dropped: Counter[str] = field(default_factory=Counter)

    def frames_dict(self) -> dict[str, object]:
        """``{"used": n, "dropped": {reason: n}}`` for run outputs."""
        return {"used": self.frames_used, "dropped": dict(self.frames_dropped)}


def format_fields(data: dict[str, str], keys: Sequence[str]) -> str:
    """``Key: value; ...`` in the prompt's key order, then any extra keys the model added."""
    ordered = [k for k in keys if data.get(k)] + [k for k in data if k not in keys and data[k]]
    return "; ".join(f"{k}: {data[k]}" for k in ordered)


def _has_content(a: Author) -> bool:
    return bool((a.profile_text or "").strip() or (a.asr_text or "").strip() or a.frames)


class Composer(ABC):
    """Histories -> preference texts; authors -> description texts."""

    @property
    @abstractmethod
    def model_version(self) -> str: ...

    @property
    @abstractmethod
    def preference_prompt_hash(self) -> str: ...

    @property
    @abstractmethod
    def author_prompt_hash(self) -> str: ...

    @abstractmethod
    def compose_preferences(self, histories: Sequence[UserHistory]) -> list[Composed]: ...

    @abstractmethod
    def describe_authors(self, authors: Sequence[Author]) -> list[Composed]: ...


# --------------------------------------------------------------------------- template

# attribute key -> section of the structured summary
_SECTIONS = {
    "category": "Author Types",
    "genres": "Author Types",
    "scene": "Environment",
    "lighting": "Environment",
    "region": "Regional Bias",
    "style": "Style",
    "release_year": "Era",
}


def _attr_values(a: Author) -> list[tuple[str, str]]:
    out = []
    for k, v in a.attributes.items():
        if not v:
            continue
        if k == "genres":
            out += [(k, g) for g in v.split("|") if g]
        elif k == "release_year" and v.isdigit():
            out.append((k, f"{v[:3]}0s"))
        else:
            out.append((k, v))
    if a.location and "region" not in a.attributes:
        out.append(("region", a.location))
    return out


class TemplateComposer(Composer):
    """Deterministic structured summaries of attributes: the no-LLM baseline."""

    def __init__(self, top_k: int = 3):
        self.top_k = top_k

    @property
    def model_version(self) -> str:
        return TEMPLATE_VERSION

    @property
    def preference_prompt_hash(self) -> str:
        return f"{TEMPLATE_VERSION}-pref"

    @property
    def author_prompt_hash(self) -> str:
        return f"{TEMPLATE_VERSION}-author"

    def compose_preferences(self, histories: Sequence[UserHistory]) -> list[Composed]:
        out = []
        for h in histories:
            if not h.authors:
                out.append(Composed("", "skipped", "empty history"))
                continue
            sections: dict[str, Counter[str]] = {}
            for a in h.authors:
                for k, v in _attr_values(a):
                    sections.setdefault(_SECTIONS.get(k, k.replace("_", " ").title()), Counter())[
                        v
                    ] += 1
            parts = []
            for name in sorted(sections, key=lambda s: (s not in _SECTIONS.values(), s)):
                # ties broken by value so the text is deterministic
                top = sorted(sections[name].items(), key=lambda kv: (-kv[1], kv[0]))[: self.top_k]
                parts.append(f"{name}: " + ", ".join(f"{v} ({n})" for v, n in top))
            parts.append(f"History: {len(h.authors)} authors")
            out.append(Composed("; ".join(parts), "ok", n_authors_used=len(h.authors)))
        return out

    def describe_authors(self, authors: Sequence[Author]) -> list[Composed]:
        out = []
        for a in authors:
            if not _has_content(a):
                out.append(Composed("", "skipped", "author has no text or frames"))
                continue
            attrs: dict[str, list[str]] = {}
            for k, v in _attr_values(a):
                attrs.setdefault(_SECTIONS.get(k, k.replace("_", " ").title()), []).append(v)
            parts = [f"{k}: {', '.join(v)}" for k, v in sorted(attrs.items())]
            parts.append(render_author(a))
            out.append(Composed("; ".join(parts), "ok", n_authors_used=1))
        return out


# --------------------------------------------------------------------------- LLM


FRAME_NOT_FOUND = "image file not found"
FRAME_NO_ROOT = "relative path without an image root"
FRAME_UNDECODABLE = "not a decodable image"
FRAME_EMPTY = "frame has neither bytes nor a path"


def _frame_bytes(a: Author, image_root: Path | None, dropped: Counter[str]) -> list[bytes]:
    """Each frame's bytes, resolving paths as validation does (relative -> ``image_root``)."""
    imgs = []
    for f in a.frames:
        if f.bytes:
            imgs.append(f.bytes)
        elif f.path:
            p = Path(f.path)
            if not p.is_absolute():
                if image_root is None:
                    dropped[FRAME_NO_ROOT] += 1
                    continue
                p = image_root / p
            if p.is_file():
                imgs.append(p.read_bytes())
            else:
                dropped[FRAME_NOT_FOUND] += 1
        else:
            dropped[FRAME_EMPTY] += 1
    return imgs


def _image_ok(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        return True
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def author_frames(
    author: Author,
    image_root: Path | None,
    limit: int,
    dropped: Counter[str] | None = None,
) -> list[bytes]:
    """Up to ``limit`` of the author's frames that PIL can decode, in order.

    Inline bytes or files (relative paths resolve against ``image_root``, the folder the data
    was validated against); missing files and undecodable images are skipped, never raised
    (one bad frame must not stop a batch), and each skipped frame is counted in ``dropped``
    by reason (:data:`FRAME_NOT_FOUND`, :data:`FRAME_NO_ROOT`, :data:`FRAME_UNDECODABLE`,
    :data:`FRAME_EMPTY`).
    """
    if limit <= 0:
        return []
    sink: Counter[str] = dropped if dropped is not None else Counter()
    out = []
    for b in _frame_bytes(author, image_root, sink):
        if _image_ok(b):
            out.append(b)
        else:
            sink[FRAME_UNDECODABLE] += 1
    return out[:limit]


class LLMComposer(Composer):
    """An (M)LLM backend writes preference and author texts, cached by content.

    Args:
        backend: any :class:`GenerationBackend`; frames are sent only if it supports images.
        gen: decoding settings (greedy by default: features must be reproducible).
        cache: content-addressed cache; ``None`` disables caching.
        token_budget: max prompt tokens for the history; the newest authors are kept.
        max_frames_per_author: frames sent per author to a vision-language backend.
        image_root: where relative frame paths resolve (the folder validation used).
        prompts: the prompt set (default: the MSPA live-stream set).
        structured: ask the backend to constrain decoding to each prompt's answer schema;
            rows record ``decoding="constrained"`` only when the backend supports it.
    """

    def __init__(
        self,
        backend: GenerationBackend,
        *,
        gen: GenerationConfig | None = None,
        cache: ComposerCache | None = None,
        token_budget: int = 768,
        max_frames_per_author: int = 1,
        image_root: Path | None = None,
        prompts: PromptSet = LIVESTREAM,
        structured: bool = False,
    ):
        self.backend = backend
        self.gen = gen or GenerationConfig(max_new_tokens=96)
        if not self.gen.stop:
            self.gen = dataclasses.replace(self.gen, stop=JSON_STOP)
        self.cache = cache
        self.token_budget = token_budget
        self.max_frames = max_frames_per_author
        self.image_root = image_root
        self.prompts = prompts
        self.structured = structured
        self.stats = ComposeStats()

    @property
    def decoding(self) -> str:
        """``constrained`` when the backend enforces answer schemas and it was asked to."""
        supports = bool(getattr(self.backend, "supports_schema", False))
        return "constrained" if self.structured and supports else "free"

    def answer_schema(self, prompt: Prompt) -> dict | None:
        """The schema decoding is constrained to for ``prompt`` (None: free-form): the prompt's
        answer schema with every free string bounded so the answer closes within
        ``gen.max_new_tokens`` (:func:`~mspa_features.generation.structured.bound_strings`)."""
        if self.decoding != "constrained":
            return None
        from mspa_features.generation.structured import bound_strings

        return bound_strings(prompt.answer_schema, self.gen.max_new_tokens)

    @property
    def model_version(self) -> str:
        return self.backend.model_version

    @property
    def preference_prompt_hash(self) -> str:
        return self.prompts.preference.hash

    @property
    def author_prompt_hash(self) -> str:
        return self.prompts.author.hash

    def _key_settings(self, prompt: Prompt) -> tuple[str, str, str, str]:
        """What a cache key holds besides the input: model, prompt, decoding settings and the
        decoding constraint (computed once per batch of one prompt)."""
        g = self.gen
        settings = f"{g.max_new_tokens}|{g.temperature}|{g.top_p}|{g.seed}|{g.stop}"
        decoding = self.decoding
        if decoding == "constrained":
            # the constraint itself is part of the key: answers once cut (headroom) or decoded
            # under another schema (bounds, non-empty strings) are composed again
            decoding += f"|headroom {CONSTRAINED_HEADROOM}|{schema_key(self.answer_schema(prompt))}"
        return self.model_version, prompt.hash, settings, decoding

    def _gen_key(self, prompt: Prompt, text: str, images: Sequence[bytes]) -> str:
        return content_key(*self._key_settings(prompt), text, *images)

    def _generation(self) -> GenerationConfig:
        """What the backend decodes with: ``gen``, with :data:`CONSTRAINED_HEADROOM` times the
        tokens when constrained (the schema's strings stay bounded for ``gen.max_new_tokens``,
        so the grammar, not the cap, ends each answer)."""
        if self.decoding != "constrained":
            return self.gen
        return with_headroom(self.gen)

    def _images(self, a: Author) -> list[bytes]:
        if not self.backend.supports_images:
            return []
        imgs = author_frames(a, self.image_root, self.max_frames, self.stats.frames_dropped)
        self.stats.frames_used += len(imgs)
        return imgs

    def _history_block(self, h: UserHistory) -> tuple[str, list[bytes], int]:
        """Numbered author lines, newest kept within the token budget, oldest first."""
        lines: list[str] = []
        images: list[list[bytes]] = []
        used = 0
        for a in reversed(h.authors):
            line = self.prompts.render(a, with_frames=self.backend.supports_images)
            cost = self.backend.count_tokens(line) + 2
            if lines and used + cost > self.token_budget:
                break
            lines.append(line)
            images.append(self._images(a))
            used += cost
        lines.reverse()
        images.reverse()
        text = "\n".join(f"{i + 1}. {line}" for i, line in enumerate(lines))
        return text, [b for imgs in images for b in imgs], len(lines)

    def _run(
        self, prompt: Prompt, jobs: list[tuple[int, str, list[bytes], int, str]], n: int
    ) -> list[Composed | None]:
        """jobs: (index, field text, images, authors used, placeholder name)."""
        out: list[Composed | None] = [None] * n
        head = self._key_settings(prompt)
        keys = [content_key(*head, t, *imgs) for _, t, imgs, _, _ in jobs]
        cached = self.cache.get_texts(keys) if self.cache else {}
        todo = [(j, k) for j, k in zip(jobs, keys, strict=True) if k not in cached]
        if todo:
            convs = [prompt.messages(images=j[2], **{j[4]: j[1]}) for j, _ in todo]
            schema = self.answer_schema(prompt)
            # schema= only when constraining: backends written before it still work free-form
            kw = {"schema": schema} if schema is not None else {}
            gens = self.backend.generate(convs, self._generation(), **kw)
            self.stats.generated += len(gens)
            self.stats.generated_tokens += sum(g.n_generated_tokens for g in gens)
            new = [
                (k, close_json(g.text, g.finish_reason), g.n_generated_tokens)
                for (_, k), g in zip(todo, gens, strict=True)
            ]
            if self.cache:
                self.cache.put_texts(new)
            cached.update({k: (t, n_tok) for k, t, n_tok in new})
        done = {k for _, k in todo}
        for (i, _, _, used, _), k in zip(jobs, keys, strict=True):
            raw = cached[k][0]
            if k not in done:
                self.stats.cache_hits += 1
            parsed = self.stats.parse.add(parse_answer(raw, prompt.answer_keys))
            # Partial answers keep the fields found (status stays "failed" for the counts);
            # no fields at all falls back to the raw text.
            text = (
                format_fields(parsed.data, prompt.answer_keys)
                if parsed.data
                else " ".join(raw.split())
            )
            if not text:
                out[i] = Composed(
                    "", "skipped", "model returned no text", used, k not in done, self.decoding
                )
            else:
                out[i] = Composed(
                    text, parsed.status, parsed.error, used, k not in done, self.decoding
                )
        return out

    def compose_preferences(self, histories: Sequence[UserHistory]) -> list[Composed]:
        jobs = []
        out: list[Composed | None] = [None] * len(histories)
        for i, h in enumerate(histories):
            usable = tuple(a for a in h.authors if _has_content(a))
            if not usable:
                out[i] = Composed("", "skipped", "empty history")
                self.stats.skipped["empty history"] += 1
                continue
            text, imgs, used = self._history_block(
                UserHistory(h.user_id, h.as_of, usable, h.history_count, h.history_last_ts)
            )
            jobs.append((i, text, imgs, used, "history"))
        for i, c in enumerate(self._run(self.prompts.preference, jobs, len(histories))):
            if c is not None:
                out[i] = c
        return [c for c in out if c is not None]

    def describe_authors(self, authors: Sequence[Author]) -> list[Composed]:
        jobs = []
        out: list[Composed | None] = [None] * len(authors)
        for i, a in enumerate(authors):
            if not _has_content(a):
                out[i] = Composed("", "skipped", "author has no text or frames")
                self.stats.skipped["author has no text or frames"] += 1
                continue
            line = self.prompts.render(a, with_frames=self.backend.supports_images)
            jobs.append((i, line, self._images(a), 1, "author"))
        for i, c in enumerate(self._run(self.prompts.author, jobs, len(authors))):
            if c is not None:
                out[i] = c
        return [c for c in out if c is not None]


ProgressFn = Callable[[int], None]
