"""Seeded synthetic live-stream dataset: authors with multimodal content, users, tips and clicks.

MovieLens has no images, transcripts or comments; this generator covers that path. Every
author has latent attributes (category, region, scene, lighting, style); only some of them are
spelled out in ``profile_text``, the rest live only in frames, ASR text and comments, so a
multimodal encoder can recover signal a text-only one cannot. Users have a latent taste over the
same attributes and tip authors through a softmax over taste match times author popularity.

Two interaction models (``SyntheticConfig.impressions.enabled``):

* engagements only (the default, unchanged since 0.1): tips (label 1) to authors drawn by taste
  and popularity, and clicks (label 0) on uniformly random authors. Every row is an engagement.
* impressions: users open sessions; each session shows a feed of authors drawn by popularity;
  the user clicks a shown author with a probability driven by popularity and (weakly) taste, and
  tips a clicked one with a probability driven by taste alone, more strongly. One row per shown
  author and session, with its strongest action: ``impression`` (shown, not clicked; label 0),
  ``click`` (clicked, no tip; label 0) or ``tip`` (clicked and tipped; label 1). So the click
  task is positive on ``{click, tip}``, the gift task on ``{tip}``, and ``label`` stays "tipped":
  the point-in-time history rule (positives, ``label == 1``) reads the same kind of event in
  both models.

Reproducibility: author ``i`` is drawn from ``default_rng([seed, stream, i])``; every user draw
comes from a counter-based hash of ``(seed, stream, user index, draw index)``. Output therefore
depends only on the seed and the index, never on ``n_users``, ``chunk_users`` or the internal
block size, and each chunk is generated fully vectorised with numpy.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field, ValidationInfo, field_validator, model_validator

from mspa_features.config_base import StrictModel
from mspa_features.data.contracts import AUTHORS, INTERACTIONS, TS, USERS
from mspa_features.errors import IncompatibleSettingsError, InvalidValueError

# --------------------------------------------------------------------------- vocabularies

CATEGORIES: tuple[str, ...] = (
    "singing",
    "dancing",
    "gaming",
    "outdoor-travel",
    "cooking",
    "talk-show",
    "fitness",
    "comedy",
)
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "coastal", "mountain")
SCENES: tuple[str, ...] = ("indoor", "outdoor")
LIGHTINGS: tuple[str, ...] = ("bright", "dim", "neon", "natural")
STYLES: tuple[str, ...] = ("energetic", "calm", "humorous", "elegant")
GENDERS: tuple[str, ...] = ("F", "M")
OCCUPATIONS: tuple[str, ...] = (
    "student",
    "engineer",
    "teacher",
    "artist",
    "healthcare",
    "sales",
    "service",
    "retired",
    "self-employed",
    "other",
)

# P(outdoor | category): scene correlates with category, as in real streams.
_P_OUTDOOR = {
    "singing": 0.25,
    "dancing": 0.35,
    "gaming": 0.05,
    "outdoor-travel": 0.9,
    "cooking": 0.15,
    "talk-show": 0.1,
    "fitness": 0.4,
    "comedy": 0.2,
}
# P(lighting | scene), in LIGHTINGS order.
_P_LIGHTING = {
    "indoor": (0.3, 0.25, 0.25, 0.2),
    "outdoor": (0.4, 0.1, 0.0, 0.5),
}
# Taste weights are quantised to levels so exp(weight) is a scalar table lookup: sampling then
# uses only correctly-rounded elementwise ops and sequential cumsums, which makes it bit-exact
# whatever the block size (no BLAS or SIMD-tail differences).
_W_CAT_LEVELS = (1.5, 2.0, 2.5, 3.0)
_W_ASPECT_LEVELS = (0.0, 0.4, 0.8, 1.2)
_F_CAT = np.array([math.exp(w) for w in _W_CAT_LEVELS])
_F_ASPECT = np.array([math.exp(w) for w in _W_ASPECT_LEVELS])
# Gift tiers (live-stream tips come in fixed denominations) and their probabilities.
_TIP_VALUES = np.array([1.0, 5.0, 10.0, 20.0, 52.0, 100.0, 520.0, 1314.0])
_TIP_CDF = np.cumsum([0.35, 0.2, 0.15, 0.1, 0.08, 0.06, 0.04, 0.02])
_CLICKS_PER_TIP = 2.0
# Cap on (users x authors) cells per vectorised block, to bound memory for large n_authors.
_MAX_CELLS = 2_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_BOUNDS: dict[str, tuple[int, int]] = {
    "n_users": (1, 10_000_000),
    "n_authors": (1, 100_000),  # ids are a{idx:05d}
    "days": (1, 3650),
    "frames_per_author": (0, 8),
    "frame_size": (8, 256),
    "seed": (0, 2**63 - 1),
    "chunk_users": (1, 10_000_000),
}


# --------------------------------------------------------------------------- config


_IMPRESSION_BOUNDS: dict[str, tuple[float, float]] = {
    "sessions_per_user": (0.0, 1000.0),  # exclusive low end: a mean of 0 sessions is no data
    "click_bias": (-20.0, 20.0),
    "click_taste": (-20.0, 20.0),
    "click_popularity": (-20.0, 20.0),
    "tip_bias": (-20.0, 20.0),
    "tip_taste": (-20.0, 20.0),
}
_MAX_SHOWN = 100
# Seconds between two consecutive impressions of one session (a feed scrolled down).
_IMPRESSION_STEP_US = 10_000_000


class ImpressionsConfig(StrictModel):
    """Shown-but-not-clicked impressions: sessions of shown authors, clicks, tips among clicks.

    Each user has ``max(1, Poisson(sessions_per_user))`` sessions, each at a uniform instant of
    the window. A session shows ``shown_per_session`` authors drawn with probability
    proportional to popularity (an author drawn twice in a session is shown once), 10 s apart.
    With ``m`` the user's taste match with the author (the sum of the user's taste weights over
    the matching attributes, the same weights that drive the engagement-only tips):

    * P(click | shown) = sigmoid(click_bias + click_taste * m + click_popularity * log pop)
    * P(tip | click) = sigmoid(tip_bias + tip_taste * m)

    so clicks follow popularity and tips follow taste, and the two tasks differ. The defaults
    give, per user over 30 days on 300 authors, about 78 shown authors, 25 of them clicked and
    11 of those tipped: as many tips as the engagement-only default (``mean_tips_per_user``
    12), so preference histories are as long in both models.
    """

    enabled: bool = Field(False, description="emit impressions (off: engagements only)")
    sessions_per_user: float = Field(10.0, description="mean sessions per user (Poisson, >= 1)")
    shown_per_session: int = Field(8, description=f"authors shown per session, 1..{_MAX_SHOWN}")
    click_bias: float = Field(-1.7, description="click log-odds of an unmatched, pop-1 author")
    click_taste: float = Field(0.3, description="click log-odds per unit of taste match")
    click_popularity: float = Field(0.8, description="click log-odds per unit of log popularity")
    tip_bias: float = Field(-1.5, description="tip-given-click log-odds of an unmatched author")
    tip_taste: float = Field(1.0, description="tip-given-click log-odds per unit of taste match")

    @field_validator("enabled", mode="before")
    @classmethod
    def _bool_only(cls, v: Any) -> Any:
        # pydantic's lax mode would turn "no" or 0 into False; say true or false.
        if not isinstance(v, bool):
            raise InvalidValueError("impressions.enabled", v, "true or false")
        return v

    @field_validator("shown_per_session", mode="before")
    @classmethod
    def _shown_int(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise InvalidValueError("impressions.shown_per_session", v, "an integer")
        return v

    @field_validator("shown_per_session")
    @classmethod
    def _shown_in_bounds(cls, v: int) -> int:
        if not 1 <= v <= _MAX_SHOWN:
            raise InvalidValueError("impressions.shown_per_session", v, f"in [1, {_MAX_SHOWN}]")
        return v

    @field_validator(*_IMPRESSION_BOUNDS, mode="before")
    @classmethod
    def _no_bool_float(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, bool):
            raise InvalidValueError(f"impressions.{info.field_name}", v, "a number")
        return v

    @field_validator(*_IMPRESSION_BOUNDS)
    @classmethod
    def _finite_in_bounds(cls, v: float, info: ValidationInfo) -> float:
        lo, hi = _IMPRESSION_BOUNDS[info.field_name]
        ok = math.isfinite(v) and (
            lo < v <= hi if info.field_name == "sessions_per_user" else lo <= v <= hi
        )
        if not ok:
            low = "(" if info.field_name == "sessions_per_user" else "["
            raise InvalidValueError(f"impressions.{info.field_name}", v, f"in {low}{lo:g}, {hi:g}]")
        return v


class SyntheticConfig(StrictModel):
    """Size and seed of a synthetic dataset; the same config always yields the same data."""

    n_users: int = 1000
    n_authors: int = 200
    days: int = 30
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    mean_tips_per_user: float = 12.0
    frames_per_author: int = 2
    frame_size: int = 32
    seed: int = 0
    chunk_users: int = 10_000
    impressions: ImpressionsConfig = Field(
        default_factory=ImpressionsConfig,
        description="shown-but-not-clicked impressions (off: tips and random clicks only)",
    )

    @field_validator(*_BOUNDS, mode="before")
    @classmethod
    def _no_bool(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode would turn True into 1; a bool here is always a mistake.
        if isinstance(v, bool):
            # A ValueError, not InvalidTypeError: pydantic only turns a ValueError into a
            # ValidationError
            raise InvalidValueError(info.field_name, v, "an integer")
        return v

    @field_validator(*_BOUNDS)
    @classmethod
    def _in_bounds(cls, v: int, info: ValidationInfo) -> int:
        lo, hi = _BOUNDS[info.field_name]
        if not lo <= v <= hi:
            raise InvalidValueError(info.field_name, v, f"in [{lo}, {hi}]")
        return v

    @field_validator("mean_tips_per_user")
    @classmethod
    def _positive_mean(cls, v: float) -> float:
        if not (math.isfinite(v) and 0.0 < v <= 1000.0):
            raise InvalidValueError("mean_tips_per_user", v, "in (0, 1000]")
        return v

    @field_validator("start")
    @classmethod
    def _aware_start(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise InvalidValueError("start", v, "timezone-aware (e.g. ending in 'Z')")
        return v.astimezone(UTC)

    @model_validator(mode="after")
    def _impressions_fit(self) -> SyntheticConfig:
        imp = self.impressions
        if not imp.enabled:
            return self
        default_tips = type(self).model_fields["mean_tips_per_user"].default
        if (
            "mean_tips_per_user" in self.model_fields_set
            and self.mean_tips_per_user != default_tips
        ):
            # With impressions the tips come out of the click and tip model; a tip rate that
            # is silently ignored would be worse than this error. (The default written back by
            # model_dump, a saved config, is not a declaration.)
            raise IncompatibleSettingsError(
                {"mean_tips_per_user": self.mean_tips_per_user, "impressions.enabled": True},
                "mean_tips_per_user drives the engagement-only generator; with impressions the "
                "tips come from sessions_per_user, shown_per_session, click_* and tip_*",
                fix="remove mean_tips_per_user or disable impressions",
            )
        if imp.shown_per_session > self.n_authors:
            raise IncompatibleSettingsError(
                {
                    "impressions.shown_per_session": imp.shown_per_session,
                    "n_authors": self.n_authors,
                },
                "a session cannot show more distinct authors than there are",
            )
        return self

    @property
    def start_us(self) -> int:
        """Window start in microseconds since the epoch (exact integer arithmetic)."""
        return (self.start - _EPOCH) // timedelta(microseconds=1)

    @property
    def window_us(self) -> int:
        """Window length in microseconds."""
        return self.days * 86_400 * 1_000_000

    def fingerprint(self) -> str:
        """A short hash of everything that changes the data (not ``chunk_users``: it doesn't)."""
        import hashlib

        # impressions off leave the fingerprint as it was before the option existed, so the
        # raw folder of an engagement-only config keeps its name
        exclude = {"chunk_users"} | (set() if self.impressions.enabled else {"impressions"})
        fields = self.model_dump(mode="json", exclude=exclude)
        return hashlib.sha256(repr(sorted(fields.items())).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- counter RNG

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 arrays wrap on overflow, which the hash relies on)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _stream_key(seed: int, stream: int) -> np.uint64:
    return np.random.SeedSequence([seed, 0x5EED, stream]).generate_state(1, np.uint64)[0]


def _uniform(seed: int, stream: int, users: np.ndarray, draw: np.ndarray | int) -> np.ndarray:
    """U[0,1) for each (user, draw) pair; a pure function of (seed, stream, user, draw)."""
    u = np.asarray(users, dtype=np.uint64)
    # broadcast first: 0-d uint64 arithmetic is scalar and would warn on the intended wrap
    d = np.broadcast_to(np.asarray(draw, dtype=np.uint64), u.shape)
    state = _mix(u * _GOLDEN + _stream_key(seed, stream))
    h = _mix(state + (d + np.uint64(1)) * _GOLDEN)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _categorical(u: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Map uniforms to category codes given a cumulative probability table."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)


def _poisson(u: np.ndarray, lam: float) -> np.ndarray:
    """Poisson(lam) by inverse CDF, so each count stays a function of its own uniform."""
    kmax = int(lam + 12 * math.sqrt(lam) + 20)
    k = np.arange(kmax + 1)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, kmax + 1)))])
    cdf = np.cumsum(np.exp(k * math.log(lam) - lam - log_fact))
    return np.minimum(np.searchsorted(cdf, u, side="right"), kmax).astype(np.int64)


