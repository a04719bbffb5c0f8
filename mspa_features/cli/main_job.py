"""The main job (`mspa run`): every stage that exists, end to end, ending in a results summary.

It lives in the CLI layer because it wires the packages together (library, Spark jobs, ranker
hooks); the library itself never imports them (docs/architecture.md, import contracts).

Stages (each idempotent; a rerun reuses what is already on disk):

1. data: fetch/generate, validate against the contracts, write accepted rows + quarantine;
2. eval sets: U2A questions and A2A triples (MSPA section 4.1);
3. baselines: popularity and random on U2A test users, co-occurrence on A2A;
4. composer evaluation: template vs LLM composer on a U2A test cohort and its author pool
   (``eval.authors``; Acc@m by generation and by embedding, Recall/NDCG@K, A2A), cached by
   content;
5. features: Spark backfill of preference and author snapshots over the data's span
   (point-in-time correct, rerunnable), then Feast register + materialize online;
6. serving preview: what a ranker receives online for one test user and its candidates;
7. ablation: the ranker trained on a temporal split with each feature service (AIS variants)
   and with deliberately leaked preference data (LIS variants), deltas with paired bootstrap
   CIs, one MLflow parent run, and the LIS report with a verdict per row.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mspa_features.config import RunConfig, Workspace
from mspa_features.data.validation import ValidationResult
from mspa_features.evaluation import metrics


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
    features: dict[str, Any] | None = None
    serving: list[dict[str, Any]] | None = None
    ablation: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["counts"] = [c.__dict__ for c in self.counts]
        return d


def _timed(timings: dict[str, float], name: str, t0: float) -> None:
    timings[name] = round(time.perf_counter() - t0, 2)


def prepare_data(cfg: RunConfig, ws: Workspace, progress: Any = None) -> list[ValidationResult]:
    """Stage 1: obtain the dataset and validate it; writes data/ and quarantine/.

    One path for every ``data.source`` (your files, Spark tables, the MovieLens and synthetic
    presets): :func:`mspa_features.data.ingest.ingest_source`.
    """
    from mspa_features.cli.common import spark_reader, spark_validator
    from mspa_features.data.ingest import ingest_source

    with spark_validator(cfg) as validate_spark:
        return ingest_source(cfg, ws, read_spark=spark_reader(cfg), validate_spark=validate_spark)


def build_eval_sets(cfg: RunConfig, ws: Workspace) -> tuple[Any, pd.DataFrame]:
    """Stage 2: U2A questions and A2A triples, saved under datasets/<name>/."""
    from mspa_features.data.ingest import load_accepted
    from mspa_features.evaluation.datasets import build_a2a, build_u2a, save_a2a

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
    save_a2a(a2a, out)  # typed even when there is no triple
    return u2a, a2a


def evaluate_baselines(
    cfg: RunConfig, ws: Workspace, u2a: Any, a2a: pd.DataFrame
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Stage 3: popularity and random scorers on the U2A test split; A2A by co-occurrence."""
    from mspa_features.data.ingest import load_accepted
    from mspa_features.evaluation.baselines import cooccurrence_embeddings, popularity_at
    from mspa_features.evaluation.datasets import a2a_alignment

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
    # The composer evaluation's cohort (the first ``eval.cohort_users`` test users by id): the
    # same scorers on exactly those questions sit beside the composers' Acc@m.
    n_cohort = cfg.eval.cohort_users if cfg.eval.composers else 0
    cohort = set(sorted(test["user_id"])[:n_cohort]) if n_cohort else set(test["user_id"])
    in_cohort = test["user_id"].isin(cohort).to_numpy()
    for name, scores in scorers.items():
        scores = scores.astype(np.float64).copy()
        # Retrieval ranks the target among authors the user has not engaged with before.
        for i, hist in enumerate(test["history_author_ids"]):
            scores[i, [index[a] for a in hist if a in index]] = -np.inf
        row: dict[str, float] = {}
        for m in cfg.u2a.num_candidates:
            cand = np.array([[index[a] for a in c] for c in test[f"candidates_m{m}"]])
            picked = np.take_along_axis(scores, cand, axis=1).argmax(axis=1)
            truth = test[f"answer_index_m{m}"].to_numpy()
            key = metrics.metric_key(metrics.MetricName.ACC_AT_M, m)
            row[key] = metrics.accuracy_at_m(picked, truth)
            if cfg.eval.composers and n_cohort:
                row[f"{key}_cohort"] = metrics.accuracy_at_m(picked[in_cohort], truth[in_cohort])
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


