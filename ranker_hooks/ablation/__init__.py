"""The AIS/LIS ablation: one ranker per variant on a temporal split, tracked in MLflow.

* ``config``: :class:`AblationConfig`, its loader and the ranker backend it names;
* ``split``: the temporal train/evaluation split (T0, T, horizon);
* ``variants``: what each variant reads (feature service, injected parts, leaked or not);
* ``results``: :class:`AblationResult`, :class:`VariantResult` and the metric names (types only);
* ``run``: :func:`run_ablation`, training and scoring every variant over seeds;
* ``report``: the AIS/LIS tables and plots; ``tracking``: the MLflow parent and nested runs.

``report`` and ``tracking`` import ``results`` and ``config`` only, never the runner.
"""

import importlib

# public name -> the module of this package that defines it
_PUBLIC = {
    "run_ablation": "run",
    "AblationConfig": "config",
    "load_ablation_config": "config",
    "make_ranker": "config",
    "ranker_class": "config",
    "default_tracking_uri": "config",
    "AblationResult": "results",
    "VariantResult": "results",
}


def __getattr__(name: str) -> object:
    # ``from ranker_hooks.ablation import run_ablation`` keeps working without importing the
    # runner (and torch) whenever only ``report`` or ``tracking`` is needed; other names of
    # the old ``ranker_hooks.ablation`` module resolve with a deprecation warning.
    if name in _PUBLIC:
        return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    from mspa_features._moved import package_getattr

    return package_getattr(__name__, name)