# streams of the user hash; new streams must get new numbers so old data never changes
_S_USER, _S_NTIPS, _S_NCLICKS = 1, 2, 3
_S_TIP_AUTHOR, _S_TIP_TS, _S_TIP_VALUE, _S_CLICK_AUTHOR, _S_CLICK_TS = 4, 5, 6, 7, 8
_S_NSESSIONS, _S_SESSION_TS, _S_SHOWN_AUTHOR, _S_SHOWN_CLICK, _S_SHOWN_TIP = 9, 10, 11, 12, 13
_S_SHOWN_TIP_VALUE = 14


# --------------------------------------------------------------------------- latents


@dataclass(frozen=True)
class AuthorLatents:
    """Per-author latent codes (indices into the vocabularies) and popularity weight."""

    category: np.ndarray
    region: np.ndarray
    scene: np.ndarray
    lighting: np.ndarray
    style: np.ndarray
    popularity: np.ndarray  # > 0, multiplies the taste softmax weight


def author_latents(cfg: SyntheticConfig) -> AuthorLatents:
    """Latent attributes of every author; author ``i`` depends only on (seed, i)."""
    cols: dict[str, list[Any]] = {k: [] for k in AuthorLatents.__dataclass_fields__}
    for i in range(cfg.n_authors):
        rng = np.random.default_rng([cfg.seed, 1, i])
        cat = int(rng.integers(len(CATEGORIES)))
        scene = int(rng.random() < _P_OUTDOOR[CATEGORIES[cat]])
        cols["category"].append(cat)
        cols["region"].append(int(rng.integers(len(REGIONS))))
        cols["scene"].append(scene)
        cols["lighting"].append(int(rng.choice(len(LIGHTINGS), p=_P_LIGHTING[SCENES[scene]])))
        cols["style"].append(int(rng.integers(len(STYLES))))
        cols["popularity"].append(math.exp(float(rng.normal(0.0, 0.8))))
    return AuthorLatents(
        **{
            k: np.array(v, dtype=np.float64 if k == "popularity" else np.int64)
            for k, v in cols.items()
        }
    )


