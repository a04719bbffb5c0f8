"""Transitional (0.2): ``mspa_features.backfill`` was split; this module only forwards.

* the library side (BackfillConfig, counts, partition dates, publishing, reads, the history
  rule) is :mod:`mspa_features.snapshots` (``backfill``, ``partitions``, ``history``);
* the Spark side moved to :mod:`spark_jobs`: ``build_spark_session`` (``spark_jobs.session``),
  ``preference_requests`` (``spark_jobs.plans``), the UDFs (``spark_jobs.udfs``) and the
  drivers ``backfill_preferences``, ``backfill_authors``, ``run_backfill``
  (``spark_jobs.backfill``).

It is deleted, and the old path aliased to :mod:`mspa_features.snapshots.backfill` in
``mspa_features/_moved.py``, once the last callers (the main job's move to the CLI layer) have
landed; until then its Spark names are looked up lazily, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import warnings

from mspa_features.snapshots.backfill import *
from mspa_features.snapshots.backfill import __all__  # noqa: F401 (the same public names)

_SPARK = {
    "build_spark_session": "spark_jobs.session",
    "preference_requests": "spark_jobs.plans",
    "backfill_preferences": "spark_jobs.backfill",
    "backfill_authors": "spark_jobs.backfill",
    "run_backfill": "spark_jobs.backfill",
}


def __getattr__(name: str) -> object:
    if name not in _SPARK:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"{__name__}.{name} moved to {_SPARK[name]}.{name}", DeprecationWarning, 2)
    return getattr(importlib.import_module(_SPARK[name]), name)
