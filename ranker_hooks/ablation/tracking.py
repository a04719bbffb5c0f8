"""MLflow logging of ablations: one parent run per ablation, one nested run per variant.

Training and tracking are separate steps. The runner first writes everything to disk
(``<workspace>/results/ablation/<run>/``: ``results.json``, the comparison CSV/markdown, the
delta-AUC plot, and the LIS verdicts when LIS ran), then :func:`log_results` logs that folder.
Everything MLflow receives is read back from ``results.json``, so an ablation whose tracking
store was unreachable keeps its results and is logged later without training again
(``mspa runs log <folder>``, or the same ``mspa ablate`` / ``mspa lis`` command rerun).

Parent: params (ablation config, data window, seeds, feature set, run name), tag
``mspa.kind=ablation``, artifacts (every file of the folder and ``ablation_config.json``).
Variant runs: params (service, model_version, seeds, window, n_train/n_test), metrics
(auc, uauc, gauc, logloss, wpauc, delta_auc with CI and p-value), tags (``variant``,
``variant_kind``, ``leaked``) and the Feast feature references used (``feature_refs.json``).
:func:`load_ablation` reads an ablation back for ``mspa runs compare``.

User text (run and experiment names) never goes into an MLflow filter string: runs are
searched by a constant tag filter and matched by name in Python, so any name works (``it's``,
``bob's ais, v2``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pandas as pd

from mspa_features.errors import RunNotFoundError, TrackingError
from mspa_features.evaluation.metric_names import task_key
from mspa_features.mlflow_store import ensure_experiment
from ranker_hooks.ablation.results import (
    COLD_METRICS,
    METRICS,
    TASK_METRICS,
    AblationResult,
    VariantResult,
)

if TYPE_CHECKING:
    from mspa_features.config import RunConfig
    from ranker_hooks.ablation.config import AblationConfig

RESULTS = "results.json"
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_ABLATION_FILTER = "tags.`mspa.kind` = 'ablation'"  # constant: no user text in a filter


# --------------------------------------------------------------------------- results.json


def tracking_fields(
    cfg: AblationConfig, run_cfg: RunConfig, variant_names: Sequence[str] = ()
) -> dict[str, Any]:
    """What ``results.json`` carries beside the results so that it alone can be logged later.

    ``request`` (:func:`request_key`) covers the config, the dataset and the variants beyond
    the built-ins (LIS, aligned_id): a rerun of ``mspa ablate`` never mistakes an LIS run's
    pending results for its own.
    """
    from mspa_features.config import Workspace
    from ranker_hooks.ablation.variants import BUILTIN_VARIANTS

    extra = sorted(n for n in variant_names if n.split("@")[0] not in BUILTIN_VARIANTS)
    return {
        "dataset": run_cfg.name,
        "experiment": cfg.mlflow.experiment,
        "ablation_config": cfg.model_dump(mode="json"),
        "run_config": run_cfg.model_dump(mode="json"),
        "git_commit": git_commit(),
        "inputs": [
            file_input(
                Workspace(run_cfg.workspace).data(run_cfg.name) / "interactions.parquet",
                name=f"{run_cfg.name}/interactions",
            )
        ],
        "request": request_key(cfg, run_cfg, extra_variants=extra),
    }


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the checkout holding ``path`` (default: this package), with ``-dirty`` when
    tracked files differ from it; None outside a git checkout or without git."""
    import subprocess

    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head


def file_input(path: str | Path, *, name: str) -> dict[str, Any]:
    """An input dataset as results.json records it: name, absolute path, rows (parquet) and a
    content digest (sha256 of the bytes, first 16 hex digits), or ``missing``."""
    p = Path(path).resolve()
    if not p.is_file():
        return {"name": name, "source": str(p), "digest": "missing", "rows": None}
    h = hashlib.sha256()
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    rows = None
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(p).metadata.num_rows
    return {"name": name, "source": str(p), "digest": h.hexdigest()[:16], "rows": rows}