@dataclass(frozen=True)
class UserLatents:
    """Per-user latent taste and profile codes for user indices ``[start, stop)``.

    ``pref_category2`` is -1 for users with a single preferred category. ``w_*`` are taste
    weights (log-odds added per matching attribute).
    """

    index: np.ndarray
    pref_category1: np.ndarray
    pref_category2: np.ndarray
    pref_region: np.ndarray
    pref_scene: np.ndarray
    pref_lighting: np.ndarray
    pref_style: np.ndarray
    w_category: np.ndarray
    w_region: np.ndarray
    w_scene: np.ndarray
    w_lighting: np.ndarray
    w_style: np.ndarray
    age: np.ndarray
    gender: np.ndarray
    occupation: np.ndarray
    region: np.ndarray

    def preferred_categories(self) -> np.ndarray:
        """Boolean (n_users, n_categories) mask of each user's preferred categories."""
        m = np.zeros((len(self.index), len(CATEGORIES)), dtype=bool)
        rows = np.arange(len(self.index))
        m[rows, self.pref_category1] = True
        two = self.pref_category2 >= 0
        m[rows[two], self.pref_category2[two]] = True
        return m


def user_latents(cfg: SyntheticConfig, start: int, stop: int) -> UserLatents:
    """Latent taste and profile of users ``start..stop-1`` (vectorised, chunk-independent)."""
    idx = np.arange(start, stop, dtype=np.int64)

    def u(field: int) -> np.ndarray:
        return _uniform(cfg.seed, _S_USER, idx, field)

    def pick(field: int, n: int) -> np.ndarray:
        return np.minimum((u(field) * n).astype(np.int64), n - 1)

    k = len(CATEGORIES)
    cat1 = pick(0, k)
    # second category differs from the first: shift by 1..k-1
    cat2 = np.where(u(1) < 0.4, (cat1 + 1 + pick(2, k - 1)) % k, -1)
    pref_region = pick(3, len(REGIONS))
    # users mostly live where their preferred region is, so the profile carries some signal
    region = np.where(u(4) < 0.6, pref_region, pick(5, len(REGIONS)))
    levels = np.array(_W_ASPECT_LEVELS)
    return UserLatents(
        index=idx,
        pref_category1=cat1,
        pref_category2=cat2,
        pref_region=pref_region,
        pref_scene=pick(6, len(SCENES)),
        pref_lighting=pick(7, len(LIGHTINGS)),
        pref_style=pick(8, len(STYLES)),
        w_category=np.array(_W_CAT_LEVELS)[pick(9, len(_W_CAT_LEVELS))],
        w_region=levels[pick(10, len(levels))],
        w_scene=levels[pick(11, len(levels))],
        w_lighting=levels[pick(12, len(levels))],
        w_style=levels[pick(13, len(levels))],
        age=(16 + pick(14, 50)).astype(np.int32),
        gender=pick(15, len(GENDERS)),
        occupation=pick(16, len(OCCUPATIONS)),
        region=region,
    )


