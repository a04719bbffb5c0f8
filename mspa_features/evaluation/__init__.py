"""Offline evaluation of composed features (MSPA "Offline Performance").

* ``datasets``: U2A questions and A2A triples built from the contracts;
* ``metrics``: pure metric functions (AUC/UAUC/GAUC, Acc@m, Recall/NDCG@K, bootstrap CIs);
* ``baselines``: leak-free popularity, co-occurrence and random references;
* ``composer_eval``: Acc@m by generation and by embedding, U2A/A2A for a composer.
"""


def __getattr__(name: str) -> object:
    # names of the old ``mspa_features.evaluation`` module (now a package) keep resolving, with a warning
    from mspa_features._moved import package_getattr

    return package_getattr(__name__, name)