def request_key(cfg: AblationConfig, run_cfg: RunConfig, **options: Any) -> str:
    """A hash of what decides an ablation's results (the config less its MLflow section, the
    dataset and any command options): a rerun with the same key may reuse pending results."""
    payload = {
        "ablation": cfg.model_dump(mode="json", exclude={"mlflow"}),
        "dataset": run_cfg.name,
        "workspace": str(Path(run_cfg.workspace).resolve()),
        "options": options,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def read_results(folder: str | Path) -> dict[str, Any]:
    """``results.json`` of an ablation folder (or the file itself).

    Raises:
        RunNotFoundError: no readable results.json there.
    """
    path = Path(folder)
    path = path if path.name == RESULTS else path / RESULTS
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RunNotFoundError(f"no readable ablation results at {path}: {e}") from e
    if not isinstance(doc, dict) or "variants" not in doc or "run" not in doc:
        raise RunNotFoundError(f"{path} is not an ablation results.json (no 'run'/'variants')")
    return doc


def write_results(folder: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``results.json`` atomically (a reader never sees half a file)."""
    path = Path(folder) / RESULTS
    tmp = path.with_name(f".{RESULTS}.tmp")
    tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def set_request(folder: str | Path, request: str) -> None:
    """Record which command produced the results in ``folder`` (a rerun's :func:`request_key`)."""
    write_results(folder, {**read_results(folder), "request": request})


def load_result(folder: str | Path) -> AblationResult:
    """The :class:`~ranker_hooks.ablation.results.AblationResult` recorded in ``folder``'s
    results.json (for tables printed without training)."""
    import dataclasses

    path = Path(folder)
    path = path.parent if path.name == RESULTS else path
    doc = read_results(path)
    names = {f.name for f in dataclasses.fields(VariantResult)}
    return AblationResult(
        run_name=doc["run"],
        variants=[
            VariantResult(**{k: x for k, x in v.items() if k in names}) for v in doc["variants"]
        ],
        results_path=path / RESULTS,
        parent_run_id=doc.get("parent_run_id"),
        tracking_uri=doc.get("tracking_uri") or "",
        window=doc.get("window") or {},
        seeds=list(doc.get("seeds") or []),
        notes=list(doc.get("notes") or []),
        tracking_error=doc.get("mlflow_error"),
    )


def is_logged(doc: dict[str, Any]) -> bool:
    return bool(doc.get("parent_run_id"))


def pending_results(
    results_root: str | Path, request: str | None = None
) -> list[tuple[Path, dict[str, Any]]]:
    """Ablation folders under ``results_root`` whose results were never logged to MLflow
    (newest first), only those of ``request`` (:func:`request_key`) when given."""
    out = []
    root = Path(results_root)
    if not root.is_dir():
        return []
    for path in root.glob(f"*/{RESULTS}"):
        try:
            doc = read_results(path)
        except RunNotFoundError:
            continue
        if is_logged(doc) or (request is not None and doc.get("request") != request):
            continue
        out.append((path.parent, doc))
    out.sort(key=lambda t: t[0].stat().st_mtime, reverse=True)
    return out


# --------------------------------------------------------------------------- logging


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:300]}"


def log_results(folder: str | Path, *, tracking_uri: str | None = None) -> dict[str, Any]:
    """Log the ablation in ``folder`` to MLflow from its ``results.json``; no training.

    Creates the parent run and one nested run per variant, logs every file of the folder as an
    artifact of the parent, then writes the run ids back into ``results.json``. Logging an
    already logged folder changes nothing (its document is returned as is).

    Args:
        folder: ``<workspace>/results/ablation/<run>`` (or its results.json).
        tracking_uri: where to log (default: the ``tracking_uri`` recorded in results.json).

    Returns:
        The updated results document (``parent_run_id`` and each variant's ``mlflow_run_id``).

    Raises:
        RunNotFoundError: no results.json in ``folder``.
        TrackingError: the tracking store cannot be reached or written (one line: the URI and
            the cause); results.json keeps the error and the folder can be logged again.
    """
    folder = Path(folder)
    folder = folder.parent if folder.name == RESULTS else folder
    doc = read_results(folder)
    if is_logged(doc):
        return doc
    uri = tracking_uri or doc.get("tracking_uri")
    if not uri:
        raise TrackingError("<none>", "no tracking URI given or recorded", results_path=folder)
    client = None
    parent_id: str | None = None
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp_id = ensure_experiment(uri, doc.get("experiment") or "mspa-ablation")
        parent_id = client.create_run(
            exp_id,
            run_name=doc["run"],
            tags={"mspa.kind": "ablation", "mspa.dataset": str(doc.get("dataset", ""))},
        ).info.run_id
        _log_parent(client, parent_id, doc)
        ids = {v["name"]: _log_variant(client, exp_id, parent_id, doc, v) for v in doc["variants"]}
        logged = {
            **doc,
            "parent_run_id": parent_id,
            "tracking_uri": uri,
            "mlflow_error": None,
            "variants": [{**v, "mlflow_run_id": ids[v["name"]]} for v in doc["variants"]],
        }
        write_results(folder, logged)
        for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name[0] != "."):
            client.log_artifact(parent_id, str(path))
        client.set_terminated(parent_id, "FINISHED")
        return logged
    except Exception as e:  # any failure to reach or write the store: keep results, one line
        reason = _reason(e)
        if client is not None and parent_id is not None:
            # A half-logged parent must not pass for a finished ablation (best effort: the
            # store is what failed).
            with contextlib.suppress(Exception):
                client.set_terminated(parent_id, "FAILED")
        write_results(folder, {**doc, "parent_run_id": None, "mlflow_error": reason})
        raise TrackingError(uri, reason, results_path=folder / RESULTS) from e


