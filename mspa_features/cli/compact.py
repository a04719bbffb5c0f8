"""``mspa compact CONFIG``: compact serving embeddings and what they cost in AUC.

Builds the compact sets of a feature set (a reducer fitted on rows before the ablation's split,
to each of ``--dims``, coded as each of ``--dtype``; :mod:`mspa_features.evaluation.compact`),
registers and materializes them beside the full set (:mod:`mspa_features.serving.compact`) in
the run's online store (``serving.online_store``, or ``--online``), measures each one's bytes
per entity in that store (SQLite or Redis) and its single-entity read latency through Feast,
runs the chosen AIS variants on the full and every compact set through the ablation (same
split, seeds and ranker), and prints the Pareto table: delta AUC against the full embedding
with a paired bootstrap CI over users, beside the bytes and the 400M-user extrapolation. JSON and plots go to ``<workspace>/results/compact/<run>/``, logged to MLflow
(experiment ``mspa-compact``; the ablation keeps its own parent run).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from mspa_features.cli.common import (
    ConfigArg,
    MlflowUriOpt,
    NoMlflowOpt,
    RepoOpt,
    console,
    parse_seeds,
    progress_bar,
)
from mspa_features.cli.register import RedisOpt, RunOnlineOpt, _online

if TYPE_CHECKING:
    from mspa_features.serving.materialize import StoreTarget

EXPERIMENT = "mspa-compact"
VARIANTS = ("preference", "author", "cosine", "all")
#: the embedding feature whose stored value is "bytes per entity", per variant's entity
EMB_FEATURE = {"user": "pref_emb", "author": "author_emb"}
REDIS_NOTE = (
    "Redis B/user: MEMORY USAGE (SAMPLES 0) of a hash holding only the set's view fields under a "
    "key of the entity key's length (written, measured and deleted in one MULTI/EXEC): key, "
    "keyspace entry, hash object and encoding, allocator size classes; the keyspace's bucket "
    "array, expiry and replication are not included. shared_key_bytes_per_user: MEMORY USAGE "
    "of the real entity keys, which hold every registered set's fields together"
)


def install(app: typer.Typer) -> None:
    """Add ``compact`` to the top-level app."""
    app.command("compact")(compact)


def _csv(text: str, option: str, cast: Any = str, allowed: tuple[str, ...] | None = None) -> list:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise typer.BadParameter("give at least one value", param_hint=option)
    try:
        out = [cast(x) for x in items]
    except ValueError as e:
        raise typer.BadParameter(f"{text!r}: {e}", param_hint=option) from e
    if allowed is not None:
        bad = [x for x in out if x not in allowed]
        if bad:
            raise typer.BadParameter(f"{bad} not in {list(allowed)}", param_hint=option)
    if len(set(out)) != len(out):
        raise typer.BadParameter(f"{text!r} repeats a value", param_hint=option)
    return out


def compact(
    config: ConfigArg,
    dims: Annotated[str, typer.Option("--dims", help="reduced widths, comma-separated")] = (
        "16,32,64,128"
    ),
    dtype: Annotated[
        str, typer.Option("--dtype", help="codes stored online: int8 and/or float16")
    ] = "int8,float16",
    feature_set: Annotated[
        str, typer.Option("--feature-set", help="the full feature set to compact")
    ] = "template",
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="pca (default) and/or truncate (Matryoshka-style; only meaningful for an "
            "encoder trained for it: all-MiniLM-L6-v2 is not)",
        ),
    ] = "pca",
    variants: Annotated[
        str, typer.Option("--variants", help=f"AIS variants to compare, from {list(VARIANTS)}")
    ] = "preference,author",
    ablation: Annotated[
        Path | None,
        typer.Option(
            "--ablation", help="ablation YAML (default: the run config's ablation.config)"
        ),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="comma-separated seeds, overriding the ablation")
    ] = None,
    read_calls: Annotated[
        int, typer.Option("--read-calls", min=10, help="timed online reads per set")
    ] = 200,
    online: RunOnlineOpt = None,
    redis: RedisOpt = None,
    repo: RepoOpt = Path("feature_repo"),
    mlflow_uri: MlflowUriOpt = None,
    no_mlflow: NoMlflowOpt = False,
) -> None:
    """Compact embeddings (PCA to --dims, int8/float16 codes) as their own Feast feature sets,
    and a Pareto table: bytes per entity (measured in the run's online store, SQLite or Redis)
    x online read p50 x delta AUC with a 95% CI against the full embedding, plus the 400M-user
    extrapolation."""
    from mspa_features.evaluation.compact import METHODS
    from mspa_features.serving.compact import DTYPES

    dim_list = _csv(dims, "--dims", int)
    if any(d < 1 for d in dim_list):
        raise typer.BadParameter(f"{dims!r}: widths must be >= 1", param_hint="--dims")
    dtype_list = _csv(dtype, "--dtype", allowed=DTYPES)
    method_list = _csv(method, "--method", allowed=METHODS)
    variant_list = _csv(variants, "--variants", allowed=VARIANTS)
    seed_list = None if seeds is None else parse_seeds(seeds)
    kind = _online(online, redis)
    if kind == "milvus":
        raise typer.BadParameter(
            "compact sets are served from sqlite or redis", param_hint="--online"
        )

    from mspa_features.cli.data import ensure_run_data
    from mspa_features.config import load_config
    from mspa_features.errors import ConfigError
    from mspa_features.serving.materialize import check_online_store
    from ranker_hooks.ablation import load_ablation_config

    cfg = load_config(config)
    path = ablation or cfg.ablation.config
    if path is None:
        raise ConfigError(config, ["ablation.config: required by mspa compact (or --ablation)"])
    ab = load_ablation_config(path)
    if seed_list is not None:
        ab = ab.model_copy(update={"seeds": seed_list})
    check_online_store(cfg, repo_path=repo, online=kind, redis_url=redis)  # type: ignore[arg-type]
    ensure_run_data(cfg)
    doc = run_compact(
        cfg,
        ab,
        feature_set=feature_set,
        dims=dim_list,
        dtypes=dtype_list,
        methods=method_list,
        variants=variant_list,
        read_calls=read_calls,
        repo_path=repo,
        online=kind,  # type: ignore[arg-type]
        redis_url=redis,
        tracking_uri="" if no_mlflow else mlflow_uri,
        command=" ".join(
            ["mspa compact", str(config), f"--dims {dims}", f"--dtype {dtype}"]
            + ([f"--method {method}"] if method != "pca" else [])
            + [f"--variants {variants}", f"--feature-set {feature_set}"]
            + ([f"--seeds {seeds}"] if seeds else [])
            + ([f"--online {kind}"] if online is not None else [])
        ),
    )
    console.print(pareto_table(doc))
    for line in summary_lines(doc):
        console.print(escape(line), highlight=False)


# --------------------------------------------------------------------------- the run


class _Recorder:
    """A fitted ranker that records what it scores (the ablation averages the same seeds)."""

    def __init__(self, ranker: Any, sink: dict[int, Any], seed: int) -> None:
        self._ranker, self._sink, self._seed = ranker, sink, seed

    def predict(self, data: Any) -> Any:
        scores = self._ranker.predict(data)
        self._sink[self._seed] = (data.user_ids, data.labels, scores)
        return scores

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ranker, name)


class RecordScores:
    """A variant hook (``ranker_hooks.ablation.variants.VariantHook``'s two steps) that keeps
    each seed's evaluation scores for the paired comparison with the full set. A class, not a
    closure, so a variant holding it stays picklable."""

    def __init__(self, sink: dict[int, Any]) -> None:
        self.sink = sink

    def prepare(self, train: Any, test: Any, ctx: Any) -> tuple[Any, Any]:
        return train, test

    def after_fit(self, ranker: Any, ctx: Any) -> Any:
        return _Recorder(ranker, self.sink, ctx.seed)


def run_compact(
    cfg: Any,
    ab: Any,
    *,
    feature_set: str,
    dims: list[int],
    dtypes: list[str],
    methods: list[str],
    variants: list[str],
    read_calls: int = 200,
    repo_path: Path = Path("feature_repo"),
    online: Literal["sqlite", "redis"] | None = None,
    redis_url: str | None = None,
    tracking_uri: str | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Build, register, measure and ablate; returns the report (also written as JSON).

    ``online``: the online store the sets are served from and measured in (default the run
    config's ``serving.online_store``; ``redis_url`` overrides ``serving.redis``).
    ``tracking_uri``: MLflow (default the workspace's SQLite); ``""`` skips MLflow (the
    ablation's own tracking follows its config).
    """
    import dataclasses
    import time

    import numpy as np

    from mspa_features.config import Workspace
    from mspa_features.errors import FeatureRepoError
    from mspa_features.evaluation import metrics
    from mspa_features.evaluation.compact import (
        USERS_AT_SCALE,
        at_scale,
        build_compact_sets,
        compact_root,
        human_bytes,
        pareto_front,
        plot_pareto,
    )
    from mspa_features.serving.compact import apply_compact_sets, measure_sets
    from mspa_features.serving.definitions import service_name
    from mspa_features.serving.materialize import describe_online, open_store
    from mspa_features.serving.redis_store import redis_errors
    from ranker_hooks.ablation import run_ablation
    from ranker_hooks.ablation.variants import builtin_variant
    from ranker_hooks.inject import InjectionSpec, service_exists

    t0 = time.perf_counter()
    started = datetime.now(UTC)
    split_at = ab.split.split_at
    where: StoreTarget = {"repo_path": repo_path, "online": online, "redis_url": redis_url}
    store = open_store(cfg, **where)
    online_kind = str(store.config.online_store.type)
    if not service_exists(store, service_name("with_preference", feature_set)):
        raise FeatureRepoError(
            f"feature set {feature_set!r} is not registered in the run's {online_kind} store; "
            f"run `mspa register --online {online_kind}` for it first"
        )
    console.print(
        f"compact: fitting on {feature_set} rows before {split_at.isoformat()} ...",
        highlight=False,
    )
    manifests = build_compact_sets(
        cfg, feature_set, fit_before=split_at, dims=dims, dtypes=dtypes, methods=methods
    )
    t_build = time.perf_counter() - t0
    folders = {m.name: compact_root(cfg) / m.name for m in manifests}
    from mspa_features import logs

    with logs.child_output_to_log():  # Feast prints a line per materialized view
        apply_compact_sets(cfg, folders, **where)
    t_register = time.perf_counter() - t0 - t_build
    store = open_store(cfg, **where)

    # ---- bytes per entity and read latency, measured in the online store
    with redis_errors(store.config.online_store, writing=True):  # writes (and deletes) probes
        sets = measure_sets(store, feature_set, manifests, read_calls=read_calls)
    read_users = sets[0]["read"].calls
    t_measure = time.perf_counter() - t0 - t_build - t_register

    # ---- the ablation: baseline, then each variant on the full set and every compact set
    sinks: dict[tuple[str, str], dict[int, Any]] = {}
    extra = []
    spec = InjectionSpec(
        max_tokens=ab.injection.max_tokens, token_buckets=ab.injection.token_buckets
    )
    for v in variants:
        for s in sets:
            base = builtin_variant(v, s["name"], ab.llm_feature_set, spec)
            sink = sinks.setdefault((v, s["name"]), {})
            extra.append(
                dataclasses.replace(
                    base,
                    name=f"{v}@{s['name']}",
                    description=f"{base.description} ({s['name']})",
                    hook=RecordScores(sink),
                )
            )
    ab_run = ab.model_copy(
        update={"variants": ["baseline"], "compare_feature_sets": [], "name": f"compact-{ab.name}"}
    )
    with progress_bar() as step:
        result = run_ablation(cfg, ab_run, progress=step, extra_variants=extra, store=store)
    t_ablation = time.perf_counter() - t0 - t_build - t_register - t_measure
    by_name = {r.name: r for r in result.variants}

    def mean_scores(key: tuple[str, str]) -> tuple[Any, Any, Any]:
        sink = sinks[key]
        seeds = sorted(sink)
        u, y, _ = sink[seeds[0]]
        return u, y, np.mean([sink[s][2] for s in seeds], axis=0)

    rows: list[dict[str, Any]] = []
    for v in variants:
        users_full, labels, full_scores = mean_scores((v, feature_set))
        for s in sets:
            u, y, scores = mean_scores((v, s["name"]))
            if not (np.array_equal(u, users_full) and np.array_equal(y, labels)):
                raise FeatureRepoError(
                    f"variant {v}@{s['name']} was scored on other rows than {v}@{feature_set}"
                )
            vr = by_name[f"{v}@{s['name']}"]
            if s["name"] == feature_set:
                delta, lo, hi, p = 0.0, None, None, None
            else:
                b = metrics.paired_bootstrap(
                    labels,
                    full_scores,
                    scores,
                    u,
                    n_boot=ab.bootstrap.n_boot,
                    seed=ab.bootstrap.seed,
                )
                delta, lo, hi, p = b.delta, b.ci_low, b.ci_high, b.p_value
            ub, abytes, rd = s["user_bytes"], s["author_bytes"], s["read"]
            m = s.get("manifest")
            rows.append(
                {
                    "variant": v,
                    "set": s["name"],
                    "method": s["method"],
                    "dims": s["dims"],
                    "dtype": s["dtype"],
                    "label": "full" if m is None else f"{s['method']}{s['dims']} {s['dtype']}",
                    "bytes_per_user": ub.embedding,
                    "bytes_per_author": abytes.embedding,
                    "row_bytes_per_user": ub.row,
                    "users_measured": ub.entities,
                    "read_p50_ms": rd.p50_ms,
                    "read_p95_ms": rd.p95_ms,
                    "auc": vr.auc,
                    "delta_auc_vs_baseline": vr.delta_auc,
                    "delta_auc_vs_full": delta,
                    "ci_low": lo,
                    "ci_high": hi,
                    "p_value": p,
                    "users_at_scale_bytes": at_scale(ub.embedding),
                    "users_at_scale": human_bytes(at_scale(ub.embedding)),
                    # Redis: what the store allocates per entity for the view alone (key, hash,
                    # encoding), and per entity key as the run holds it (every view together)
                    "store_bytes_per_user": ub.store,
                    "store_bytes_per_author": abytes.store,
                    "store_encoding": ub.store_encoding,
                    "shared_key_bytes_per_user": ub.shared_key,
                    "users_at_scale_store_bytes": None if ub.store is None else at_scale(ub.store),
                    "users_at_scale_store": None
                    if ub.store is None
                    else human_bytes(at_scale(ub.store)),
                    "explained_variance_ratio": None
                    if m is None
                    else m.extra.get("explained_variance_ratio"),
                    "recon_cosine_mean": None if m is None else m.extra.get("recon_cosine_mean"),
                    "pair_cosine_corr": None if m is None else m.extra.get("pair_cosine_corr"),
                }
            )
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        flags = pareto_front(
            [r["bytes_per_user"] for r in mine], [-r["delta_auc_vs_full"] for r in mine]
        )
        for r, f in zip(mine, flags, strict=True):
            r["pareto"] = f

    run = f"{cfg.name}-{feature_set}-{started:%Y%m%dT%H%M%S}"
    out_dir = Workspace(cfg.workspace).results / "compact" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {v: str(plot_pareto(rows, out_dir / f"pareto_{v}.png", variant=v)) for v in variants}
    first = manifests[0]
    doc: dict[str, Any] = {
        "run": run,
        "command": command,
        "feature_set": feature_set,
        "split_at": split_at.isoformat(),
        "fit_rows": first.fit_rows,
        "fit_max_event_timestamp": first.fit_max_event_timestamp,
        "seeds": list(ab.seeds),
        "n_test": by_name[f"{variants[0]}@{feature_set}"].n_test,
        "n_users_both_labels": by_name[f"{variants[0]}@{feature_set}"].n_users_both_labels,
        "baseline_auc": by_name["baseline"].auc,
        "users_at_scale": USERS_AT_SCALE,
        "read_calls": read_users,
        "online_store": online_kind,
        "online_store_address": describe_online(store.config),
        "rows": rows,
        "ablation_run": result.run_name,
        "ablation_parent_run_id": result.parent_run_id,
        "ablation_results": str(result.results_path),
        "seconds": {
            "build": round(t_build, 1),
            "register": round(t_register, 1),
            "measure": round(t_measure, 1),
            "ablation": round(t_ablation, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "plots": plots,
        "json_path": str(out_dir / "compact.json"),
        "notes": [
            (
                "bytes per user/author: mean length of the stored value of the embedding feature "
                f"(serialized Feast ValueProto) per entity key in the {online_kind} online store"
            ),
            (
                f"at 400M users: bytes per user x {USERS_AT_SCALE:,}, a linear extrapolation "
                "(no key, index, replication or store overhead)"
            ),
            *([REDIS_NOTE] if online_kind == "redis" else []),
            (
                "delta AUC vs full: paired bootstrap over users of the same variant on the full set, "
                "same rows, seeds and ranker"
            ),
        ],
    }
    Path(doc["json_path"]).write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    if tracking_uri != "":
        doc["mlflow_run_id"] = _log_mlflow(cfg, doc, tracking_uri)
        Path(doc["json_path"]).write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    return doc


def _log_mlflow(cfg: Any, doc: dict[str, Any], tracking_uri: str | None) -> str:
    import math

    from mspa_features.config import Workspace
    from mspa_features.mlflow_store import start_run

    client, rid = start_run(
        tracking_uri,
        EXPERIMENT,
        workspace=Workspace(cfg.workspace).root,
        run_name=doc["run"],
        tags={
            "mspa.stage": "compact",
            "mspa.run": cfg.name,
            "mspa.feature_set": doc["feature_set"],
            "mspa.split_at": doc["split_at"],
            "mspa.ablation_parent_run_id": str(doc["ablation_parent_run_id"]),
            "mspa.command": doc["command"][:500],
        },
    )
    for r in doc["rows"]:
        prefix = f"{r['variant']}/{r['set']}"
        for key in (
            "bytes_per_user",
            "bytes_per_author",
            "read_p50_ms",
            "auc",
            "delta_auc_vs_full",
            "ci_low",
            "ci_high",
            "users_at_scale_bytes",
            "store_bytes_per_user",
            "store_bytes_per_author",
            "shared_key_bytes_per_user",
            "users_at_scale_store_bytes",
        ):
            value = r.get(key)
            if value is not None and math.isfinite(float(value)):
                client.log_metric(rid, f"{prefix}/{key}", float(value))
    client.log_artifact(rid, doc["json_path"])
    for p in doc["plots"].values():
        client.log_artifact(rid, p)
    client.set_terminated(rid)
    return rid


# --------------------------------------------------------------------------- output


def _fmt(x: float | None, spec: str = "+.4f") -> str:
    return "" if x is None else format(x, spec)


def pareto_table(doc: dict[str, Any]) -> Table:
    """The Pareto table: one row per variant x set."""
    redis = doc.get("online_store") == "redis"
    t = Table(
        title=(
            f"compact embeddings of {doc['feature_set']} (reducer fitted before "
            f"{doc['split_at'][:10]}; {doc['n_test']} test rows, seeds {doc['seeds']}; "
            f"online store {doc.get('online_store', 'sqlite')})"
        )
    )
    cols = ["variant", "set", "dims", "dtype", "B/user", "B/author"]
    if redis:
        cols += ["Redis B/user", "Redis B/author"]
    cols += ["p50 ms", "AUC", "delta AUC vs full [95% CI]", "400M users"]
    if redis:
        cols += ["400M in Redis"]
    for col in [*cols, "pareto"]:
        t.add_column(col, justify="left" if col in ("variant", "set", "dtype") else "right")
    for r in doc["rows"]:
        ci = "" if r["ci_low"] is None else f" [{r['ci_low']:+.4f},{r['ci_high']:+.4f}]"
        cells = [
            r["variant"],
            r["set"],
            str(r["dims"]),
            r["dtype"],
            f"{r['bytes_per_user']:.0f}",
            f"{r['bytes_per_author']:.0f}",
        ]
        if redis:
            cells += [
                f"{r['store_bytes_per_user']:.0f} {r['store_encoding']}",
                f"{r['store_bytes_per_author']:.0f}",
            ]
        cells += [
            f"{r['read_p50_ms']:.2f}",
            f"{r['auc']:.4f}",
            ("0 (reference)" if r["method"] == "full" else _fmt(r["delta_auc_vs_full"])) + ci,
            r["users_at_scale"],
        ]
        if redis:
            cells.append(r["users_at_scale_store"])
        t.add_row(*cells, "*" if r.get("pareto") else "")
    return t


def summary_lines(doc: dict[str, Any]) -> list[str]:
    fit = ", ".join(f"{k} {v}" for k, v in doc["fit_rows"].items())
    lines = [
        (
            f"reducer fitted on {fit} rows (latest {doc['fit_max_event_timestamp']}) before the "
            f"split {doc['split_at']}; baseline AUC {doc['baseline_auc']:.4f}"
        ),
        (
            "400M users: bytes per user x 400,000,000 (an extrapolation; key and store overhead "
            "not included)"
        ),
        *(
            [
                (
                    "Redis B/user: MEMORY USAGE of a hash of the set's fields alone per entity "
                    "(key, hash and its encoding included); 400M in Redis: that x 400,000,000; "
                    "the run's entity keys, every set's fields together: "
                    f"{doc['rows'][0]['shared_key_bytes_per_user']:.0f} B/user"
                )
            ]
            if doc.get("online_store") == "redis"
            else []
        ),
        f"report: {doc['json_path']}",
        *(f"plot: {p}" for p in doc["plots"].values()),
        f"ablation: {doc['ablation_results']} (MLflow parent {doc['ablation_parent_run_id']})",
        f"seconds: {doc['seconds']}",
    ]
    if doc.get("mlflow_run_id"):
        lines.append(f"MLflow run: {doc['mlflow_run_id']} (experiment {EXPERIMENT})")
    return lines
