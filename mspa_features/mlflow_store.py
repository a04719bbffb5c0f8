"""Where MLflow puts artifacts, for every command that tracks (ablations, alignment), and how
a command opens its run (:func:`start_run`).

MLflow gives a new experiment on a SQLite tracking store the artifact root ``./mlruns`` of
whatever folder the command ran in, so a run's artifacts scatter across working directories and
the database alone no longer reproduces it. Here a SQLite store keeps them beside the database
(``<db folder>/mlartifacts``); a tracking server keeps its own choice (``--artifacts-destination``
or ``--default-artifact-root``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mspa_features.errors import InvalidValueError
from mspa_features.names import sqlite_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


def _sqlite_db(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///<path>`` tracking URI; None for any other store."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def artifact_location(tracking_uri: str) -> str | None:
    """The artifact root for a new experiment on ``tracking_uri``.

    Returns:
        ``file://<db folder>/mlartifacts`` for ``sqlite:///<path>``; None (the server or store
        decides) for anything else.
    """
    db = _sqlite_db(tracking_uri)
    return None if db is None else (db.resolve().parent / "mlartifacts").as_uri()


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


def start_run(
    tracking_uri: str | None,
    experiment: str,
    *,
    run_name: str,
    tags: Mapping[str, str],
    workspace: str | Path | None = None,
) -> tuple[MlflowClient, str]:
    """Open a new run of one command (drift, recall, compact, gallery) in ``experiment``.

    Args:
        tracking_uri: the tracking store; None: the workspace's default
            (:func:`workspace_tracking_uri`). A SQLite store's folder is created if missing.
        experiment: created when missing (:func:`ensure_experiment`).
        run_name: the run's name.
        tags: the run's tags (``mspa.stage``, ``mspa.run``, ...).
        workspace: the workspace whose store a None ``tracking_uri`` means.

    Returns:
        The client on that store and the new run's id: log to it, then
        ``client.set_terminated(run_id)``.

    Raises:
        InvalidValueError: neither a tracking URI nor a workspace is given.
    """
    from mlflow.tracking import MlflowClient

    if tracking_uri is None:
        if workspace is None:
            raise InvalidValueError(
                "tracking_uri", None, "a tracking URI, or a workspace whose default store to use"
            )
        tracking_uri = workspace_tracking_uri(workspace)
    db = _sqlite_db(tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its folder
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = ensure_experiment(tracking_uri, experiment)
    run = client.create_run(exp, run_name=run_name, tags=dict(tags))
    return client, run.info.run_id
