"""Ranker hooks: inject MSPA features into a ranking model and prove them with AIS/LIS.

Data flows raw events -> spark_jobs -> offline store -> Feast -> ranker_hooks -> MLflow.

* ``inject``: (entity rows, feature service) -> ranker-ready matrix, offline and online;
* ``rankers``: the :class:`~ranker_hooks.rankers.base.Ranker` interface, torch and TFRA rankers;
* ``ablation``: the temporal split, variants, runner, MLflow tracking and tables;
* ``lis``: leak builders, their Feast views, LIS variants and verdicts;
* ``aligned_id``: the content -> ID-embedding adapter and its AIS variant.
"""

import mspa_features  # noqa: F401  (installs the finder for moved module paths)
