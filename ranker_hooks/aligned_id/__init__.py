"""The aligned-ID AIS variant: composer author embeddings mapped into the ranker's ID space.

* ``adapter``: the content -> ID-embedding adapter fitted on warm authors before T;
* ``build``: the aligned set over every author snapshot; ``feast_defs``: its Feast view.
"""


def __getattr__(name: str) -> object:
    # names of the old ``ranker_hooks.aligned_id`` module (now a package) keep resolving, with a warning
    from mspa_features._moved import package_getattr

    return package_getattr(__name__, name)
