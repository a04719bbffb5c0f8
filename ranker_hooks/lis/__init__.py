"""LIS (the Leakage Impact Score): leak builders, their Feast views, variants and verdicts.

* ``leaks``: future ID embeddings, similar items, next positive, and the leak guard;
* ``feast_defs``: the leak tables' Feast views (tagged ``leaked=true``);
* ``variants``: one LIS variant per leak set and horizon; ``ablation``: ``mspa lis``;
* ``verdicts``: gain/harm/neutral per row from the delta-AUC CI.
"""


def __getattr__(name: str) -> object:
    # names of the old ``ranker_hooks.lis`` module (now a package) keep resolving, with a warning
    from mspa_features._moved import package_getattr

    return package_getattr(__name__, name)