def _log_parent(client: Any, run_id: str, doc: dict[str, Any]) -> None:
    import mlflow

    acfg = doc.get("ablation_config") or {}
    ranker = acfg.get("ranker") or {}
    params = {
        "run_name": doc["run"],
        "dataset": doc.get("dataset", ""),
        "feature_set": acfg.get("feature_set", ""),
        "llm_feature_set": acfg.get("llm_feature_set", ""),
        "variants": ",".join(acfg.get("variants", [])),
        "seeds": ",".join(str(s) for s in doc.get("seeds", [])),
        "ranker": ranker.get("type", ""),
        "ranker_params": json.dumps(ranker.get("params", {}), sort_keys=True),
        "n_boot": (acfg.get("bootstrap") or {}).get("n_boot", ""),
        "max_train_rows": acfg.get("max_train_rows"),
        **{f"window.{k}": v for k, v in doc.get("window", {}).items()},
    }
    client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()])
    client.log_dict(run_id, acfg, "ablation_config.json")
    if doc.get("run_config"):
        client.log_dict(run_id, doc["run_config"], "run_config.json")
    if doc.get("git_commit"):
        # MLflow's own tag for the source version: the UI shows it on the run page.
        client.set_tag(run_id, "mlflow.source.git.commit", doc["git_commit"])
    inputs = doc.get("inputs") or []
    if inputs:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        client.log_inputs(
            run_id,
            datasets=[
                DatasetInput(
                    dataset=Dataset(
                        name=i["name"],
                        digest=i["digest"],
                        source_type="local",
                        source=json.dumps({"uri": i["source"]}),
                        profile=json.dumps({"num_rows": i.get("rows")}),
                    ),
                    tags=[InputTag(key="mlflow.data.context", value="training")],
                )
                for i in inputs
            ],
        )
    if doc.get("seconds") is not None:
        client.log_metric(run_id, "seconds", float(doc["seconds"]))
    client.log_metric(run_id, "n_variants", float(len(doc["variants"])))
    if doc.get("notes"):
        client.set_tag(run_id, "notes", " | ".join(doc["notes"])[:5000])


