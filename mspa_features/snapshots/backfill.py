"""What a backfill of the ``preferences`` and ``author_profiles`` features is: its settings
(:class:`BackfillConfig`), its output folder and the point-in-time semantics its rows obey.

This is the library side; the Spark job that computes the rows lives in :mod:`spark_jobs`
(until 0.2 all of it was ``mspa_features.backfill``, which now resolves here with a warning):

* ``spark_jobs.session``: ``build_spark_session``, ``SPARK_DEFAULTS``, job sessions, progress;
* ``spark_jobs.plans``: the Spark plans (``preference_requests``: the (user, instant) pairs due);
* ``spark_jobs.udfs``: the ``mapInArrow`` bodies (history, compose, encode inside a worker);
* ``spark_jobs.backfill``: the drivers ``backfill_preferences``, ``backfill_authors``,
  ``run_backfill``;
* ``spark_jobs.submit``: the one ``spark-submit`` entry (``python -m spark_jobs``).

The history rule is :mod:`mspa_features.snapshots.history`; partition dates, publishing,
manifests and reads are :mod:`mspa_features.snapshots.partitions` (both re-exported here).

Preference semantics (the point-in-time rules a ranker's training join relies on):

* The snapshot instant of partition ``ds=D`` is ``s = D 00:00:00 UTC``. Cadence ``daily``:
  every day in ``[start, end]``; ``weekly``: only the Mondays in ``[start, end]``.
* A user's row at ``s`` is built ONLY from their positive interactions (``label == 1``) with
  ``event_timestamp < s`` (strictly), by THE history rule
  (:func:`mspa_features.snapshots.history.positive_histories`): distinct authors at first
  engagement, oldest first (ties by author id), ``history_count`` = every positive before ``s``
  (repeats included), ``history_last_ts`` = the newest of them, ``event_timestamp = s``. Author
  content is taken point-in-time too: each author's newest content snapshot with
  ``event_timestamp < s`` (an author with no snapshot yet is left out of the text; the count
  still includes the interaction). The composer's ``build_histories`` gives the same histories.
* A user gets a row at ``s`` only if they have at least one NEW positive in ``[prev, s)``, with
  ``prev = s - 1 day`` (daily) or ``s - 7 days`` (weekly). Users with nothing new are not
  recomputed: their previous row stays valid through the feature view's TTL. ``prev`` of the
  first partition is derived from the cadence (the previous cadence instant), never from what
  earlier runs wrote, so every partition is a function of the input data and its ``ds`` only:
  a rerun of any range, a range split into pieces, or a rerun after a kill all give the same
  rows.
* ``created_timestamp = s`` (for authors: the content snapshot's ``event_timestamp``), NOT the
  wall clock: a wall-clock value would make every rerun differ and break row-for-row
  reproducibility. Feast only uses it to break ties between rows with equal event timestamps,
  which cannot occur within one feature set.
* Users whose history has no usable author (no content as of ``s``) and authors with neither
  text nor frames go to quarantine with the reason; per partition and in total
  ``requested == written + quarantined`` (:class:`~mspa_features.errors.ReconciliationError`
  otherwise), checked before anything is published.

Author profiles: one row per author per content snapshot (the ``authors`` contract's
``event_timestamp``) whose UTC date falls in ``[start, end]``, in partition ``ds`` = that date,
``event_timestamp`` = the snapshot's. The content valid at the range start is never lost: an
author whose newest snapshot before ``start`` is not replaced exactly at ``start`` gets a row
in ``ds=start`` with ``event_timestamp = start`` (``created_timestamp`` = the snapshot's
time), so a range that begins after an author's content still serves it. Counts carry notes

of the same range (same partitioning, same encoder batches) and whenever the shared composer
cache (``Workspace.composer_cache``) serves them; a partition computed inside a different range
can differ in the last float32 bits (~1e-7), because the encoder pads each batch to its longest
text and batch mates change with the range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mspa_features.config import RunConfig, Workspace
from mspa_features.config_base import StrictModel
from mspa_features.data.contracts import AUTHOR_PROFILES, PREFERENCES
from mspa_features.names import feature_set_name

# Re-exported: the old ``mspa_features.backfill`` names that stayed in the library.
from mspa_features.snapshots.history import AuthorSnapshots, UserHistory, build_histories
from mspa_features.snapshots.partitions import (
    MANIFEST,
    PART_FILE,
    QUARANTINE_DIR,
    STAGING_DIR,
    BackfillCounts,
    PartitionCounts,
    Progress,
    parse_date,
    partition_dates,
    read_manifest,
    read_partitions,
    recover_partitions,
    snapshot_instant,
)

__all__ = [
    "ENTITIES",
    "MANIFEST",
    "PART_FILE",
    "QUARANTINE_DIR",
    "STAGING_DIR",
    "AuthorSnapshots",
    "BackfillConfig",
    "BackfillCounts",
    "PartitionCounts",
    "Progress",
    "UserHistory",
    "build_histories",
    "feature_set_dir",
    "parse_date",
    "partition_dates",
    "read_manifest",
    "read_partitions",
    "recover_partitions",
    "snapshot_instant",
]

#: CLI entity names -> contract names.
ENTITIES: dict[str, str] = {"users": PREFERENCES.name, "authors": AUTHOR_PROFILES.name}


class BackfillConfig(StrictModel):
    """How a backfill runs: cadence, composer, output feature set and Spark settings."""

    cadence: Literal["daily", "weekly"] = Field(
        "daily", description="daily: a partition per day; weekly: one per Monday"
    )
    composer: Literal["template", "llm"] = Field(
        "template", description="template (no LLM) or llm (the run config's composer backend)"
    )
    feature_set: str | None = Field(
        None, description="output folder under features/<dataset>/ (default: composer name)"
    )
    master: str = Field("local[*]", description="Spark master when the job starts its session")
    spark_conf: dict[str, str] = Field(
        default_factory=dict, description="extra Spark settings (spark.driver.memory, ...)"
    )
    batch_size: int = Field(64, ge=1, description="histories/authors composed per call")
    partitions: int | None = Field(
        None, ge=1, description="Spark partitions of the compose stage (default: parallelism)"
    )
    users: list[str] | None = Field(
        None,
        min_length=1,
        description="only these users get preference snapshots (a user sample; null: all)",
    )
    authors: list[str] | None = Field(
        None,
        min_length=1,
        description="only these authors get profiles (the sample's authors; null: all)",
    )

    @field_validator("feature_set")
    @classmethod
    def _folder_name(cls, v: str | None) -> str | None:
        # The folder name becomes part of Feast object names at `mspa register`: checked now,
        # before Spark spends minutes on a set that could never be registered.
        return None if v is None else feature_set_name(v, "feature_set")

    @property
    def feature_set_name(self) -> str:
        return self.feature_set or self.composer


def feature_set_dir(cfg: RunConfig, bf: BackfillConfig) -> Path:
    """``features/<dataset>/<feature_set>`` in the run's workspace."""
    return Workspace(cfg.workspace).features(cfg.name) / bf.feature_set_name
