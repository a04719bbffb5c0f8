"""The main job: every stage that exists, end to end, ending in a results summary.

Stages (each idempotent; a rerun reuses what is already on disk):

1. data: fetch/generate, validate against the contracts, write accepted rows + quarantine;
2. eval sets: U2A questions and A2A triples (MSPA section 4.1);
3. baselines: popularity and random on U2A test users, co-occurrence on A2A;
4. composer evaluation: template vs LLM composer on a U2A test cohort and all authors
   (Acc@m by generation and by embedding, Recall/NDCG@K, A2A), cached by content.

Later stages (composer, backfill, Feast, ablations) extend :func:`run` in place.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mspa_features import metrics
from mspa_features.config import RunConfig, Workspace
from mspa_features.validation import ValidationResult


@dataclass
class StageCounts:
    """Input/accepted/quarantined counts of one contract; they always reconcile."""

    contract: str
    n_input: int
    n_accepted: int
    n_quarantined: int
    reasons: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, res: ValidationResult) -> StageCounts:
        return cls(
            res.contract, res.n_input, res.n_accepted, res.n_quarantined, dict(res.reason_counts())
        )


@dataclass
class RunSummary:
    """What the main job prints and writes to ``results/<name>/summary.json``."""

    name: str
    dataset: str
    counts: list[StageCounts]
    u2a_report: dict[str, int]
    n_a2a_triples: int
    u2a_metrics: dict[str, dict[str, float]]  # scorer -> metric key -> value
    a2a_metrics: dict[str, float]  # scorer -> alignment rate
    data_span: tuple[str, str]
    n_positives: int
    timings_s: dict[str, float]
    quarantine_dir: str
    composer_eval: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["counts"] = [c.__dict__ for c in self.counts]
        return d


def _timed(timings: dict[str, float], name: str, t0: float) -> None:
    timings[name] = round(time.perf_counter() - t0, 2)


def prepare_data(cfg: RunConfig, ws: Workspace, progress: Any = None) -> list[ValidationResult]:
    """Stage 1: obtain the dataset and validate it; writes data/ and quarantine/."""
    from mspa_features.data.ingest import ingest_folder, write_results

    if cfg.data.source == "movielens":
        from mspa_features.data import movielens

        ml_dir = movielens.fetch(ws.raw)
        results = movielens.convert(
            ml_dir, positive_threshold=cfg.data.positive_threshold
        ).results()
    else:
        from mspa_features.data.synthetic import write_synthetic

        syn = cfg.data.synthetic
        assert syn is not None  # the config validator fills it for source=synthetic
        raw = ws.raw / f"synthetic-{syn.fingerprint()}"
        if not (raw / "interactions.parquet").exists():
            write_synthetic(syn, raw)
        # Synthetic data exercises the multimodal path: authors must carry frames.
        results = ingest_folder(raw, author_modalities=("profile_text", "frames"))
    write_results(results, ws.data(cfg.name), ws.quarantine(cfg.name))
    return results


def build_eval_sets(cfg: RunConfig, ws: Workspace) -> tuple[Any, pd.DataFrame]:
    """Stage 2: U2A questions and A2A triples, saved under datasets/<name>/."""
    from mspa_features.data.eval_datasets import build_a2a, build_u2a
    from mspa_features.data.ingest import load_accepted

    data = ws.data(cfg.name)
    interactions = load_accepted(data, "interactions")
    authors = load_accepted(data, "authors")
    u2a = build_u2a(
        interactions,
        num_candidates=tuple(cfg.u2a.num_candidates),
        min_positives=cfg.u2a.min_positives,
        split=cfg.u2a.split,
        seed=cfg.seed,
        all_author_ids=authors["author_id"].tolist(),
    )
    out = ws.datasets(cfg.name)
    u2a.save(out)
    a2a = build_a2a(
        authors, num_triples=cfg.a2a.num_triples, seed=cfg.seed, min_margin=cfg.a2a.min_margin
    )
    out.mkdir(parents=True, exist_ok=True)
    a2a.to_parquet(out / "a2a.parquet", index=False)
    return u2a, a2a


def evaluate_baselines(
    cfg: RunConfig, ws: Workspace, u2a: Any, a2a: pd.DataFrame
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Stage 3: popularity and random scorers on the U2A test split; A2A by co-occurrence."""
    from mspa_features.baselines import cooccurrence_embeddings, popularity_at
    from mspa_features.data.eval_datasets import a2a_alignment
    from mspa_features.data.ingest import load_accepted

    data = ws.data(cfg.name)
    inter = load_accepted(data, "interactions")
    authors = load_accepted(data, "authors")["author_id"].tolist()
    pos = inter[inter["label"] == 1]
    test = u2a.table[u2a.table["split"] == "test"].reset_index(drop=True)
    index = {a: j for j, a in enumerate(authors)}
    target = test["target_author_id"].map(index).to_numpy()

    pop = popularity_at(pos, authors, test["target_ts"])
    rng = np.random.default_rng(cfg.seed)
    scorers = {"popularity": pop, "random": rng.random(pop.shape)}
    out: dict[str, dict[str, float]] = {}
    for name, scores in scorers.items():
        scores = scores.astype(np.float64).copy()
        # Retrieval ranks the target among authors the user has not engaged with before.
        for i, hist in enumerate(test["history_author_ids"]):
            scores[i, [index[a] for a in hist if a in index]] = -np.inf
        row: dict[str, float] = {}
        for m in cfg.u2a.num_candidates:
            cand = np.array([[index[a] for a in c] for c in test[f"candidates_m{m}"]])
            picked = np.take_along_axis(scores, cand, axis=1).argmax(axis=1)
            row[metrics.metric_key(metrics.MetricName.ACC_AT_M, m)] = metrics.accuracy_at_m(
                picked, test[f"answer_index_m{m}"].to_numpy()
            )
        for k in (5, 10):
            row[metrics.metric_key(metrics.MetricName.RECALL_AT_K, k)] = metrics.recall_at_k(
                scores, target, k
            )
            row[metrics.metric_key(metrics.MetricName.NDCG_AT_K, k)] = metrics.ndcg_at_k(
                scores, target, k
            )
        out[name] = row

    # All engagements (not only positives): rarely-liked authors would otherwise be all-zero
    # vectors whose ties count as misses.
    emb = cooccurrence_embeddings(inter, authors)
    rand = {a: v for a, v in zip(authors, rng.standard_normal((len(authors), 16)), strict=True)}
    a2a_rates = {
        "co-occurrence": a2a_alignment(a2a, emb) if len(a2a) else float("nan"),
        "random": a2a_alignment(a2a, rand) if len(a2a) else float("nan"),
    }
    return out, a2a_rates