# --------------------------------------------------------------------------- author content

_NICK_ADJ = (
    "Sunny",
    "Lucky",
    "Midnight",
    "Happy",
    "Silver",
    "Little",
    "Crazy",
    "Golden",
    "Misty",
    "Brave",
    "Sweet",
    "Cosmic",
)
_NICK_NOUN = (
    "Fox",
    "Panda",
    "Star",
    "Tiger",
    "Moon",
    "Bean",
    "Cloud",
    "Wolf",
    "Peach",
    "Dragon",
    "Kitten",
    "River",
)
_CAT_PHRASE = {
    "singing": "live singing and song covers",
    "dancing": "dance routines",
    "gaming": "gaming streams",
    "outdoor-travel": "travel and outdoor adventures",
    "cooking": "home cooking",
    "talk-show": "chat and talk shows",
    "fitness": "workouts and fitness tips",
    "comedy": "comedy and sketches",
}
_STYLE_ADJ = {
    "energetic": "high-energy",
    "calm": "relaxed",
    "humorous": "silly",
    "elegant": "elegant",
}
_ASR_OPENER = {
    "energetic": ("Let's go everyone!", "Okay okay okay, here we go!", "Hype in the chat!"),
    "calm": (
        "Hi friends, take it easy tonight.",
        "Welcome in, get comfortable.",
        "Let's slow down a little.",
    ),
    "humorous": ("Okay, don't laugh, but", "Plot twist, everyone:", "So funny story,"),
    "elegant": (
        "Good evening and welcome.",
        "Thank you all for joining me tonight.",
        "A warm welcome to our guests.",
    ),
}
_ASR_BODY = {
    "singing": (
        "this next song is one of my favourites, sing along with me",
        "thank you for the roses, I will sing your request next",
        "let me warm up my voice before the chorus",
    ),
    "dancing": (
        "watch this new choreography, five six seven eight",
        "this routine took me a week to learn, here is the final move",
        "follow my steps, left, right, spin",
    ),
    "gaming": (
        "we are pushing to the next rank tonight, boss fight coming up",
        "my teammate just respawned, let's clutch this round",
        "new patch dropped so I am testing the loadout",
    ),
    "outdoor-travel": (
        "we just reached the viewpoint, look at this trail",
        "the hike up took three hours but the view is worth it",
        "tomorrow we take the ferry to the next town",
    ),
    "cooking": (
        "now we add the garlic to the hot pan",
        "let the dough rest for ten minutes while I chop the onions",
        "a pinch of salt and the sauce is ready",
    ),
    "talk-show": (
        "today's topic is what you would do with a free weekend, drop your answers",
        "I read your questions, the first one is about work and life balance",
        "let's talk about the news everyone is sharing this week",
    ),
    "fitness": (
        "ten more squats, keep your back straight",
        "breathe out on the push, we are halfway through the set",
        "hold the plank, thirty seconds left",
    ),
    "comedy": (
        "so my cat tried to order takeout again",
        "my neighbour asked me to keep it down, I said this is my best joke",
        "I went to the gym once, the treadmill still remembers me",
    ),
}
_ASR_SCENE = {"indoor": " here in my little studio", "outdoor": " out here in the fresh air"}
_COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "category": {
        "singing": ("what song is this?", "your voice is amazing", "encore!"),
        "dancing": ("nice moves", "teach me that step", "the spin was perfect"),
        "gaming": ("gg", "what's your rank?", "that clutch was insane"),
        "outdoor-travel": ("where is this trail?", "adding this to my trip list", "what a view"),
        "cooking": ("what's the recipe?", "looks delicious", "how long in the oven?"),
        "talk-show": ("great topic today", "I agree with you", "next topic please"),
        "fitness": ("my legs are burning", "doing this with you", "how many reps?"),
        "comedy": ("I can't stop laughing", "lol", "tell the cat story again"),
    },
    "style": {
        "energetic": ("so much energy!", "hype!", "you never slow down"),
        "calm": ("so soothing", "perfect to relax to", "love the chill vibe"),
        "humorous": ("haha you're hilarious", "you crack me up", "comedy gold"),
        "elegant": ("so classy", "very graceful", "elegant as always"),
    },
    "lighting": {
        "bright": ("so bright and clear", "great picture quality"),
        "dim": ("it's a bit dark, turn on a light", "can barely see you"),
        "neon": ("the neon lights look amazing", "love the purple glow"),
        "natural": ("nice natural light", "the sunlight looks lovely"),
    },
    "scene": {
        "indoor": ("cozy room", "love your setup"),
        "outdoor": ("where is this place?", "the weather looks great"),
    },
    "generic": {"": ("hello!", "first time here", "love this", "followed", "hi from work")},
}
_COMMENT_SOURCES = ("category", "style", "lighting", "scene", "generic")
_COMMENT_SOURCE_P = (0.3, 0.2, 0.2, 0.1, 0.2)