def _log_variant(
    client: Any, exp_id: str, parent_id: str, doc: dict[str, Any], v: dict[str, Any]
) -> str:
    """One nested run for variant ``v`` (a results.json row); returns its run id."""
    import time

    import mlflow

    run = client.create_run(
        exp_id,
        run_name=f"{doc['run']}/{v['name']}",
        tags={
            "mlflow.parentRunId": parent_id,
            "mspa.kind": "ablation_variant",
            "variant": v["name"],
            "variant_kind": v["kind"],
            "leaked": str(bool(v["leaked"])).lower(),
        },
    )
    rid = run.info.run_id
    refs = list(v.get("feature_refs") or [])
    params = {
        "variant": v["name"],
        "feature_service": v.get("service", ""),
        "model_version": v.get("model_version", ""),
        "seeds": ",".join(str(s) for s in doc.get("seeds", [])),
        "n_train": v["n_train"],
        "n_test": v["n_test"],
        "n_feature_refs": len(refs),
        "feature_refs": ",".join(refs)[:6000],  # MLflow's param length cap
        # What a leaked variant read beyond its service (future-ID: later interactions and the
        # M_T+n author table; similar/next: the leak view), so a run says where its leak came from.
        "leak_source": v.get("leak_source", ""),
        **{f"window.{k}": val for k, val in doc.get("window", {}).items()},
    }
    now = int(time.time() * 1000)
    # Results written before a metric existed (the newer deltas) lack it: nothing to log.
    metrics = [mlflow.entities.Metric(k, float(v[k]), now, 0) for k in METRICS if k in v]
    metrics += [
        mlflow.entities.Metric("auc_seed", float(a), now, i)
        for i, a in enumerate(v.get("auc_seeds", []))
    ]
    metrics.append(mlflow.entities.Metric("seconds", float(v.get("seconds", 0.0)), now, 0))
    metrics += [
        mlflow.entities.Metric(k, float(v[k]), now, 0)
        for k in COLD_METRICS
        if v.get(k) is not None  # None: the cold slice is too small for it
    ]
    # Multi-task runs: every task's metrics as "<task>/<metric>" (click/auc, gift/delta_auc).
    metrics += [
        mlflow.entities.Metric(task_key(task, k), float(values[k]), now, 0)
        for task, values in (v.get("tasks") or {}).items()
        for k in TASK_METRICS
    ]
    client.log_batch(
        rid, metrics=metrics, params=[mlflow.entities.Param(k, str(x)) for k, x in params.items()]
    )
    client.log_dict(
        rid, {"feature_service": v.get("service", ""), "feature_refs": refs}, "feature_refs.json"
    )
    client.set_terminated(rid, "FINISHED")
    return rid


