"""Batch jobs (PySpark): thin entry points that call the library.

Point-in-time preference and author-profile backfills land here (issue: Spark backfills and the
Feast feature repo). Each job is runnable with ``spark-submit`` and from ``mspa backfill``.
"""