def feature_range(inter: pd.DataFrame) -> tuple[Any, Any]:
    """Backfill range covering the data: first event's date .. the day after the last event
    (a snapshot dated the day after sees every event)."""
    from datetime import timedelta

    ts = pd.to_datetime(inter["event_timestamp"], utc=True)
    return ts.min().date(), ts.max().date() + timedelta(days=1)


def draw_sample(cfg: RunConfig, inter: pd.DataFrame) -> dict[str, Any] | None:
    """The seeded user/author sample of ``features.sample`` (None when none is configured).

    Users are drawn uniformly (seed ``sample.seed``, else the run's) among those with a
    positive before the ablation's split ``T`` and an interaction in its evaluation window
    (every user with a positive without an ablation config), whether or not the ablation stage
    runs this time; authors uniformly among the interactions of the
    drawn users. Both lists are sorted; the same data and seed give the same sample.

    Returns:
        ``{"users": [...], "authors": [...], "eligible_users": n, "seed": s}``.
    """
    sample = cfg.features.sample
    if sample is None:
        return None
    seed = cfg.seed if sample.seed is None else sample.seed
    ts = pd.to_datetime(inter["event_timestamp"], utc=True)
    users = inter["user_id"].astype(str)
    # The window comes from the ablation config whether or not this run's ablation stage is
    # on: a rerun that skips the ablation must backfill the same sample (same rows, no
    # duplicates), as the first run did.
    if cfg.ablation.config is not None and Path(cfg.ablation.config).is_file():
        from ranker_hooks.ablation.run import load_ablation_config

        split = load_ablation_config(cfg.ablation.config).split
        before = (ts < split.split_at) & (inter["label"] == 1)
        in_window = (ts >= split.split_at) & (ts < split.eval_end)
        eligible = sorted(set(users[before]) & set(users[in_window]))
    else:
        eligible = sorted(set(users[inter["label"] == 1]))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(eligible, min(sample.users, len(eligible)), replace=False))
    seen = sorted(set(inter.loc[users.isin(set(chosen)), "author_id"].astype(str)))
    authors = sorted(rng.choice(seen, min(sample.authors, len(seen)), replace=False))
    return {
        "users": [str(u) for u in chosen],
        "authors": [str(a) for a in authors],
        "eligible_users": len(eligible),
        "seed": seed,
    }


#: The features stage's last step, as its progress row names it.
FEAST_STEP = "Feast: register + materialize"


def _feature_set_steps(progress: Any, feature_set: str) -> Any:
    """The backfill's ``progress("<entity>: <step>", done, total)`` as one row per feature set
    and entity, its step as the row's detail (``template preferences - compose + encode``, see
    :data:`~mspa_features.cli.common.STEP_DETAIL`): the same entity is backfilled once per
    feature set, and a row per step would push the display past a 24-line terminal.
    ``author_profiles`` reads ``authors`` there, so the name fits beside the bar at 80
    columns."""
    from mspa_features.cli.common import STEP_DETAIL, entity_label

    if progress is None:
        return None

    def step(what: str, done: int, total: int) -> None:
        entity, _, detail = what.partition(": ")
        name = f"{feature_set} {entity_label(entity)}" + (
            f"{STEP_DETAIL}{detail}" if detail else ""
        )
        progress(name, done, total)

    return step


