"""mspa-features: MLLM preference features for production rankers, with AIS/LIS proof.

Heavy dependencies (torch, feast, transformers) are imported lazily inside the functions that
need them, so ``import mspa_features`` and ``mspa --help`` stay fast. Spark is never imported by
the library: the Spark jobs live in ``spark_jobs/`` and call it.
"""

__version__ = "0.1.0"

from mspa_features import _moved

_moved.install()
del _moved
