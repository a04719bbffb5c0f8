"""The drift report between two model versions of a run's features (``mspa drift``).

Two feature sets (``template`` and ``llm``; ``llm`` and an aligned checkpoint's set), or two
model versions of one set (``SET@VERSION``), are read at the same as-of instant through Feast's
point-in-time join (:func:`mspa_features.serving.reads.historical_features`, the training read:
each entity gets its latest snapshot with ``event_timestamp <= as_of`` within the view's TTL).
For the entities both versions serve it reports (statistics in
:mod:`mspa_features.evaluation.drift`):

* per-user cosine between the two versions' preference embeddings, and per-author cosine
  between their author embeddings (summary and histogram);
* the share of users whose top-k nearest authors change: exact cosine top-k over the authors
  both versions serve at ``as_of``, each version ranking with its own embeddings (the online
  vector index of :mod:`mspa_features.serving.nearest` answers for "now" and needs milvus; the
  report needs a past instant and the exact answer);
* the change in the U2A/A2A metrics where both versions were evaluated: the composers'
  ``results/u2a/<run>.json`` (``template``, ``llm``) or the alignment's
  ``results/align/eval-*.json`` (by ``model_version``);
* a histogram plot (matplotlib).

Written to ``results/drift/<run>/<A>__vs__<B>/drift.json`` and ``drift.png`` and logged to
MLflow (experiment ``mspa-drift``; SQLite in the workspace by default) as metrics and artifacts.
``SET@VERSION`` keeps only the rows whose served ``model_version`` contains ``VERSION`` or its
digest (:func:`mspa_features.names.model_version_matches`: a version too long for a row, or the
source version of a compact set's rows): a version that is not the one served at ``as_of`` has
no rows there.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mspa_features.config import RunConfig, Workspace
from mspa_features.errors import InvalidValueError
from mspa_features.evaluation import drift as D
from mspa_features.names import model_version_matches
from mspa_features.serving.definitions import author_view_name, pref_view_name

if TYPE_CHECKING:
    from feast import FeatureStore

EXPERIMENT = "mspa-drift"
_KINDS = {
    "user": ("user_id", pref_view_name, "pref_emb"),
    "author": ("author_id", author_view_name, "author_emb"),
}


@dataclass(frozen=True)
class VersionSpec:
    """``SET`` or ``SET@VERSION``: a feature set, optionally narrowed to one model_version."""

    feature_set: str
    model_version: str | None = None

    @classmethod
    def parse(cls, text: str) -> VersionSpec:
        """Raises ValueError on an empty set or version."""
        fs, _, version = text.partition("@")
        if not fs or (text.count("@") and not version):
            raise InvalidValueError("version", text, "SET or SET@MODEL_VERSION")
        return cls(fs, version or None)

    def __str__(self) -> str:
        return self.feature_set + (f"@{self.model_version}" if self.model_version else "")


@dataclass
class DriftReport:
    """What :func:`drift` measured (``to_json`` is the file's content)."""

    run: str
    set_a: str
    set_b: str
    as_of: str
    k: int
    users: dict[str, Any]
    authors: dict[str, Any]
    topk: dict[str, Any]
    metrics: dict[str, Any] | None
    metrics_source: str | None
    json_path: str = ""
    plot_path: str = ""
    mlflow_run_id: str | None = None
    per_user: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The report without the per-user rows and histograms (for a run's summary.json)."""
        doc = self.to_json()
        doc.pop("per_user")
        for side in ("users", "authors"):
            doc[side] = {k: v for k, v in doc[side].items() if k != "histogram"}
        return doc


def read_embeddings(
    store: FeatureStore,
    spec: VersionSpec,
    kind: str,
    ids: list[str],
    as_of: pd.Timestamp,
) -> dict[str, np.ndarray]:
    """Entity id -> embedding served at ``as_of`` by the point-in-time join (absent ids had no
    snapshot valid then, or another model_version than ``spec``'s)."""
    from mspa_features.serving.reads import historical_features

    key, view_of, emb = _KINDS[kind]
    view = view_of(spec.feature_set)
    other = "author_id" if key == "user_id" else "user_id"
    entity_df = pd.DataFrame(
        {key: ids, other: "", "event_timestamp": pd.Series([as_of] * len(ids), dtype=object)}
    )
    entity_df["event_timestamp"] = pd.to_datetime(entity_df["event_timestamp"], utc=True)
    out = historical_features(store, [f"{view}:{emb}", f"{view}:model_version"], entity_df)
    got: dict[str, np.ndarray] = {}
    for i, vec, version in zip(out[key], out[emb], out["model_version"], strict=True):
        if vec is None or not len(vec):
            continue
        if spec.model_version and not model_version_matches(spec.model_version, str(version or "")):
            continue
        got[str(i)] = np.asarray(vec, dtype=np.float32)
    return got


def _paired(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[list[str], Any, Any]:
    both = sorted(set(a) & set(b))
    if not both:
        return both, np.zeros((0, 1)), np.zeros((0, 1))
    return both, np.stack([a[i] for i in both]), np.stack([b[i] for i in both])


def _entity_section(a: dict, b: dict, bins: int) -> tuple[dict[str, Any], list[str], Any]:
    ids, ma, mb = _paired(a, b)
    cos = D.row_cosine(ma, mb) if ids else np.zeros(0)
    section = {
        "n_a": len(a),
        "n_b": len(b),
        "n_both": len(ids),
        "cosine": D.summarize(cos),
        "histogram": D.histogram(cos, bins=bins),
    }
    return section, ids, cos


def eval_metrics(ws: Workspace, run: str, a: VersionSpec, b: VersionSpec) -> tuple[Any, Any]:
    """U2A/A2A metric deltas where both versions were evaluated, and the file they came from."""
    u2a = ws.results / "u2a" / f"{run}.json"
    if u2a.is_file() and not (a.model_version or b.model_version):
        composers = json.loads(u2a.read_text()).get("composers", {})
        if a.feature_set in composers and b.feature_set in composers:
            deltas = D.metric_deltas(composers[a.feature_set], composers[b.feature_set])
            return deltas, str(u2a)
    rows: dict[str, tuple[dict[str, Any], str]] = {}
    for p in sorted((ws.results / "align").glob("eval-*.json")):
        try:
            row = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        version = str(row.get("model_version", ""))
        for spec in (a, b):
            want = spec.model_version or spec.feature_set
            if want and want in version:
                rows.setdefault(str(spec), (row, str(p)))
    if str(a) in rows and str(b) in rows:
        deltas = D.metric_deltas(rows[str(a)][0], rows[str(b)][0])
        return deltas, f"{rows[str(a)][1]}, {rows[str(b)][1]}"
    return None, None


def plot(report: DriftReport, user_cos: Any, author_cos: Any, path: Path) -> Path:
    """Histograms of the per-user and per-author cosines between the two versions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for ax, values, what in ((axes[0], user_cos, "users"), (axes[1], author_cos, "authors")):
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        ax.hist(v, bins=40, range=(-1.0, 1.0), color="#4c72b0")
        ax.set_xlabel(f"cosine({report.set_a}, {report.set_b})")
        ax.set_ylabel(what)
        mean = f"mean {v.mean():.3f}" if len(v) else "none in both"
        ax.set_title(f"{what}: n={len(v)}, {mean}", fontsize=10)
    changed = report.topk.get("changed_share")
    fig.suptitle(
        f"drift {report.set_a} -> {report.set_b} at {report.as_of}"
        + (f"; top-{report.k} changed for {changed:.0%} of users" if changed is not None else ""),
        fontsize=10,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def drift(
    cfg: RunConfig,
    set_a: str | VersionSpec,
    set_b: str | VersionSpec,
    *,
    as_of: datetime | pd.Timestamp | None = None,
    k: int = 10,
    store: FeatureStore | None = None,
    repo_path: Path = Path("feature_repo"),
    tracking_uri: str | None = None,
    bins: int = 20,
) -> DriftReport:
    """Measure the drift from version A to version B; write JSON and plot, log to MLflow.

    Args:
        cfg: the run config (workspace, dataset).
        set_a, set_b: ``SET`` or ``SET@MODEL_VERSION`` (both registered in the run's store).
        as_of: the instant both versions are read at (default: the data's last interaction;
            naive values are UTC).
        k: nearest authors per user.
        store: a FeatureStore (default: the run's, :func:`~mspa_features.serving.materialize.
            open_store`).
        tracking_uri: MLflow (default ``sqlite:///<workspace>/mlflow.db``); ``""`` skips MLflow.
        bins: histogram bins in the JSON.

    Raises:
        ValueError: a malformed set spec, ``k < 1``, or embeddings of different dimensions.
    """
    from mspa_features.data.ingest import load_accepted

    if k < 1:
        raise InvalidValueError("k", k, ">= 1")
    a = set_a if isinstance(set_a, VersionSpec) else VersionSpec.parse(set_a)
    b = set_b if isinstance(set_b, VersionSpec) else VersionSpec.parse(set_b)
    ws = Workspace(cfg.workspace)
    data = ws.data(cfg.name)
    users = sorted(load_accepted(data, "interactions")["user_id"].astype(str).unique())
    authors = sorted(load_accepted(data, "authors")["author_id"].astype(str).unique())
    if as_of is None:
        when = pd.Timestamp(load_accepted(data, "interactions")["event_timestamp"].max())
    else:
        when = pd.Timestamp(as_of)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    if store is None:
        from mspa_features.serving.materialize import open_store

        store = open_store(cfg, repo_path=repo_path)

    emb = {
        (side, kind): read_embeddings(store, spec, kind, ids, when)
        for side, spec in (("a", a), ("b", b))
        for kind, ids in (("user", users), ("author", authors))
    }
    user_sec, user_ids, user_cos = _entity_section(emb["a", "user"], emb["b", "user"], bins)
    author_sec, author_ids, author_cos = _entity_section(
        emb["a", "author"], emb["b", "author"], bins
    )

    # Top-k per version, each ranking with its own embeddings over the authors both serve.
    per_user: list[dict[str, Any]] = []
    topk: dict[str, Any] = {"k": k, "n_users": len(user_ids), "n_authors": len(author_ids)}
    if user_ids and author_ids:
        top = {}
        for side in ("a", "b"):
            q = np.stack([emb[side, "user"][u] for u in user_ids])  # (users, d)
            items = np.stack([emb[side, "author"][x] for x in author_ids])  # (authors, d)
            top[side] = D.top_k(q, items, k)
        changed = D.topk_changed(top["a"], top["b"])
        overlap = D.topk_overlap(top["a"], top["b"])
        topk.update(
            changed_share=float(changed.mean()),
            n_changed=int(changed.sum()),
            mean_overlap=float(overlap.mean()),
        )
        per_user = [
            {
                "user_id": u,
                "cosine": float(c),
                "top_a": [author_ids[i] for i in ta],
                "top_b": [author_ids[i] for i in tb],
                "changed": bool(ch),
            }
            for u, c, ta, tb, ch in zip(
                user_ids, user_cos, top["a"], top["b"], changed, strict=True
            )
        ]
    else:
        topk.update(changed_share=None, n_changed=0, mean_overlap=None)

    metrics, source = eval_metrics(ws, cfg.name, a, b)
    report = DriftReport(
        run=cfg.name,
        set_a=str(a),
        set_b=str(b),
        as_of=when.isoformat(),
        k=k,
        users=user_sec,
        authors=author_sec,
        topk=topk,
        metrics=metrics,
        metrics_source=source,
        per_user=per_user,
    )
    out = ws.results / "drift" / cfg.name / f"{_slug(str(a))}__vs__{_slug(str(b))}"
    out.mkdir(parents=True, exist_ok=True)
    report.plot_path = str(plot(report, user_cos, author_cos, out / "drift.png"))
    report.json_path = str(out / "drift.json")
    _write(report)
    if tracking_uri != "":
        report.mlflow_run_id = _log_mlflow(report, ws, tracking_uri)
        _write(report)
    return report


def _write(report: DriftReport) -> None:
    Path(report.json_path).write_text(json.dumps(report.to_json(), indent=2, default=str))


def _log_mlflow(report: DriftReport, ws: Workspace, tracking_uri: str | None) -> str:
    from mspa_features.mlflow_store import start_run

    client, rid = start_run(
        tracking_uri,
        EXPERIMENT,
        workspace=ws.root,
        run_name=f"{report.set_a} vs {report.set_b}",
        tags={
            "mspa.stage": "drift",
            "mspa.run": report.run,
            "mspa.set_a": report.set_a,
            "mspa.set_b": report.set_b,
            "mspa.as_of": report.as_of,
        },
    )
    metrics = {
        "user_cosine_mean": report.users["cosine"]["mean"],
        "user_cosine_median": report.users["cosine"]["median"],
        "author_cosine_mean": report.authors["cosine"]["mean"],
        "author_cosine_median": report.authors["cosine"]["median"],
        "users_both": report.users["n_both"],
        "authors_both": report.authors["n_both"],
    }
    if report.topk.get("changed_share") is not None:
        metrics[f"top{report.k}_changed_share"] = report.topk["changed_share"]
        metrics[f"top{report.k}_mean_overlap"] = report.topk["mean_overlap"]
    for name, d in (report.metrics or {}).items():
        metrics[f"delta/{name.replace('@', '_at_')}"] = d["delta"]
    for name, value in metrics.items():
        if value is not None and np.isfinite(value):
            client.log_metric(rid, name, float(value))
    client.log_artifact(rid, report.json_path)
    client.log_artifact(rid, report.plot_path)
    client.set_terminated(rid)
    return rid


__all__ = ["EXPERIMENT", "DriftReport", "VersionSpec", "drift", "eval_metrics", "read_embeddings"]
