"""Ablation variants: what a ranker is trained on, and the hook LIS variants use to leak.

A :class:`Variant` names a feature service, what of it to inject, its kind (``baseline`` |
``ais`` | ``lis``) and whether it is leaked. An optional :class:`VariantHook` transforms the
frames before training or the model after it; the LIS future-ID variant, for example, trains
``M_T``, warm-starts a copy through ``T + n`` and swaps its author table into ``M_T``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mspa_features.errors import IncompatibleSettingsError, UnknownNameError
from mspa_features.serving.definitions import service_name
from ranker_hooks.inject import InjectionSpec

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore

    from ranker_hooks.ablation.split import TemporalSplit
    from ranker_hooks.rankers.base import Ranker, RankerData

VariantKind = Literal["baseline", "ais", "lis"]
KINDS: tuple[str, ...] = ("baseline", "ais", "lis")

# The built-in AIS variants, in report order (``llm_text`` needs an ``llm`` feature set).
BUILTIN_VARIANTS = ("baseline", "preference", "author", "cosine", "all", "llm_text", "text_tokens")


@dataclass
class HookContext:
    """What a hook may use: the run, the store, the window, the seed and helpers.

    Attributes:
        make_ranker: a fresh, unfitted ranker of the ablation's backend for ``seed``.
        read: ``read(service, entity_df, spec)`` -> RankerData through Feast historical reads.
        interactions: every interaction (entity columns), for hooks that look past ``T``.
        train_rows, test_rows: the entity frames of the two windows.
    """

    store: FeatureStore
    split: TemporalSplit
    seed: int
    make_ranker: Callable[[], Ranker]
    read: Callable[[str, pd.DataFrame, InjectionSpec], RankerData]
    interactions: pd.DataFrame
    train_rows: pd.DataFrame
    test_rows: pd.DataFrame
    extra: dict[str, Any] = field(default_factory=dict)


class VariantHook:
    """Extension point of a variant; both steps default to doing nothing.

    Subclass it (a class, not a closure, so a variant stays picklable) and override one or both.
    """

    def prepare(
        self, train: RankerData, test: RankerData, ctx: HookContext
    ) -> tuple[RankerData, RankerData]:
        """Transform the training and evaluation rows (e.g. add a leaked column)."""
        return train, test

    def after_fit(self, ranker: Ranker, ctx: HookContext) -> Ranker:
        """Transform the model trained on ``[T0, T)`` before it scores ``[T, T + w)``."""
        return ranker


@dataclass(frozen=True)
class Variant:
    """One row of an ablation.

    Attributes:
        name: unique within an ablation (``baseline``, ``preference``, ``lis_future_id``...).
        kind: ``baseline`` (exactly one per ablation), ``ais`` or ``lis``.
        service: the Feast feature service read for the rows (``all__template``).
        spec: which service features enter the matrix and how.
        leaked: built from future data; must be True for ``lis`` and False otherwise.
        hook: optional transformation of the frames or the trained model.
        description: one line for tables.
        leak_source: for ``lis`` variants, what the leak is read from beyond ``service`` (the
            leak view, or the future interactions a hook trains on); recorded in the results
            and MLflow.
    """

    name: str
    kind: VariantKind
    service: str
    spec: InjectionSpec = field(default_factory=InjectionSpec)
    leaked: bool = False
    hook: VariantHook | None = None
    description: str = ""
    leak_source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnknownNameError("variant kind", self.kind, KINDS, hint=f"variant {self.name!r}")
        if self.leaked != (self.kind == "lis"):
            raise IncompatibleSettingsError(
                {"variant": self.name, "leaked": self.leaked, "kind": self.kind},
                "leaked features are for kind 'lis' only, and every lis variant is leaked",
            )


def builtin_variant(
    name: str, feature_set: str, llm_feature_set: str, spec: InjectionSpec
) -> Variant:
    """The built-in variant ``name`` (one of :data:`BUILTIN_VARIANTS`) on ``feature_set``.

    ``spec`` carries the token settings; the columns are fixed per variant.

    Raises:
        ValueError: unknown name.
    """
    fs = feature_set
    tok = {"max_tokens": spec.max_tokens, "token_buckets": spec.token_buckets}
    table: dict[str, tuple[str, InjectionSpec, str]] = {
        "baseline": (service_name("baseline", fs), InjectionSpec(), "IDs only"),
        "preference": (
            service_name("with_preference", fs),
            InjectionSpec(columns=("pref_emb", "history_count")),
            "+ user preference embedding",
        ),
        "author": (
            service_name("with_author", fs),
            InjectionSpec(columns=("author_emb",)),
            "+ author embedding",
        ),
        "cosine": (
            service_name("all", fs),
            InjectionSpec(columns=("pref_author_cosine",)),
            "+ cosine(preference, author)",
        ),
        "all": (
            service_name("all", fs),
            InjectionSpec(
                columns=("pref_emb", "history_count", "author_emb", "pref_author_cosine")
            ),
            "+ preference, author, cosine",
        ),
        "llm_text": (
            service_name("all", llm_feature_set),
            InjectionSpec(
                columns=("pref_emb", "history_count", "author_emb", "pref_author_cosine")
            ),
            f"'all' on LLM-composer text ({llm_feature_set})",
        ),
        "text_tokens": (
            service_name("all", fs),
            InjectionSpec(
                columns=("pref_text", "author_text"), dense=False, text_tokens=True, **tok
            ),
            "+ hashed preference/author text tokens",
        ),
    }
    if name not in table:
        raise UnknownNameError("variant", name, BUILTIN_VARIANTS, hint="the built-in variants")
    service, vspec, desc = table[name]
    kind: VariantKind = "baseline" if name == "baseline" else "ais"
    return Variant(name=name, kind=kind, service=service, spec=vspec, description=desc)


__all__ = [
    "BUILTIN_VARIANTS",
    "HookContext",
    "Variant",
    "VariantHook",
    "VariantKind",
    "builtin_variant",
]
