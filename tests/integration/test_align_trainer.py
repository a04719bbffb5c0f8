"""GRPO alignment end to end on a tiny workspace: train, track, save, compose with the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic run (40 users, 24 authors) with its U2A/A2A sets: returns the run config."""
    from mspa_features.cli.main_job import build_eval_sets, prepare_data
    from mspa_features.config import Workspace, load_config

    root = tmp_path_factory.mktemp("align")
    run = {
        "name": "tiny",
        "workspace": str(root / "ws"),
        "seed": 0,
        "data": {
            "source": "synthetic",
            "synthetic": {"n_users": 40, "n_authors": 24, "days": 10, "frames_per_author": 1},
        },
        "u2a": {"num_candidates": [4], "min_positives": 3},
        "a2a": {"num_triples": 50},
        "composer": {"backend": {"type": "transformers", "model": "smollm2", "batch_size": 8}},
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    cfg = load_config(path)
    ws = Workspace(cfg.workspace)
    prepare_data(cfg, ws)
    build_eval_sets(cfg, ws)
    return path


def _align_yaml(run_config: Path, tmp_path: Path, **over) -> Path:
    cfg = {
        "run_config": str(run_config),
        "model": {"name": "tiny-random-llama"},
        "data": {"split": "train", "num_candidates": 4, "max_users": 4},
        "rewards": {"lambda_accuracy": 0.6, "lambda_format": 0.2},
        "grpo": {
            "learning_rate": 1e-3,
            "num_generations": 2,
            "per_device_train_batch_size": 2,
            "max_steps": 2,
            "max_completion_length": 8,
            "torch_threads": 1,
        },
        "tracking": {"mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        "eval": {"enabled": False},
        "output_dir": str(tmp_path / "models"),
        **over,
    }
    p = tmp_path / "align.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_train_tracks_saves_and_composes(tiny_workspace: Path, tmp_path: Path) -> None:
    import mlflow
    import torch

    from mspa_features.align.config import load_align_config
    from mspa_features.align.trainer import CHECKPOINT_META, train

    torch.set_num_threads(1)
    cfg = load_align_config(_align_yaml(tiny_workspace, tmp_path))
    res = train(cfg)

    # The checkpoint carries the model_version id and its metadata.
    ckpt = Path(res.checkpoint)
    assert res.model_version.startswith("tiny-random-llama-grpo-")
    assert ckpt.name == res.model_version
    meta = json.loads((ckpt / CHECKPOINT_META).read_text())
    assert meta["model_version"] == res.model_version
    assert (ckpt / "config.json").exists() and (ckpt / "tokenizer_config.json").exists()

    # TRL's reward components and KL reached MLflow, with the reward probe.
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(res.mlflow_run_id)
    keys = set(run.data.metrics)
    for k in ("rewards/accuracy/mean", "rewards/format/mean", "rewards/similarity/mean", "kl"):
        assert k in keys, sorted(keys)
    assert "probe_before/reward" in keys and "probe_after/reward" in keys
    assert run.data.tags["mspa.model_version"] == res.model_version
    assert res.reward_weights == pytest.approx({"accuracy": 0.6, "format": 0.2, "similarity": 0.2})

    # Same config and data -> same id (the id is a hash, not a timestamp).
    from mspa_features.align.trainer import model_version_id
    from mspa_features.config import load_config

    run_cfg = load_config(cfg.run_config)
    again = model_version_id("tiny-random-llama", cfg, run_cfg, meta["rows_fingerprint"])
    assert again == res.model_version

    # Before/after evaluation on held-out users through the normal evaluation path.
    from mspa_features.align.evaluate import evaluate_before_after

    small = {"cohort_users": 2, "num_candidates": [4], "generations": 2, "rec_max_new_tokens": 8}
    ecfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update=small)})
    ev = evaluate_before_after(ecfg, run_cfg, base_model=meta["base_path"], aligned=ckpt)
    assert set(ev) == {"base", "aligned"}
    for row in ev.values():
        assert {"acc@4", "acc@4_emb", "recall@5", "ndcg@10", "author_pool"} <= set(row)
        assert 0.0 <= row["acc@4"] <= 1.0 and len(row["acc_gen_runs"]["4"]) == 2
    assert ev["aligned"]["model_version"] != ev["base"]["model_version"]
    assert len(list((run_cfg.workspace / "results" / "align").glob("eval-*.json"))) == 2

    # Hand-off: the run config written beside the checkpoint composes preferences through the
    # normal path, tagged with the aligned model's version.
    from mspa_features.align.trainer import COMPOSE_CONFIG
    from mspa_features.compose.jobs import compose_users

    derived = load_config(ckpt / COMPOSE_CONFIG)
    assert derived.composer.backend.model == str(ckpt)
    assert derived.workspace == run_cfg.workspace.resolve()
    derived = derived.model_copy(
        update={"composer": derived.composer.model_copy(update={"max_new_tokens": 8})}
    )
    out = compose_users(derived, "llm", limit=3)
    versions = set(out.table.column("model_version").to_pylist())
    assert out.table.num_rows + out.quarantine.num_rows == 3
    assert out.table.num_rows > 0, out.quarantine.to_pylist()
    assert all(res.model_version in v for v in versions), versions