def _author_texts(rng: np.random.Generator, attrs: dict[str, str]) -> tuple[str, str, list[str]]:
    """profile_text, asr_text and comments; profile mentions only some attributes."""
    nick = f"{rng.choice(_NICK_ADJ)}{rng.choice(_NICK_NOUN)}{int(rng.integers(1, 100))}"
    parts: list[str] = []
    # category in ~60% and style in ~40% of profiles; scene/lighting never: those stay in
    # frames, ASR and comments so the multimodal path carries signal text alone lacks.
    show_style = rng.random() < 0.4
    if rng.random() < 0.6:
        style = f"{_STYLE_ADJ[attrs['style']]} " if show_style else ""
        parts.append(f"{style}{_CAT_PHRASE[attrs['category']]} most evenings")
    elif show_style:
        parts.append(f"{_STYLE_ADJ[attrs['style']]} streams most evenings")
    else:
        parts.append("streaming most evenings")
    if rng.random() < 0.3:
        parts.append(f"from the {attrs['region']}")
    intro = ", ".join(parts)
    profile = f"{nick} | {intro[0].upper()}{intro[1:]}. Come say hi and follow!"

    opener = str(rng.choice(_ASR_OPENER[attrs["style"]]))
    body = str(rng.choice(_ASR_BODY[attrs["category"]]))
    if opener.endswith((".", "!")):
        body = body[0].upper() + body[1:]
    asr = f"{opener} {body}"
    if rng.random() < 0.5:
        asr += _ASR_SCENE[attrs["scene"]]
    asr += "."

    comments = []
    for _ in range(int(rng.integers(2, 6))):
        source = _COMMENT_SOURCES[int(rng.choice(len(_COMMENT_SOURCES), p=_COMMENT_SOURCE_P))]
        pool = _COMMENTS[source][attrs.get(source, "")]
        comments.append(str(rng.choice(pool)))
    return profile, asr, comments


_SKY = (120, 180, 235)
_WALLS = ((210, 190, 160), (190, 120, 90), (225, 215, 190), (150, 110, 80))
_GROUND = {"coastal": (200, 185, 140), "mountain": (130, 130, 125)}
_GRASS = (90, 150, 70)
_FLOORS = ((120, 85, 55), (150, 60, 60), (140, 140, 140))
_CAT_COLOUR = {
    "singing": (220, 40, 160),
    "dancing": (250, 140, 30),
    "gaming": (40, 200, 80),
    "outdoor-travel": (140, 90, 40),
    "cooking": (210, 40, 40),
    "talk-show": (240, 210, 60),
    "fitness": (30, 190, 200),
    "comedy": (140, 60, 200),
}
_LIGHT_GAIN = {"bright": 1.15, "natural": 0.95, "neon": 0.55, "dim": 0.35}
_NEON = ((255, 40, 200), (40, 230, 255))