def build_features(cfg: RunConfig, ws: Workspace, progress: Any = None) -> dict[str, Any]:
    """Stage 5: backfill every configured feature set over the data's span (the sampled ones
    for ``features.sample`` only), then register and materialize them; returns reconciled
    counts, the sample and what was registered.

    ``progress(what, done, total)`` hears each backfill step per feature set and entity (the
    Spark tasks of ``template preferences - compose + encode``, ...) and the Feast step."""
    from mspa_features.data.ingest import load_accepted
    from mspa_features.serving.materialize import apply_and_materialize
    from mspa_features.snapshots.backfill import BackfillConfig
    from spark_jobs.backfill import run_backfill
    from spark_jobs.session import build_spark_session

    inter = load_accepted(ws.data(cfg.name), "interactions")
    start, end = feature_range(inter)
    out: dict[str, Any] = {"start": str(start), "end": str(end), "cadence": cfg.features.cadence}
    sample = draw_sample(cfg, inter)
    out["sample"] = sample
    sampled = set(cfg.features.sample.feature_sets) if cfg.features.sample else set()
    out["sampled_sets"] = sorted(sampled)
    backfills: dict[str, Any] = {}
    spark = None
    try:
        for fs in cfg.features.feature_sets:
            limit: dict[str, Any] = {}
            if sample is not None and fs in sampled:
                limit = {"users": sample["users"], "authors": sample["authors"]}
            if fs == "llm":
                # One compose task: one model in memory, using every core, batching all the
                # due snapshots in one llama.cpp context (two tasks would oversubscribe 2 cores).
                limit["partitions"] = 1
            bf = BackfillConfig(cadence=cfg.features.cadence, composer=fs, **limit)
            spark = spark or build_spark_session(bf)
            counts = run_backfill(
                cfg, bf, start, end, spark=spark, progress=_feature_set_steps(progress, fs)
            )
            backfills[fs] = {entity: c.as_dict() for entity, c in counts.items()}
    finally:
        if spark is not None:
            spark.stop()
    out["backfill"] = backfills
    # Full materialization over the snapshots' window: incremental materialization continues
    # from the previous run's end by event time, so rows a rerun backfilled in the past (dated
    # 1998 for MovieLens) would never reach the online store.
    say = progress or (lambda *_: None)
    say(FEAST_STEP, 0, 1)
    rep = apply_and_materialize(cfg, list(cfg.features.feature_sets), incremental=False)
    say(FEAST_STEP, 1, 1)
    out["register"] = {
        "registry": rep.registry,
        "store_dir": str(rep.store_dir),
        "online_store": rep.online_store,
        "views": [v.name for v in rep.views],
        "services": [s.name for s in rep.services],
        "materialized_rows": {m.view: m.rows for m in rep.materialized},
        "seconds": round(rep.seconds, 2),
    }
    return out


def serving_preview(cfg: RunConfig, ws: Workspace, u2a: Any) -> list[dict[str, Any]]:
    """Stage 6: online features (``all__<feature set>``) for the first test users that have a
    snapshot, paired with their U2A candidates: exactly what a ranker reads at request time.

    The request instant is the data's last interaction (a replay: MovieLens ends in 1998), so
    the online TTL rule serves what the training read at that instant would see. It reads the
    run's online store (``serving.online_store``: the SQLite file or Redis)."""
    from mspa_features.serving.definitions import service_name
    from mspa_features.serving.materialize import describe_online, open_store
    from mspa_features.serving.reads import online_features

    if cfg.features.show_users == 0:
        return []
    fs = cfg.features.feature_sets[0]
    store = open_store(cfg)
    online_store = describe_online(store.config)
    as_of = pd.read_parquet(
        ws.data(cfg.name) / "interactions.parquet", columns=["event_timestamp"]
    )["event_timestamp"].max()
    as_of = pd.Timestamp(as_of).tz_localize("UTC") if as_of.tzinfo is None else as_of
    service = service_name("all", fs)
    m = min(cfg.u2a.num_candidates)
    test = u2a.table[u2a.table["split"] == "test"]
    shown: list[dict[str, Any]] = []
    for row in test.itertuples(index=False):
        cands = [str(a) for a in getattr(row, f"candidates_m{m}")]
        feats = online_features(store, service, [(str(row.user_id), a) for a in cands], as_of=as_of)
        if feats["pref_text"].isna().all():
            continue  # no snapshot for this user yet: try the next one
        first = feats.iloc[0]
        shown.append(
            {
                "service": service,
                "online_store": online_store,
                "user_id": str(row.user_id),
                "pref_text": first["pref_text"],
                "history_count": None
                if pd.isna(first["history_count"])
                else int(first["history_count"]),
                "pref_emb_dim": len(first["pref_emb"]) if first["pref_emb"] is not None else 0,
                "target_author_id": str(row.target_author_id),
                "candidates": [
                    {
                        "author_id": r["author_id"],
                        "author_text": r["author_text"],
                        "cosine": None
                        if r["pref_author_cosine"] is None or pd.isna(r["pref_author_cosine"])
                        else float(r["pref_author_cosine"]),
                        "target": r["author_id"] == str(row.target_author_id),
                    }
                    for _, r in feats.iterrows()
                ],
            }
        )
        if len(shown) >= cfg.features.show_users:
            break
    return shown