def run(cfg: RunConfig, progress: Any = None, step_progress: Any = None) -> RunSummary:
    """Run every existing stage for ``cfg`` and write ``results/<name>/summary.json``.

    Args:
        cfg: the validated run config.
        progress: an optional callable ``(stage_name) -> None`` told when each stage starts.
        step_progress: an optional ``(what, done, total) -> None`` for long stages.
    """
    ws = Workspace(cfg.workspace)
    timings: dict[str, float] = {}
    say = progress or (lambda _stage: None)

    say("data: fetch + validate")
    t0 = time.perf_counter()
    results = prepare_data(cfg, ws)
    _timed(timings, "data", t0)

    say("eval sets: U2A + A2A")
    t0 = time.perf_counter()
    u2a, a2a = build_eval_sets(cfg, ws)
    _timed(timings, "eval_sets", t0)

    say("baselines: popularity / random / co-occurrence")
    t0 = time.perf_counter()
    u2a_metrics, a2a_metrics = evaluate_baselines(cfg, ws, u2a, a2a)
    _timed(timings, "baselines", t0)

    composer_eval = None
    if cfg.eval.composers:
        from mspa_features.compose_jobs import evaluate

        say("composers: " + " vs ".join(cfg.eval.composers))
        t0 = time.perf_counter()
        composer_eval = evaluate(cfg, progress=step_progress)
        _timed(timings, "composers", t0)

    inter = next(r for r in results if r.contract == "interactions").accepted
    ts = inter.column("event_timestamp").to_pandas()
    summary = RunSummary(
        name=cfg.name,
        dataset=cfg.data.source,
        counts=[StageCounts.of(r) for r in results],
        u2a_report=dict(u2a.report),
        n_a2a_triples=len(a2a),
        u2a_metrics=u2a_metrics,
        a2a_metrics=a2a_metrics,
        data_span=(str(ts.min()), str(ts.max())) if len(ts) else ("", ""),
        n_positives=int(np.asarray(inter.column("label")).sum()),
        timings_s=timings,
        quarantine_dir=str(ws.quarantine(cfg.name)),
        composer_eval=composer_eval,
    )
    out = ws.results / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2, default=str))
    return summary


__all__ = [
    "RunSummary",
    "StageCounts",
    "build_eval_sets",
    "evaluate_baselines",
    "prepare_data",
    "run",
]
