"""Feast definitions for ``feast apply`` in this folder (the library does the same in code).

Feature sets to register come from ``MSPA_FEATURE_SETS``, a JSON object {name: folder}, e.g.
``MSPA_FEATURE_SETS='{"template": "../workspace/features/movielens/template"}'``; relative
folders resolve against this file's folder. Unset, the MovieLens template backfill is used when
it exists; otherwise only the two entities are registered. ``MSPA_FEAST_SOURCE=spark`` builds
SparkSources (for ``feature_store.spark.yaml``) instead of FileSources.
"""

import json
import os
import re
from pathlib import Path

from mspa_features.serving.definitions import build_definitions

_HERE = Path(__file__).resolve().parent
_DEFAULT = {"template": _HERE.parent / "workspace" / "features" / "movielens" / "template"}


def _feature_sets() -> dict[str, Path]:
    raw = os.environ.get("MSPA_FEATURE_SETS")
    if raw:
        sets = json.loads(raw)
        if not isinstance(sets, dict):
            raise ValueError(f"MSPA_FEATURE_SETS must be a JSON object {{name: path}}, got {raw!r}")
        return {name: (_HERE / path).resolve() for name, path in sets.items()}
    return {name: path for name, path in _DEFAULT.items() if path.is_dir()}


# feast apply registers every Feast object bound to a module-level name.
_objects = build_definitions(
    _feature_sets(), source_kind=os.environ.get("MSPA_FEAST_SOURCE", "file")
)
for _obj in _objects:
    globals()[re.sub(r"\W", "_", _obj.name)] = _obj
del _obj
