"""Batch jobs (PySpark): the Spark side of the point-in-time backfills; they call the library.

* ``session``: the SparkSession builder and the job's child session, progress reporting;
* ``plans``: the Spark plans (the snapshots due, the rows each UDF receives);
* ``udfs``: the ``mapInArrow`` bodies run inside Python workers (history, compose, encode);
* ``backfill``: the drivers (``backfill_preferences``, ``backfill_authors``, ``run_backfill``);
* ``submit``: the one ``spark-submit`` entry, ``spark_jobs/submit.py preferences|authors``
  (also ``python -m spark_jobs``); ``mspa backfill`` and the main job run the same drivers.

The rules the rows obey (the point-in-time history, partition publishing) are the library's
(:mod:`mspa_features.snapshots`): imports flow from here to ``mspa_features``, never back.
"""
