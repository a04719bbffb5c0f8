"""Where MLflow puts artifacts, for every command that tracks (ablations, alignment).

MLflow gives a new experiment on a SQLite tracking store the artifact root ``./mlruns`` of
whatever folder the command ran in, so a run's artifacts scatter across working directories and
the database alone no longer reproduces it. Here a SQLite store keeps them beside the database
(``<db folder>/mlartifacts``); a tracking server keeps its own choice (``--artifacts-destination``
or ``--default-artifact-root``).
"""

from __future__ import annotations

from pathlib import Path

from mspa_features.names import sqlite_uri


def artifact_location(tracking_uri: str) -> str | None:
    """The artifact root for a new experiment on ``tracking_uri``.

    Returns:
        ``file://<db folder>/mlartifacts`` for ``sqlite:///<path>``; None (the server or store
        decides) for anything else.
    """
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None


def ensure_experiment(tracking_uri: str, name: str) -> str:
    """The id of experiment ``name`` on ``tracking_uri``, created (with
    :func:`artifact_location`) when missing. Source: ``mlflow.tracking.MlflowClient``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(tracking_uri))


def workspace_tracking_uri(workspace: str | Path) -> str:
    """The default tracking store of a workspace: ``sqlite:///<workspace>/mlflow.db`` (a path
    holding ``?`` or ``%`` escaped by :func:`mspa_features.names.sqlite_uri`)."""
    return sqlite_uri(Path(workspace) / "mlflow.db")
