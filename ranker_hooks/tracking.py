"""MLflow logging of ablations: one parent run per ablation, one nested run per variant.

Parent: params (ablation config, data window, seeds, feature set, run name), tag
``mspa.kind=ablation``, artifacts (results.json, comparison CSV/markdown, delta-AUC plot, the
config). Variant runs: params (service, model_version, seeds, window, n_train/n_test), metrics
(auc, uauc, gauc, logloss, wpauc, delta_auc with CI and p-value), tags (``variant``,
``variant_kind``, ``leaked``) and the Feast feature references used (``feature_refs.json``).
:func:`load_ablation` reads an ablation back for ``mspa runs compare``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Self

import pandas as pd

from mspa_features.errors import RunNotFoundError

if TYPE_CHECKING:
    from mspa_features.config import RunConfig
    from ranker_hooks.ablation import AblationConfig, AblationResult, VariantResult

METRICS = (
    "auc",
    "uauc",
    "gauc",
    "logloss",
    "wpauc",
    "delta_auc",
    "delta_auc_ci_low",
    "delta_auc_ci_high",
    "p_value",
)
# The cold-start slice (test rows whose author was first seen at or after T).
COLD_METRICS = (
    "cold_n_test",
    "cold_auc",
    "cold_delta_auc",
    "cold_delta_auc_ci_low",
    "cold_delta_auc_ci_high",
)


class AblationTracker:
    """Context manager owning the parent run; :meth:`log_variant` opens one nested run."""

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
        self._client: Any = None

    def __enter__(self) -> Self:
        import mlflow
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        exp = self._client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else self._client.create_experiment(self.experiment)
        run = self._client.create_run(
            exp_id,
            run_name=self.run_name,
            tags={"mspa.kind": "ablation", "mspa.dataset": self.run_cfg.name},
        )
        self.experiment_id = exp_id
        self.parent_run_id = run.info.run_id
        params = {
            "run_name": self.run_name,
            "dataset": self.run_cfg.name,
            "feature_set": self.cfg.feature_set,
            "llm_feature_set": self.cfg.llm_feature_set,
            "variants": ",".join(self.cfg.variants),
            "seeds": ",".join(str(s) for s in self.cfg.seeds),
            "ranker": self.cfg.ranker.type,
            "ranker_params": json.dumps(self.cfg.ranker.params, sort_keys=True),
            "n_boot": self.cfg.bootstrap.n_boot,
            "max_train_rows": self.cfg.max_train_rows,
            **{f"window.{k}": v for k, v in self.window.items()},
        }
        self._client.log_batch(
            self.parent_run_id,
            params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()],
        )
        self._client.log_dict(
            self.parent_run_id, self.cfg.model_dump(mode="json"), "ablation_config.json"
        )
        return self

    def log_variant(self, res: VariantResult, seeds: list[int]) -> str:
        """One nested run for ``res``; returns its run id."""
        import time

        import mlflow

        c = self._client
        run = c.create_run(
            self.experiment_id,
            run_name=f"{self.run_name}/{res.name}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                "mspa.kind": "ablation_variant",
                "variant": res.name,
                "variant_kind": res.kind,
                "leaked": str(res.leaked).lower(),
            },
        )
        rid = run.info.run_id
        params = {
            "variant": res.name,
            "feature_service": res.service,
            "model_version": res.model_version,
            "seeds": ",".join(str(s) for s in seeds),
            "n_train": res.n_train,
            "n_test": res.n_test,
            "n_feature_refs": len(res.feature_refs),
            "feature_refs": ",".join(res.feature_refs)[:6000],  # MLflow's param length cap
            **{f"window.{k}": v for k, v in self.window.items()},
        }
        now = int(time.time() * 1000)
        metrics = [mlflow.entities.Metric(k, float(getattr(res, k)), now, 0) for k in METRICS]
        metrics += [
            mlflow.entities.Metric("auc_seed", float(a), now, i)
            for i, a in enumerate(res.auc_seeds)
        ]
        metrics.append(mlflow.entities.Metric("seconds", float(res.seconds), now, 0))
        metrics += [
            mlflow.entities.Metric(k, float(getattr(res, k)), now, 0)
            for k in COLD_METRICS
            if getattr(res, k) is not None  # None: the cold slice is too small for it
        ]
        c.log_batch(
            rid,
            metrics=metrics,
            params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()],
        )
        c.log_dict(
            rid,
            {"feature_service": res.service, "feature_refs": res.feature_refs},
            "feature_refs.json",
        )
        c.set_terminated(rid, "FINISHED")
        return rid

    def log_summary(self, result: AblationResult, seconds: float) -> None:
        """Artifacts and summary metrics on the parent run."""
        c = self._client
        c.log_metric(self.parent_run_id, "seconds", float(seconds))
        c.log_metric(self.parent_run_id, "n_variants", float(len(result.variants)))
        if result.notes:
            c.set_tag(self.parent_run_id, "notes", " | ".join(result.notes)[:5000])
        c.log_artifact(self.parent_run_id, str(result.results_path))
        for path in result.artifacts.values():
            c.log_artifact(self.parent_run_id, str(path))

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._client is not None and self.parent_run_id is not None:
            self._client.set_terminated(
                self.parent_run_id, "FINISHED" if exc_type is None else "FAILED"
            )


def load_ablation(tracking_uri: str, run: str) -> tuple[str, pd.DataFrame]:
    """(parent run name, one row per variant) of the ablation with run id or run name ``run``.

    Raises:
        RunNotFoundError: no ablation parent run has that id or name.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    parent = None
    try:
        parent = client.get_run(run)
    except MlflowException:
        exps = [e.experiment_id for e in client.search_experiments()]
        hits = client.search_runs(
            exps, filter_string=f"tags.mlflow.runName = '{run}' and tags.`mspa.kind` = 'ablation'"
        )
        parent = hits[0] if hits else None
    if parent is None or parent.data.tags.get("mspa.kind") != "ablation":
        raise RunNotFoundError(f"no ablation run with id or name {run!r} in {tracking_uri}")
    mlflow.set_tracking_uri(tracking_uri)
    children = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["start_time ASC"],
    )
    rows = []
    for _, r in children.iterrows():
        row = {
            "variant": r["tags.variant"],
            "kind": r["tags.variant_kind"],
            "leaked": r["tags.leaked"] == "true",
        }
        row.update({k: r.get(f"metrics.{k}") for k in METRICS})
        rows.append(row)
    return parent.info.run_name, pd.DataFrame(rows)


__all__ = ["METRICS", "AblationTracker", "load_ablation"]