def render_frame(rng: np.random.Generator, attrs: dict[str, str], size: int) -> bytes:
    """One PNG frame whose pixels encode scene, region, category and lighting.

    Top third: sky blue outdoors, a warm (low-blue) wall indoors. Bottom: ground or floor,
    sand for coastal and rock for mountain outdoors. Centre: a category-specific coloured
    shape. Lighting scales brightness; neon adds coloured glow stripes in the middle band
    only, so the top band keeps the indoor/outdoor contrast.
    """
    from PIL import Image, ImageDraw

    s = size
    outdoor = attrs["scene"] == "outdoor"
    img = Image.new("RGB", (s, s))
    d = ImageDraw.Draw(img)
    top = s // 3
    j = rng.integers(-12, 13, size=3)

    def jit(c: tuple[int, int, int]) -> tuple[int, int, int]:
        r, g, b = (min(255, max(0, c[i] + int(j[i]))) for i in range(3))
        return r, g, b

    if outdoor:
        d.rectangle([0, 0, s, top], fill=jit(_SKY))
        d.rectangle([0, top, s, s], fill=jit(_GROUND.get(attrs["region"], _GRASS)))
        if attrs["region"] == "coastal":
            d.rectangle([0, top, s, top + s // 8], fill=(30, 110, 190))
        if attrs["region"] == "mountain":
            d.polygon(
                [(0, top + s // 6), (s // 3, top - s // 8), (2 * s // 3, top + s // 6)],
                fill=(100, 100, 105),
            )
    else:
        d.rectangle([0, 0, s, top], fill=jit(_WALLS[int(rng.integers(len(_WALLS)))]))
        d.rectangle([0, top, s, s], fill=jit(_FLOORS[int(rng.integers(len(_FLOORS)))]))

    # category object: position/size jitter makes frames of one author differ over time
    c = _CAT_COLOUR[attrs["category"]]
    cx = s // 2 + int(rng.integers(-s // 10, s // 10 + 1))
    cy = (s * 3) // 5 + int(rng.integers(-s // 12, s // 12 + 1))
    r = max(2, int(s * rng.uniform(0.14, 0.22)))
    cat = attrs["category"]
    if cat == "singing":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=c)
        d.rectangle([cx - r // 4, cy + r, cx + r // 4, cy + 2 * r], fill=(60, 60, 60))
    elif cat in ("dancing", "outdoor-travel"):
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=c)
    elif cat == "gaming":
        d.rectangle([cx - r - 1, cy - r // 2 - 1, cx + r + 1, cy + r // 2 + 1], fill=(20, 20, 20))
        d.rectangle([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=c)
    elif cat == "cooking":
        d.ellipse([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=c)
        d.rectangle([cx + r, cy - 1, cx + 2 * r, cy + 1], fill=(50, 50, 50))
    elif cat == "talk-show":
        d.rectangle([cx - int(1.5 * r), cy, cx + int(1.5 * r), cy + r], fill=c)
    elif cat == "fitness":
        d.rectangle([cx - r, cy - 1, cx + r, cy + 1], fill=(80, 80, 80))
        d.rectangle([cx - r - r // 2, cy - r // 2, cx - r, cy + r // 2], fill=c)
        d.rectangle([cx + r, cy - r // 2, cx + r + r // 2, cy + r // 2], fill=c)
    else:  # comedy
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=c)

    px = np.asarray(img, dtype=np.float32) * _LIGHT_GAIN[attrs["lighting"]]
    if attrs["lighting"] == "neon":
        for _ in range(2):
            y = int(rng.integers(top, s - 1))
            glow = np.array(_NEON[int(rng.integers(len(_NEON)))], dtype=np.float32)
            px[y : y + max(1, s // 16)] = 0.4 * px[y : y + max(1, s // 16)] + 0.6 * glow
    px += rng.normal(0.0, 4.0, size=px.shape)  # sensor noise so frames are not flat fills
    out = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def author_ids(n: int) -> list[str]:
    """Author ids ``a00000``... for the first ``n`` authors."""
    return [f"a{i:05d}" for i in range(n)]


def generate_authors(cfg: SyntheticConfig) -> pa.Table:
    """All authors (AUTHORS schema) as one table; author ``i`` depends only on (seed, i)."""
    lat = author_latents(cfg)
    cols: dict[str, list[Any]] = {
        k: [] for k in ("profile_text", "location", "asr_text", "comments", "frames", "attributes")
    }
    for i in range(cfg.n_authors):
        attrs = {
            "category": CATEGORIES[lat.category[i]],
            "region": REGIONS[lat.region[i]],
            "scene": SCENES[lat.scene[i]],
            "lighting": LIGHTINGS[lat.lighting[i]],
            "style": STYLES[lat.style[i]],
        }
        # content stream separate from the latent stream so adding content never moves latents
        rng = np.random.default_rng([cfg.seed, 2, i])
        profile, asr, comments = _author_texts(rng, attrs)
        cols["profile_text"].append(profile)
        cols["location"].append(attrs["region"])
        cols["asr_text"].append(asr)
        cols["comments"].append(comments)
        cols["frames"].append(
            [
                {"bytes": render_frame(rng, attrs, cfg.frame_size), "path": None}
                for _ in range(cfg.frames_per_author)
            ]
        )
        cols["attributes"].append(list(attrs.items()))
    schema = AUTHORS.schema
    # the timestamp goes in as exact int64 microseconds, not via datetime conversion
    return pa.Table.from_arrays(
        [
            pa.array(author_ids(cfg.n_authors), type=pa.string()),
            pa.array(np.full(cfg.n_authors, cfg.start_us, dtype=np.int64), type=TS),
            *(pa.array(cols[f.name], type=f.type) for f in schema if f.name in cols),
        ],
        schema=schema,
    )


# --------------------------------------------------------------------------- users


def _chunks(cfg: SyntheticConfig) -> Iterator[tuple[int, int]]:
    for lo in range(0, cfg.n_users, cfg.chunk_users):
        yield lo, min(lo + cfg.chunk_users, cfg.n_users)


def _user_id_array(lo: int, hi: int) -> pa.Array:
    return pa.array([f"u{i:07d}" for i in range(lo, hi)], type=pa.string())


def generate_users(cfg: SyntheticConfig) -> Iterator[pa.Table]:
    """Users (USERS schema) in chunks of ``cfg.chunk_users``."""
    for lo, hi in _chunks(cfg):
        lat = user_latents(cfg, lo, hi)
        yield pa.Table.from_arrays(
            [
                _user_id_array(lo, hi),
                pa.array(lat.age, type=pa.int32()),
                pa.array(GENDERS).take(pa.array(lat.gender)),
                pa.array(OCCUPATIONS).take(pa.array(lat.occupation)),
                pa.array(REGIONS).take(pa.array(lat.region)),
            ],
            schema=USERS.schema,
        )


# --------------------------------------------------------------------------- interactions


def _aspects(
    lat: UserLatents, auth: AuthorLatents
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    """(user preference, user weight, author attribute) of the non-category taste aspects."""
    return (
        (lat.pref_region, lat.w_region, auth.region),
        (lat.pref_scene, lat.w_scene, auth.scene),
        (lat.pref_lighting, lat.w_lighting, auth.lighting),
        (lat.pref_style, lat.w_style, auth.style),
    )


def _tip_weights(lat: UserLatents, auth: AuthorLatents) -> np.ndarray:
    """(users, authors) unnormalised softmax weights: popularity * prod exp(w * match)."""
    w = auth.popularity[None, :] * np.where(
        (auth.category[None, :] == lat.pref_category1[:, None])
        | (auth.category[None, :] == lat.pref_category2[:, None]),
        _F_CAT[np.searchsorted(_W_CAT_LEVELS, lat.w_category)][:, None],
        1.0,
    )
    for pref, weight, attr in _aspects(lat, auth):
        factor = _F_ASPECT[np.searchsorted(_W_ASPECT_LEVELS, weight)]
        w = w * np.where(attr[None, :] == pref[:, None], factor[:, None], 1.0)
    return w


def _taste_odds(
    lat: UserLatents, auth: AuthorLatents, rows: np.ndarray, authors: np.ndarray, scale: float
) -> np.ndarray:
    """``exp(scale * m)`` per (local user row, author) pair, ``m`` the taste match.

    ``m`` is the sum of the user's taste weights over the attributes the author matches (the
    log of :func:`_tip_weights` without popularity). The factors come from per-level tables
    (``math.exp`` of scalars) multiplied in a fixed order, so each value is bit-exact whatever
    the block it is computed in.
    """
    f_cat = np.array([math.exp(scale * w) for w in _W_CAT_LEVELS])
    f_aspect = np.array([math.exp(scale * w) for w in _W_ASPECT_LEVELS])
    cat = auth.category[authors]
    odds = np.where(
        (cat == lat.pref_category1[rows]) | (cat == lat.pref_category2[rows]),
        f_cat[np.searchsorted(_W_CAT_LEVELS, lat.w_category)][rows],
        1.0,
    )
    for pref, weight, attr in _aspects(lat, auth):
        factor = f_aspect[np.searchsorted(_W_ASPECT_LEVELS, weight)]
        odds = odds * np.where(attr[authors] == pref[rows], factor[rows], 1.0)
    return odds


def _sample_rows(weights: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Draw one column per (row, uniform) from each row's categorical distribution.

    The CDF is quantised to 40-bit integers and rows are offset by 2**41 so a single
    searchsorted serves all rows; integer arithmetic keeps the result independent of the
    row's position in the block.
    """
    n, a = weights.shape
    cdf = np.cumsum(weights, axis=1)
    q = np.floor(cdf / cdf[:, -1:] * 2.0**40).astype(np.int64)
    flat = (q + (np.arange(n, dtype=np.int64) << 41)[:, None]).ravel()
    target = np.floor(u * 2.0**40).astype(np.int64) + (rows.astype(np.int64) << 41)
    return np.searchsorted(flat, target, side="right") - rows * a


def _events(users: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row (local user) and per-user draw index for each of ``counts[i]`` events of user i."""
    rows = np.repeat(np.arange(len(users)), counts)
    starts = np.cumsum(counts) - counts
    draw = np.arange(len(rows)) - np.repeat(starts, counts)
    return rows, draw


def _interaction_block(
    cfg: SyntheticConfig, lo: int, hi: int, auth: AuthorLatents, aids: pa.Array
) -> pa.Table:
    lat = user_latents(cfg, lo, hi)
    users = lat.index
    seed, a = cfg.seed, cfg.n_authors

    n_tips = np.maximum(1, _poisson(_uniform(seed, _S_NTIPS, users, 0), cfg.mean_tips_per_user))
    n_clicks = _poisson(
        _uniform(seed, _S_NCLICKS, users, 0), _CLICKS_PER_TIP * cfg.mean_tips_per_user
    )

    t_rows, t_draw = _events(users, n_tips)
    t_users = users[t_rows]
    t_author = _sample_rows(
        _tip_weights(lat, auth), t_rows, _uniform(seed, _S_TIP_AUTHOR, t_users, t_draw)
    )
    t_ts = _uniform(seed, _S_TIP_TS, t_users, t_draw)
    t_val = _TIP_VALUES[_categorical(_uniform(seed, _S_TIP_VALUE, t_users, t_draw), _TIP_CDF)]

    # clicks: uniformly random authors, label 0 — negatives for a ranker
    c_rows, c_draw = _events(users, n_clicks)
    c_users = users[c_rows]
    c_author = np.minimum(
        (_uniform(seed, _S_CLICK_AUTHOR, c_users, c_draw) * a).astype(np.int64), a - 1
    )
    c_ts = _uniform(seed, _S_CLICK_TS, c_users, c_draw)

    rows = np.concatenate([t_rows, c_rows])
    author = np.concatenate([t_author, c_author])
    ts = cfg.start_us + np.floor(np.concatenate([t_ts, c_ts]) * cfg.window_us).astype(np.int64)
    action = np.concatenate([np.zeros(len(t_rows), np.int8), np.ones(len(c_rows), np.int8)])
    value = np.concatenate([t_val, np.ones(len(c_rows))])

    # order by (user, time, action, author); then drop exact key repeats (astronomically rare,
    # but the contract demands unique keys). Both steps are per user, so chunk-independent.
    order = np.lexsort((author, action, ts, rows))
    rows, author, ts, action, value = (x[order] for x in (rows, author, ts, action, value))
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = (
        (rows[1:] != rows[:-1])
        | (author[1:] != author[:-1])
        | (ts[1:] != ts[:-1])
        | (action[1:] != action[:-1])
    )
    rows, author, ts, action, value = (x[keep] for x in (rows, author, ts, action, value))

    return pa.Table.from_arrays(
        [
            _user_id_array(lo, hi).take(pa.array(rows)),
            aids.take(pa.array(author)),
            pa.array(ts, type=TS),
            pa.array(["tip", "click"]).take(pa.array(action)),
            pa.array(value, type=pa.float64()),
            pa.array((1 - action).astype(np.int8), type=pa.int8()),
        ],
        schema=INTERACTIONS.schema,
    )


#: Actions of the impressions model, strongest last; a row carries its impression's strongest.
IMPRESSION_ACTIONS: tuple[str, ...] = ("impression", "click", "tip")


def _impression_block(
    cfg: SyntheticConfig, lo: int, hi: int, auth: AuthorLatents, aids: pa.Array
) -> pa.Table:
    """Users ``lo..hi-1`` with impressions: one row per shown author and session (see
    :class:`ImpressionsConfig`); every draw is a function of (seed, stream, user, draw index)."""
    imp = cfg.impressions
    lat = user_latents(cfg, lo, hi)
    users = lat.index
    seed, shown = cfg.seed, imp.shown_per_session

    n_sessions = np.maximum(
        1, _poisson(_uniform(seed, _S_NSESSIONS, users, 0), imp.sessions_per_user)
    )
    rows, draw = _events(users, n_sessions * shown)  # draw: the user's impression index
    r_users = users[rows]
    session, position = draw // shown, draw % shown

    # the feed: popularity-weighted authors, one CDF for everyone (a (1, A) weight row)
    author = _sample_rows(
        auth.popularity[None, :],
        np.zeros(len(rows), dtype=np.int64),
        _uniform(seed, _S_SHOWN_AUTHOR, r_users, draw),
    )
    # session instants keep room for the last impression inside the window
    span = max(1, cfg.window_us - (shown - 1) * _IMPRESSION_STEP_US)
    start = np.floor(_uniform(seed, _S_SESSION_TS, r_users, session) * span).astype(np.int64)
    ts = cfg.start_us + start + position * _IMPRESSION_STEP_US

    # odds = exp(bias) * exp(taste * m) * pop ** popularity; p = odds / (1 + odds)
    pop_factor = np.array([float(p) ** imp.click_popularity for p in auth.popularity])
    c_odds = math.exp(imp.click_bias) * _taste_odds(lat, auth, rows, author, imp.click_taste)
    c_odds = c_odds * pop_factor[author]
    t_odds = math.exp(imp.tip_bias) * _taste_odds(lat, auth, rows, author, imp.tip_taste)
    clicked = _uniform(seed, _S_SHOWN_CLICK, r_users, draw) < c_odds / (1.0 + c_odds)
    # a tip is drawn for every impression but counts only on a clicked one: tips ⊆ clicks, and
    # the click draws never depend on the tip parameters
    tipped = clicked & (_uniform(seed, _S_SHOWN_TIP, r_users, draw) < t_odds / (1.0 + t_odds))
    code = np.where(tipped, 2, np.where(clicked, 1, 0)).astype(np.int8)  # IMPRESSION_ACTIONS
    tip_value = _TIP_VALUES[
        _categorical(_uniform(seed, _S_SHOWN_TIP_VALUE, r_users, draw), _TIP_CDF)
    ]
    value = np.where(tipped, tip_value, np.where(clicked, 1.0, 0.0))

    # an author drawn twice in one session is shown once, at its first position (per user,
    # so chunk-independent); the survivors are ordered by (user, time, author)
    order = np.lexsort((position, author, session, rows))
    keep = np.ones(len(rows), dtype=bool)
    o_rows, o_sess, o_auth = rows[order], session[order], author[order]
    keep[1:] = (
        (o_rows[1:] != o_rows[:-1]) | (o_sess[1:] != o_sess[:-1]) | (o_auth[1:] != o_auth[:-1])
    )
    sel = order[keep]
    sel = sel[np.lexsort((author[sel], ts[sel], rows[sel]))]
    rows, author, ts, code, value = (x[sel] for x in (rows, author, ts, code, value))
    # two sessions 10 s apart showing one author at the same instant would repeat a key: the
    # contract demands unique keys (astronomically rare; the later session's row is dropped)
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (author[1:] != author[:-1]) | (ts[1:] != ts[:-1])
    rows, author, ts, code, value = (x[keep] for x in (rows, author, ts, code, value))

    return pa.Table.from_arrays(
        [
            _user_id_array(lo, hi).take(pa.array(rows)),
            aids.take(pa.array(author)),
            pa.array(ts, type=TS),
            pa.array(IMPRESSION_ACTIONS).take(pa.array(code)),
            pa.array(value, type=pa.float64()),
            pa.array((code == 2).astype(np.int8), type=pa.int8()),
        ],
        schema=INTERACTIONS.schema,
    )


def generate_interactions(cfg: SyntheticConfig) -> Iterator[pa.Table]:
    """Interactions (INTERACTIONS schema) in chunks of ``cfg.chunk_users`` users.

    Engagements only (``impressions.enabled`` false): each user has
    max(1, Poisson(mean_tips_per_user)) tips (label 1, value = gift amount) to authors drawn by
    taste match and popularity, and Poisson(2 * mean) clicks (label 0, value 1.0) on uniformly
    random authors, all uniformly timed in the window.

    Impressions: one row per shown author and session with its strongest action
    (:data:`IMPRESSION_ACTIONS`): ``impression`` (label 0, value 0.0), ``click`` (label 0,
    value 1.0) or ``tip`` (label 1, value = gift amount; a tipped author was clicked). A click
    task is positive on ``{click, tip}``, a gift task on ``{tip}``.
    """
    auth = author_latents(cfg)
    aids = pa.array(author_ids(cfg.n_authors), type=pa.string())
    make = _impression_block if cfg.impressions.enabled else _interaction_block
    block = max(1, _MAX_CELLS // cfg.n_authors)
    for lo, hi in _chunks(cfg):
        parts = [make(cfg, b, min(b + block, hi), auth, aids) for b in range(lo, hi, block)]
        yield parts[0] if len(parts) == 1 else pa.concat_tables(parts)


# --------------------------------------------------------------------------- writing


def _write_parquet(path: Path, schema: pa.Schema, tables: Iterable[pa.Table]) -> int:
    """Stream tables into ``path`` via a temp file + os.replace, so readers never see half."""
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with pq.ParquetWriter(tmp, schema, coerce_timestamps="us") as w:
            for t in tables:
                w.write_table(t)
                n += t.num_rows
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


def write_synthetic(cfg: SyntheticConfig, out_dir: str | Path) -> dict[str, int]:
    """Write authors/users/interactions parquet files into ``out_dir``; return row counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "authors": _write_parquet(out / "authors.parquet", AUTHORS.schema, [generate_authors(cfg)]),
        "users": _write_parquet(out / "users.parquet", USERS.schema, generate_users(cfg)),
        "interactions": _write_parquet(
            out / "interactions.parquet", INTERACTIONS.schema, generate_interactions(cfg)
        ),
    }
