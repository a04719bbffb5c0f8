"""The AIS/LIS ablation: one ranker per variant on a temporal split, tracked in MLflow.

* ``split``: the temporal train/evaluation split (T0, T, horizon);
* ``variants``: what each variant reads (feature service, injected parts, leaked or not);
* ``run``: :func:`run_ablation`, training and scoring every variant over seeds;
* ``report``: the AIS/LIS tables and plots; ``tracking``: the MLflow parent and nested runs.
"""

_PUBLIC = {"run_ablation", "AblationConfig", "AblationResult", "VariantResult",
           "load_ablation_config", "make_ranker"}


def __getattr__(name: str) -> object:
    # ``from ranker_hooks.ablation import run_ablation`` keeps working without importing the
    # runner (and torch) whenever only ``report`` or ``tracking`` is needed; other names of
    # the old ``ranker_hooks.ablation`` module resolve with a deprecation warning.
    if name in _PUBLIC:
        from ranker_hooks.ablation import run

        return getattr(run, name)
    from mspa_features._moved import package_getattr

    return package_getattr(__name__, name)
