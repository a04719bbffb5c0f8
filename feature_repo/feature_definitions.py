"""Feast definitions of the MSPA feature store: what ``feast plan`` / ``feast apply`` register here.

A plain Feast repo (Feast docs, "Feature repository":
https://docs.feast.dev/reference/feature-repository): ``feature_store.yaml`` says where the
registry and stores are, this file declares the objects. Which feature sets it declares is data,
listed in ``feature_sets.yaml`` beside this file, with the dataset's TTL policy:

- entities ``user`` (``user_id``) and ``author`` (``author_id``);
- per feature set ``fs``: sources ``preferences__{fs}`` / ``author_profiles__{fs}``, feature
  views ``user_preferences__{fs}`` / ``author_profiles__{fs}``, the on-demand view
  ``user_author_cosine__{fs}`` and the services ``baseline__{fs}``, ``with_preference__{fs}``,
  ``with_author__{fs}``, ``all__{fs}`` (:mod:`mspa_features.serving.definitions`);
- per leak set ``n`` (LIS, tagged ``leaked=true``): ``leak__{n}`` and ``lis__{n}``
  (:mod:`ranker_hooks.lis.feast_defs`);
- per aligned set ``fs``: ``aligned_author_id__{fs}`` and ``aligned__{fs}``
  (:mod:`ranker_hooks.aligned_id.feast_defs`);
- per compact set ``cs`` (``template_pca32_int8``): byte-coded views, on-demand decoders and the
  services of a full set (:mod:`mspa_features.serving.compact`).

A run's store folder (``<workspace>/feast/<run>/<kind>/``) holds a copy of this file beside the
``feature_sets.yaml`` mspa keeps there, so the CLI there declares what mspa registered.
SparkSources replace FileSources when the yaml Feast uses has ``offline_store: spark``
(``FEAST_FS_YAML_FILE_PATH=stores/spark.yaml feast plan``).
"""

import warnings
from pathlib import Path

from mspa_features.serving.definitions import entities
from mspa_features.serving.repo import (
    FEATURE_SETS_FILE,
    bind,
    feature_set_objects,
    load_feature_sets,
    offline_kind,
    source_kind,
)

# Feast warns on every plan/apply of a repo with an on-demand view that ODFVs are "experimental"
# and scale poorly for offline retrieval. This repo's one on-demand view per set (the cosine) is
# deliberate and small, so the warning says nothing a user can act on: silenced here, in the
# module the Feast CLI imports, for that one message only (mspa's own runs log it instead).
warnings.filterwarnings(
    "ignore",
    message=r"On demand feature view is an experimental feature",
    category=RuntimeWarning,
    module=r"feast\.feature_store$",
)

_HERE = Path(__file__).parent
_SETS = load_feature_sets(_HERE / FEATURE_SETS_FILE)
_SOURCE = source_kind(offline_kind(_HERE))

# The join keys of every view below.
user, author = entities()

# The MSPA feature sets listed in feature_sets.yaml.
_objects = feature_set_objects(_SETS, source=_SOURCE)

# Leak sets (LIS upper bounds) and aligned ID sets, when the file lists any: declared here too, so
# `feast apply` in a run's store never deletes what `mspa lis` registered.
if _SETS.leak_sets:
    from ranker_hooks.lis.feast_defs import build_leak_definitions, read_leak_set

    _objects += build_leak_definitions(
        {name: read_leak_set(e.path) for name, e in _SETS.leak_sets.items()},
        source_kind=_SOURCE,
    )
for _entry in _SETS.aligned_sets.values():
    from ranker_hooks.aligned_id.feast_defs import build_aligned_definitions, read_aligned_folder

    _objects += build_aligned_definitions(
        read_aligned_folder(_entry.path), source_kind=_SOURCE, ttl=_SETS.ttl
    )

# Compact sets (`mspa compact`): reduced, quantised copies of a feature set's embeddings.
if _SETS.compact_sets:
    from mspa_features.serving.compact import build_compact_definitions

    _objects += build_compact_definitions(
        {name: e.path for name, e in _SETS.compact_sets.items()}, ttl=_SETS.ttl, source_kind=_SOURCE
    )

# feast apply collects the Feast objects bound to module-level names (one name per object).
bind(globals(), [user, author, *_objects])