def _warm_start(rows: list[dict], folder: Path, steps: int = 40) -> Path:
    """The tiny random policy taught by teacher forcing to answer in the RECOMMEND format with a
    random letter: its samples then differ in accuracy, which gives GRPO a signal (a random
    policy earns 0 everywhere, and all-equal rewards give zero advantage and no update)."""
    import random

    import torch

    from mspa_features.align.config import PolicyModelConfig
    from mspa_features.align.policy import load_policy

    model, tok, _ = load_policy(PolicyModelConfig(name="tiny-random-llama"))
    prompts = [
        tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        for r in rows
    ]

    def answer(letter: str) -> str:
        return (
            '{"User Preference": "drama", "Recommendation Reason": "fits", '
            f'"Answer": "{letter}"}}<|im_end|>'
        )

    k = len(tok(answer("A"), add_special_tokens=False)["input_ids"])  # same for every letter
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rng = random.Random(0)
    for _ in range(steps):
        texts = [p + answer(rng.choice("ABCD")) for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        logits = model(**enc, logits_to_keep=k + 1).logits[:, :-1]  # (batch, k, vocab)
        target = enc["input_ids"][:, -k:]  # left-padded: the answer is the last k tokens
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_grpo_moves_the_weights_when_rewards_differ(tiny_workspace: Path, tmp_path: Path) -> None:
    import mlflow
    import torch

    from mspa_features.align.config import load_align_config
    from mspa_features.align.trainer import prepare_data, train
    from mspa_features.config import load_config

    torch.set_num_threads(1)
    base_cfg = load_align_config(_align_yaml(tiny_workspace, tmp_path))
    ds, _, _ = prepare_data(base_cfg, load_config(base_cfg.run_config))
    warm = _warm_start(ds.rows.head(4).to_dict(orient="records"), tmp_path / "warm")
    grpo = {
        "learning_rate": 1e-3,
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "max_steps": 2,
        "max_completion_length": 32,
        "torch_threads": 1,
    }
    cfg = load_align_config(
        _align_yaml(tiny_workspace, tmp_path, model={"name": str(warm)}, grpo=grpo)
    )
    res = train(cfg)

    assert res.model_version.startswith("warm-grpo-")  # a local checkpoint as the base
    stds = [h["rewards/accuracy/std"] for h in res.log_history if "rewards/accuracy/std" in h]
    assert stds and max(stds) > 0, res.log_history  # the samples disagreed: a real signal
    assert res.weights_changed > 0.5 and res.max_abs_weight_delta > 0
    # The warmed policy answers in format: the probe sees it before and after.
    assert res.probe_before["format"] > 0.5 and res.probe_after["format"] > 0.5
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    hist = client.get_metric_history(res.mlflow_run_id, "rewards/accuracy/mean")
    assert len(hist) == 2  # one point per step (logging_steps=1)


def test_aligned_checkpoint_backfills_beside_the_base_in_feast(
    tiny_workspace: Path, tmp_path: Path
) -> None:
    """Hand-off to serving: the checkpoint's run config drives the Spark backfill into its own
    feature set; ``mspa register`` registers it beside the template set and the base model's
    ``llm`` set, each tagged with its version, and runs the drift report base -> aligned."""
    import numpy as np
    import pandas as pd
    import torch

    from mspa_features.align.config import load_align_config
    from mspa_features.align.trainer import COMPOSE_CONFIG, train
    from mspa_features.cli import run_cli
    from mspa_features.cli.main_job import feature_range
    from mspa_features.config import Workspace, load_config
    from mspa_features.data.ingest import load_accepted
    from mspa_features.serving.materialize import open_store
    from mspa_features.serving.reads import online_features
    from mspa_features.snapshots.backfill import BackfillConfig, feature_set_dir
    from mspa_features.snapshots.partitions import read_partitions
    from spark_jobs.backfill import run_backfill
    from spark_jobs.session import build_spark_session

    torch.set_num_threads(1)
    grpo = {"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2,
            "max_completion_length": 8, "torch_threads": 1}  # fmt: skip
    res = train(load_align_config(_align_yaml(tiny_workspace, tmp_path, grpo=grpo)))
    derived = load_config(Path(res.checkpoint) / COMPOSE_CONFIG)
    short = {"max_new_tokens": 8, "author_max_new_tokens": 8}
    derived = derived.model_copy(update={"composer": derived.composer.model_copy(update=short)})
    # The base model's own features (set llm): the same run config, composing with the base.
    meta = json.loads((Path(res.checkpoint) / "mspa_align.json").read_text())
    base_backend = derived.composer.backend.model_copy(update={"model": meta["base_path"]})
    base_cfg = derived.model_copy(
        update={"composer": derived.composer.model_copy(update={"backend": base_backend})}
    )
    ws = Workspace(derived.workspace)
    start, end = feature_range(load_accepted(ws.data(derived.name), "interactions"))

    fs = res.model_version
    backfills = {
        "template": (derived, BackfillConfig(cadence="weekly")),
        "llm": (base_cfg, BackfillConfig(cadence="weekly", composer="llm")),
        fs: (derived, BackfillConfig(cadence="weekly", composer="llm", feature_set=fs)),
    }
    spark = build_spark_session(BackfillConfig())
    try:
        counts = {
            name: run_backfill(c, bf, start, end, spark=spark)
            for name, (c, bf) in backfills.items()
        }
    finally:
        spark.stop()
    for per_set in counts.values():
        for c in per_set.values():
            assert c.requested == c.written + c.quarantined and c.written > 0

    repo = Path(__file__).resolve().parents[2] / "feature_repo"
    handoff = Path(res.checkpoint) / COMPOSE_CONFIG
    sets = [x for name in ("template", "llm", fs) for x in ("-s", name)]
    argv = ["register", str(handoff), *sets, "--full", "--repo", str(repo)]
    assert run_cli(argv) == 0
    store = open_store(derived, repo_path=repo)
    views = {v.name for v in store.list_feature_views()}
    assert {f"user_preferences__{fs}", "user_preferences__template"} <= views
    assert f"all__{fs}" in {s.name for s in store.list_feature_services()}

    # The hand-off's drift report, base llm -> aligned, against brute force over the rows.
    doc = json.loads(
        (ws.results / "drift" / derived.name / f"llm__vs__{fs}" / "drift.json").read_text()
    )
    assert (doc["set_a"], doc["set_b"]) == ("llm", fs) and doc["mlflow_run_id"]
    when = pd.Timestamp(doc["as_of"])

    def as_of_rows(name: str, entity: str, key: str, col: str) -> dict[str, np.ndarray]:
        c, bf = backfills[name]
        t = read_partitions(feature_set_dir(c, bf) / entity).to_pandas()
        t = t[t["event_timestamp"] <= when].sort_values("event_timestamp", kind="stable")
        return {str(k): np.asarray(g[col].iloc[-1], np.float64) for k, g in t.groupby(key)}

    for side, entity, key, col in (
        ("users", "preferences", "user_id", "pref_emb"),
        ("authors", "author_profiles", "author_id", "author_emb"),
    ):
        a, b = as_of_rows("llm", entity, key, col), as_of_rows(fs, entity, key, col)
        both = sorted(set(a) & set(b))
        assert (doc[side]["n_a"], doc[side]["n_b"], doc[side]["n_both"]) == (
            len(a),
            len(b),
            len(both),
        )
        assert both, side
        cos = np.array([a[i] @ b[i] / (np.linalg.norm(a[i]) * np.linalg.norm(b[i])) for i in both])
        for stat, value in (("mean", cos.mean()), ("min", cos.min()), ("max", cos.max())):
            assert doc[side]["cosine"][stat] == pytest.approx(value, abs=1e-5), (side, stat)
        if side == "users":  # and user by user
            got = {r["user_id"]: r["cosine"] for r in doc["per_user"]}
            assert got == pytest.approx(dict(zip(both, cos, strict=True)), abs=1e-5)

    # Online, the same user gets both sets' features, each with its own model_version.
    user = load_accepted(ws.data(derived.name), "interactions")["user_id"].iloc[0]
    author = load_accepted(ws.data(derived.name), "authors")["author_id"].iloc[0]
    versions = {}
    # The read replays the data's last instant: the online TTL rule is relative to it.
    last = pd.Timestamp(
        load_accepted(ws.data(derived.name), "interactions")["event_timestamp"].max()
    )
    as_of = last if last.tzinfo else last.tz_localize("UTC")
    for name in ("template", fs):
        row = online_features(
            store,
            [f"user_preferences__{name}:model_version", f"author_profiles__{name}:author_text"],
            [(str(user), str(author))],
            as_of=as_of,
        ).iloc[0]
        versions[name] = row["model_version"]
        assert row["author_text"]
    assert res.model_version in versions[fs]
    assert versions["template"] != versions[fs]
