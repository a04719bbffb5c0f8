"""LIS variants for the ablation runner: one per registered leak set and horizon.

* ``lis_future_id_n<n>``: the baseline ranker M_T (IDs only), then :class:`FutureIdHook`
  warm-starts a copy on ``[T, T+n)`` and swaps its author table into M_T before scoring
  (the LIS paper's leak 1; no Feast view needed, the swap happens on the model);
* ``lis_similar_items_n<n>``: IDs + the mean M_T embedding of each author's top-5 posterior
  neighbours (service ``lis__similar_items_n<n>``);
* ``lis_next_positive_n<n>``: IDs + the embedding of the user's next positive author
  (service ``lis__next_positive_n<n>``).

Pass them to :func:`ranker_hooks.ablation.run.run_ablation` as ``extra_variants``; the leak guard
lets them (and only them) read views tagged ``leaked=true``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from mspa_features.errors import UnknownNameError
from mspa_features.serving.definitions import service_name
from ranker_hooks.ablation.variants import HookContext, Variant, VariantHook
from ranker_hooks.inject import InjectionSpec, service_exists
from ranker_hooks.lis.feast_defs import ROWS, leak_set_name, lis_service_name
from ranker_hooks.lis.leaks.future_id import future_id_swap
from ranker_hooks.lis.leaks.next_positive import NEXT_EMB
from ranker_hooks.lis.leaks.similar_items import MEAN_EMB

if TYPE_CHECKING:
    from feast import FeatureStore

    from ranker_hooks.lis.feast_defs import LeakSet
    from ranker_hooks.rankers.base import Ranker

DEFAULT_HORIZONS = (7, 30)
LIS_KINDS = ("future_id", "similar_items", "next_positive")


class FutureIdHook(VariantHook):
    """After M_T is fitted: build M_{T+n} from it and return M_T with M_{T+n}'s author table.

    A class, not a closure, so the variant stays picklable.

    Args:
        horizon_days: n.
        service: the service the variant reads (its rows for ``[T, T+n)`` come from it too,
            so M_{T+n} trains on exactly the inputs M_T did).
        spec: the variant's injection spec.
    """

    def __init__(self, horizon_days: int, service: str, spec: InjectionSpec) -> None:
        self.horizon_days = int(horizon_days)
        self.service = service
        self.spec = spec

    def after_fit(self, ranker: Ranker, ctx: HookContext) -> Ranker:
        T = ctx.split.split_at
        ts = ctx.interactions["event_timestamp"]
        rows = ctx.interactions.loc[(ts >= T) & (ts < T + timedelta(days=self.horizon_days))]
        rows = rows.reset_index(drop=True)
        future = ctx.read(self.service, rows, self.spec)
        return future_id_swap(ranker, future, self.horizon_days, T=T).swapped


def _values_held(leak: LeakSet, column: str) -> int:
    """Rows of ``leak`` whose ``column`` is not null (0 for an empty set)."""
    import pyarrow.parquet as pq

    if leak.rows == 0:
        return 0
    col = pq.read_table(leak.path / ROWS, columns=[column]).column(column)
    return len(col) - col.null_count


def lis_variants(
    store: FeatureStore,
    feature_set: str,
    *,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    kinds: Sequence[str] = LIS_KINDS,
    leak_sets: Mapping[str, LeakSet] | None = None,
) -> tuple[list[Variant], list[str]]:
    """The LIS variants for ``horizons`` and ``kinds``, and notes on the ones skipped.

    A similar-items or next-positive variant needs its leak set registered
    (``register_leaks``); one that is not is skipped with a note. So is one whose leak set
    (in ``leak_sets``, the written manifests) has no row, or no value in the variant's column
    (no next positive within n days): nothing leaks, there is nothing to measure, and the
    column has no width the ranker could be given.

    Raises:
        ValueError: an unknown kind.
    """
    unknown = [k for k in kinds if k not in LIS_KINDS]
    if unknown:
        raise UnknownNameError("LIS kinds", unknown, LIS_KINDS)
    base = service_name("baseline", feature_set)
    out: list[Variant] = []
    notes: list[str] = []
    for n in horizons:
        if "future_id" in kinds:
            out.append(
                Variant(
                    name=f"lis_future_id_n{n}",
                    kind="lis",
                    service=base,
                    leaked=True,
                    hook=FutureIdHook(n, base, InjectionSpec()),
                    description=f"M_T with M_T+{n}d's author-ID table",
                    leak_source=(
                        f"interactions [T, T+{n}d) via {base} -> M_T+{n}d author-ID table "
                        "swapped into M_T"
                    ),
                )
            )
        for kind, column, what in (
            ("similar_items", MEAN_EMB, f"+ top-5 similar authors from [T, T+{n}d)"),
            ("next_positive", NEXT_EMB, f"+ the user's next positive author (<= {n}d)"),
        ):
            if kind not in kinds:
                continue
            leak_name = leak_set_name(kind, n)
            service = lis_service_name(leak_name)
            leak = (leak_sets or {}).get(leak_name)
            if leak is not None and _values_held(leak, column) == 0:
                held = (
                    "has no row" if leak.rows == 0 else f"holds no {column} in its {leak.rows} rows"
                )
                notes.append(
                    f"variant lis_{kind}_n{n} skipped: leak set {leak_name!r} {held} "
                    f"(window [{leak.window_start}, {leak.window_end})): nothing leaks"
                )
                continue
            if not service_exists(store, service):
                notes.append(
                    f"variant lis_{kind}_n{n} skipped: service {service!r} is not registered "
                    "(build and register the leak sets first)"
                )
                continue
            out.append(
                Variant(
                    name=f"lis_{kind}_n{n}",
                    kind="lis",
                    service=service,
                    spec=InjectionSpec(columns=(column,)),
                    leaked=True,
                    description=what,
                    leak_source=f"leak set {leak_name} ({column}) via {service}",
                )
            )
    return out, notes


__all__ = ["DEFAULT_HORIZONS", "LIS_KINDS", "FutureIdHook", "lis_variants"]
