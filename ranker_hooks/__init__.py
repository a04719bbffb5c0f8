"""Ranker hooks: inject MSPA features into a ranking model, leak builders and AIS/LIS ablations.

Arrives with the ranker/AIS and LIS issues; data flows raw events -> spark_jobs -> offline store
-> Feast -> ranker_hooks -> MLflow.
"""