class AblationTracker:
    """The runner's tracking hook: nothing touches MLflow while variants train.

    :meth:`log_variant` only records; :meth:`log_summary`, called once ``results.json`` and
    the reports are written, adds what logging needs to ``results.json`` and logs the folder
    with :func:`log_results`. An unreachable store leaves ``result.parent_run_id`` None and
    ``result.tracking_error`` set (one line); it never loses the results.
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        run_name: str,
        cfg: AblationConfig,
        run_cfg: RunConfig,
        window: dict[str, str],
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.cfg = cfg
        self.run_cfg = run_cfg
        self.window = window
        self.parent_run_id: str | None = None

    def __enter__(self) -> Self:
        return self

    def log_variant(self, res: VariantResult, seeds: list[int]) -> str | None:
        """Nothing yet: variant runs are created from results.json by :meth:`log_summary`."""
        return None

    def log_summary(self, result: AblationResult, seconds: float) -> None:
        """Log the written results folder; fills in the run ids or ``result.tracking_error``."""
        folder = Path(result.results_path).parent
        doc = read_results(folder)
        doc.update(tracking_fields(self.cfg, self.run_cfg, [v.name for v in result.variants]))
        doc.update(tracking_uri=self.tracking_uri, seconds=float(seconds), mlflow_error=None)
        write_results(folder, doc)
        try:
            logged = log_results(folder, tracking_uri=self.tracking_uri)
        except TrackingError as e:
            result.tracking_error = str(e)
            return
        self.parent_run_id = result.parent_run_id = logged["parent_run_id"]
        ids = {v["name"]: v["mlflow_run_id"] for v in logged["variants"]}
        for v in result.variants:
            v.mlflow_run_id = ids.get(v.name)

    def __exit__(self, exc_type, exc, tb) -> None:
        return None


# --------------------------------------------------------------------------- reading back


def _search_all(client: Any, experiment_ids: Sequence[str], filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            list(experiment_ids), filter_string=filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_ablation(client: Any, run: str) -> Any | None:
    """The ablation parent run whose id or name is ``run``, else None.

    A name may hold any character: it is compared in Python, never put in a filter string.
    Several runs of one name: the newest FINISHED one (a half-logged FAILED parent left by an
    unreachable store loses to the run logged afterwards).
    """
    from mlflow.exceptions import MlflowException

    if _RUN_ID.fullmatch(run):
        try:
            hit = client.get_run(run)
        except MlflowException:
            hit = None
        if hit is not None and hit.data.tags.get("mspa.kind") == "ablation":
            return hit
    exps = [e.experiment_id for e in client.search_experiments()]
    if not exps:
        return None
    hits = [r for r in _search_all(client, exps, _ABLATION_FILTER) if r.info.run_name == run]
    if not hits:
        return None
    hits.sort(key=lambda r: (r.info.status == "FINISHED", r.info.start_time or 0), reverse=True)
    return hits[0]


def _ablation_parent(tracking_uri: str, run: str) -> tuple[Any, Any]:
    """(a client on ``tracking_uri``, the ablation parent run :func:`find_ablation` finds).

    Raises:
        RunNotFoundError: no ablation parent run has that id or name.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = find_ablation(client, run)
    if parent is None:
        raise RunNotFoundError(f"no ablation run with id or name {run!r} in {tracking_uri}")
    return client, parent


def load_predictions(tracking_uri: str, run: str) -> pd.DataFrame | None:
    """The eval rows and per-variant scores the ablation ``run`` stored (its
    ``predictions.parquet`` artifact); None for ablations logged before it was stored.

    Raises:
        RunNotFoundError: no ablation parent run has that id or name.
    """
    import tempfile

    from ranker_hooks.ablation.results import PREDICTIONS_FILE

    client, parent = _ablation_parent(tracking_uri, run)
    if PREDICTIONS_FILE not in {a.path for a in client.list_artifacts(parent.info.run_id)}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(parent.info.run_id, PREDICTIONS_FILE, tmp)
        return pd.read_parquet(path)


def load_ablation(tracking_uri: str, run: str) -> tuple[str, pd.DataFrame]:
    """(parent run name, one row per variant) of the ablation with run id or run name ``run``.

    Raises:
        RunNotFoundError: no ablation parent run has that id or name.
    """
    client, parent = _ablation_parent(tracking_uri, run)
    pid = parent.info.run_id
    if not _RUN_ID.fullmatch(pid):  # an id from the store itself; checked before a filter
        raise RunNotFoundError(f"unexpected MLflow run id {pid!r} for {run!r}")
    children = _search_all(
        client, [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{pid}'"
    )
    children.sort(key=lambda r: r.info.start_time or 0)
    rows = []
    for r in children:
        tags, metrics = r.data.tags, r.data.metrics
        row = {
            "variant": tags.get("variant"),
            "kind": tags.get("variant_kind"),
            "leaked": tags.get("leaked") == "true",
        }
        row.update({k: metrics.get(k) for k in METRICS})
        rows.append(row)
    return parent.info.run_name, pd.DataFrame(rows, columns=["variant", "kind", "leaked", *METRICS])


__all__ = [
    "COLD_METRICS",
    "METRICS",
    "AblationTracker",
    "find_ablation",
    "is_logged",
    "load_ablation",
    "load_result",
    "log_results",
    "pending_results",
    "read_results",
    "request_key",
    "set_request",
    "tracking_fields",
    "write_results",
]
