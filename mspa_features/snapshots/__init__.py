"""Point-in-time snapshots: the pure rules a backfill, the composer and the eval sets share.

* ``history``: THE point-in-time history rule (a user's history as of instant ``s`` is built
  from their positives strictly before ``s``) and the author content valid at ``s``;
* ``partitions``: partition dates and snapshot instants, and the atomic publishing of
  ``ds=YYYY-MM-DD`` partitions (staging, swap, manifest, recovery after a kill, reads);
* ``backfill``: what a backfill is (its settings, counts and output folder).

Nothing here imports Spark: the Spark plans, UDFs and session live in :mod:`spark_jobs`, which
calls these rules (see docs/architecture.md).
"""
