"""Ranker hooks: inject MSPA features into a ranking model, leak builders and AIS/LIS ablations.

Data flows raw events -> spark_jobs -> offline store -> Feast -> ranker_hooks -> MLflow.

* ``base``: the :class:`~ranker_hooks.base.Ranker` interface; ``torch_ranker`` (default) and
  ``tfra_ranker`` implement it;
* ``inject``: (entity rows, feature service) -> ranker-ready matrix, offline and online;
* ``protocol``: the temporal train/evaluation split;
* ``variants``, ``ablation``, ``tracking``, ``report``: the AIS/LIS ablation runner, its
  MLflow logging and its tables/plots;
* ``leaks``, ``lis``, ``id_alignment``: LIS leak builders, verdicts and the ID-embedding adapter.
"""