def run_ablation_stage(
    cfg: RunConfig, progress: Any = None, sample: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Stage 7: AIS variants (and LIS variants with their leak sets) on this run's features,
    then, with ``ablation.compare``, the feature-set comparison (:func:`run_comparison`).

    A feature set backfilled only for ``sample`` is left out of the whole-data ablation (its
    ``llm_text`` variant runs in the comparison, on the sample's impressions).

    Returns the results JSON rows, the LIS verdicts (when LIS ran), where they were written,
    the MLflow parent run and, under ``compare``, the comparison.
    """
    from ranker_hooks.ablation.run import load_ablation_config, run_ablation

    assert cfg.ablation.config is not None  # RunConfig validates it when the stage is enabled
    acfg = load_ablation_config(cfg.ablation.config)
    out: dict[str, Any] = {"config": str(cfg.ablation.config)}
    sampled = set(cfg.features.sample.feature_sets) if cfg.features.sample else set()
    pre_notes: list[str] = []
    if acfg.llm_feature_set in sampled and "llm_text" in acfg.variants:
        acfg = acfg.model_copy(update={"variants": [v for v in acfg.variants if v != "llm_text"]})
        pre_notes.append(
            f"llm_text runs in the feature-set comparison: feature set "
            f"'{acfg.llm_feature_set}' is backfilled for the sample only"
        )
    if cfg.ablation.lis:
        from ranker_hooks.lis.ablation import run_lis

        lis = run_lis(cfg, acfg, horizons=cfg.ablation.horizons, progress=progress)
        result, out["verdicts"], notes = lis.result, lis.verdicts, lis.notes
    else:
        result = run_ablation(cfg, acfg, progress=progress)
        notes = list(result.notes)
    if result.tracking_error:  # results and reports are on disk; one line says how to log them
        notes = [*notes, result.tracking_error]
    out.update(
        run_name=result.run_name,
        results_path=str(result.results_path),
        mlflow_parent_run_id=result.parent_run_id,
        tracking_uri=result.tracking_uri,
        window=result.window,
        seeds=result.seeds,
        variants=[dataclasses.asdict(v) for v in result.variants],
        notes=pre_notes + notes,
    )
    if cfg.ablation.compare:
        out["compare"] = run_comparison(cfg, acfg, sample, progress)
    return out


#: The AIS variants compared per feature set (``all`` of the llm set is ``llm_text``).
COMPARED_VARIANTS = ("preference", "author", "cosine", "all", "llm_text", "text_tokens")


def _comparison_steps(progress: Any) -> Any:
    """The comparison's fits on their own progress row (``comparison``), not on the ablation's:
    both are ``run_ablation`` calls that report ``("ablation", done, total)``."""
    if progress is None:
        return None

    def step(what: str, done: int, total: int) -> None:
        progress("comparison" if what == "ablation" else f"comparison {what}", done, total)

    return step


def run_comparison(
    cfg: RunConfig, acfg: Any, sample: dict[str, Any] | None, progress: Any = None
) -> dict[str, Any]:
    """The AIS variants of every ``ablation.compare`` feature set side by side, against one
    baseline, on one set of impressions: the sample's (its users' interactions with its
    authors) when ``features.sample`` is set, else every impression.

    Returns:
        ``run_name``, ``results_path``, ``mlflow_parent_run_id``, ``window``, ``seeds``,
        ``sample`` (users, authors, n_train, n_test), ``feature_sets``, ``variants`` (rows with
        ``feature_set``) and ``notes``.
    """
    from ranker_hooks.ablation.run import run_ablation

    sets = list(cfg.ablation.compare)
    first, others = sets[0], sets[1:]
    variants = ["baseline"] + [
        v for v in COMPARED_VARIANTS if v in acfg.variants or v == "llm_text"
    ]
    if acfg.llm_feature_set not in sets:
        variants.remove("llm_text")
    update: dict[str, Any] = {
        "name": f"{acfg.name}-compare",
        "feature_set": first,
        "compare_feature_sets": others,
        "variants": variants,
    }
    if sample is not None:
        update.update(users=sample["users"], authors=sample["authors"])
    ccfg = acfg.model_copy(update=update)
    result = run_ablation(cfg, ccfg, progress=_comparison_steps(progress))
    rows = [dataclasses.asdict(v) for v in result.variants]
    return {
        "run_name": result.run_name,
        "results_path": str(result.results_path),
        "mlflow_parent_run_id": result.parent_run_id,
        "window": result.window,
        "seeds": result.seeds,
        "feature_sets": sets,
        "sample": None
        if sample is None
        else {
            "users": len(sample["users"]),
            "authors": len(sample["authors"]),
            "eligible_users": sample["eligible_users"],
            "seed": sample["seed"],
        },
        "n_train": rows[0]["n_train"] if rows else 0,
        "n_test": rows[0]["n_test"] if rows else 0,
        "variants": rows,
        "notes": list(result.notes),
    }


def check_stage_inputs(cfg: RunConfig) -> None:
    """Fail before any work when a file a later stage needs is missing.

    Raises:
        ConfigError: ``ablation.config`` names no file (with the ablation stage enabled).
        OnlineStoreUnavailableError: the feature stages write to Redis and it is down.
    """
    from mspa_features.errors import ConfigError

    path = cfg.ablation.config
    if cfg.ablation.enabled and (path is None or not Path(path).is_file()):
        raise ConfigError(str(path), ["ablation.config: file not found"])
    if cfg.features.enabled and cfg.serving.online_store != "sqlite":
        from mspa_features.serving.materialize import check_online_store

        check_online_store(cfg)  # Redis down: fail now, not after the backfill


def run(cfg: RunConfig, progress: Any = None, step_progress: Any = None) -> RunSummary:
    """Run every existing stage for ``cfg`` and write ``results/<name>/summary.json``.

    Args:
        cfg: the validated run config.
        progress: an optional callable ``(stage_name) -> None`` told when each stage starts.
        step_progress: an optional ``(what, done, total) -> None`` for long stages; a
            ``what`` holding :data:`~mspa_features.cli.common.STEP_DETAIL` names a row and its
            current detail.
    """
    check_stage_inputs(cfg)
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

    # Stage names fit cli.run.NAME_WIDTH: beside the bar, counts and time at 80 columns.
    say("baselines: non-LLM reference scorers")
    t0 = time.perf_counter()
    u2a_metrics, a2a_metrics = evaluate_baselines(cfg, ws, u2a, a2a)
    _timed(timings, "baselines", t0)

    composer_eval = None
    if cfg.eval.composers:
        from mspa_features.compose.jobs import evaluate

        say("composers: " + " vs ".join(cfg.eval.composers))
        t0 = time.perf_counter()
        composer_eval = evaluate(cfg, progress=step_progress)
        _timed(timings, "composers", t0)

    features = serving = None
    if cfg.features.enabled:
        say("features: backfill " + ", ".join(cfg.features.feature_sets))
        t0 = time.perf_counter()
        features = build_features(cfg, ws, step_progress)
        _timed(timings, "features", t0)
        if {"template", "llm"} <= set(cfg.features.feature_sets):
            # Drift from the template to the llm set (issue 16): JSON, plot, an MLflow run.
            from mspa_features.evaluation.drift_report import drift

            say("drift: template -> llm features")
            t0 = time.perf_counter()
            features["drift"] = drift(cfg, "template", "llm").summary()
            _timed(timings, "drift", t0)
        say("serving: online features for a test user")
        t0 = time.perf_counter()
        serving = serving_preview(cfg, ws, u2a)
        _timed(timings, "serving", t0)

    ablation = None
    if cfg.ablation.enabled:
        say("ablation: AIS" + (" + LIS" if cfg.ablation.lis else "") + ", tracked in MLflow")
        t0 = time.perf_counter()
        ablation = run_ablation_stage(cfg, step_progress, sample=(features or {}).get("sample"))
        _timed(timings, "ablation", t0)

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
        features=features,
        serving=serving,
        ablation=ablation,
    )
    out = ws.results / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary.to_json(), indent=2, default=str))
    return summary


__all__ = [
    "RunSummary",
    "StageCounts",
    "build_eval_sets",
    "build_features",
    "check_stage_inputs",
    "draw_sample",
    "evaluate_baselines",
    "feature_range",
    "prepare_data",
    "run",
    "run_ablation_stage",
    "run_comparison",
    "serving_preview",
]
