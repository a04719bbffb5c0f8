"""GRPO Self-Corrective Preference Aligner (MSPA section 3.2) on TRL's ``GRPOTrainer``.

:func:`train` builds the training prompts from U2A, loads the policy, hands TRL the three MSPA
rewards with their weights (``GRPOConfig.reward_weights``), KL ``beta``, group size and learning
rate, and tracks the run in MLflow: TRL's per-step metrics (``rewards/<name>/mean``, ``reward``,
``kl``, ``loss``) through transformers' MLflow callback, plus a reward probe on a fixed training
batch before and after training and how far the weights moved.

The checkpoint is saved as ``<output_dir>/<model_version>/`` with ``model_version =
<base>-grpo-<hash>``, the hash covering the config (minus tracking, output and evaluation
settings) and the training rows. The folder is a plain transformers checkpoint, so the
``transformers`` generation backend composes features with it (``composer.backend.model:
<folder>``), side by side with the base model's features.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mspa_features.align.config import AlignConfig
from mspa_features.align.dataset import IMAGES, AlignDataset, build_align_rows
from mspa_features.align.rewards import (
    AccuracyReward,
    FormatReward,
    SimilarityReward,
    load_author_embeddings,
)
from mspa_features.config import RunConfig, Workspace, load_config
from mspa_features.errors import SchemaError
from mspa_features.mlflow_store import workspace_tracking_uri

Progress = Callable[[str], None]
CHECKPOINT_META = "mspa_align.json"
logger = logging.getLogger(__name__)

# Beside the checkpoint: the run config with the composer switched to it (the hand-off).
COMPOSE_CONFIG = "run_config.yaml"


@dataclass
class AlignResult:
    """What a training run produced and measured."""

    model_version: str
    base: str
    checkpoint: str
    mlflow_run_id: str
    reward_weights: dict[str, float]
    n_train_rows: int
    probe_before: dict[str, float]
    probe_after: dict[str, float]
    weights_changed: float  # share of parameter tensors that moved
    max_abs_weight_delta: float
    log_history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    evaluation: dict[str, Any] | None = None


def model_version_id(base: str, cfg: AlignConfig, run_cfg: RunConfig, data_fp: str) -> str:
    """``<base>-grpo-<hash>`` over what determines the weights: the model, data, rewards and
    GRPO settings, the run's dataset and seed, and the training rows' fingerprint."""
    payload = cfg.model_dump(mode="json", include={"model", "data", "rewards", "grpo"})
    payload["grpo"].pop("deepspeed", None)  # an absolute path: machine-specific
    if not payload["data"]["frames_per_candidate"]:
        del payload["data"]["frames_per_candidate"]  # text-only ids stay what they were
    if payload["rewards"].get("tawin") is None:
        payload["rewards"].pop("tawin", None)  # plain GRPO ids stay what they were
    payload["run"] = {"name": run_cfg.name, "seed": run_cfg.seed}
    payload["rows"] = data_fp
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    return f"{base}-grpo-{digest}"


def author_profiles_path(cfg: AlignConfig, run_cfg: RunConfig) -> Path:
    """``features/<dataset>/<set>/author_profiles[.parquet]``; composed (template) if absent.

    Raises:
        SchemaError: the named feature set has no author profiles and is not ``template``.
    """
    folder = Workspace(run_cfg.workspace).features(run_cfg.name) / cfg.data.author_profiles
    for p in (folder / "author_profiles.parquet", folder / "author_profiles"):
        if p.exists():
            return p
    if cfg.data.author_profiles != "template":
        raise SchemaError(
            folder, "no author_profiles; run `mspa compose authors` or a backfill for this set"
        )
    from mspa_features.compose.jobs import compose_authors

    compose_authors(run_cfg, "template")  # cheap: no LLM, just the encoder
    return folder / "author_profiles.parquet"


def _author_texts(path: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["author_id", "author_text", "event_timestamp"])
    t = t.sort_by("event_timestamp")  # newest wins below
    return dict(zip(t.column("author_id").to_pylist(), t.column("author_text").to_pylist()))


def prepare_data(cfg: AlignConfig, run_cfg: RunConfig) -> tuple[AlignDataset, Path, Path]:
    """Build and save the training rows; return them, their file and the profiles path."""
    from mspa_features.compose.cache import ComposerCache
    from mspa_features.compose.jobs import load_authors, make_composer
    from mspa_features.evaluation.datasets import U2ADataset

    ws = Workspace(run_cfg.workspace)
    profiles = author_profiles_path(cfg, run_cfg)
    composer = make_composer(
        cfg.data.preference_composer, run_cfg.composer, ComposerCache(ws.composer_cache)
    )
    ds = build_align_rows(
        U2ADataset.load(ws.datasets(run_cfg.name)).table,
        load_authors(ws, run_cfg.name),
        _author_texts(profiles),
        composer,
        num_candidates=cfg.data.num_candidates,
        split=cfg.data.split,
        max_users=cfg.data.max_users,
        frames_per_candidate=cfg.data.frames_per_candidate,
        # Relative frame paths resolve against the data folder (see contracts.Frame).
        image_root=ws.data(run_cfg.name),
    )
    if ds.rows.empty:
        raise SchemaError(
            ws.datasets(run_cfg.name), f"no training rows in split {cfg.data.split!r}"
        )
    if cfg.data.frames_per_candidate:
        ds = _rows_with_images(ds, ws.datasets(run_cfg.name))
    frames = f"_f{cfg.data.frames_per_candidate}" if cfg.data.frames_per_candidate else ""
    name = (
        f"{cfg.data.split}_m{cfg.data.num_candidates}_{cfg.data.preference_composer}"
        f"{frames}.parquet"
    )
    path = ds.save(ws.datasets(run_cfg.name) / "align" / name)
    return ds, path, profiles


def _rows_with_images(ds: AlignDataset, where: Path) -> AlignDataset:
    """Only rows that carry at least one frame (the others are counted in ``n_skipped``).

    TRL 1.16 hands the processor ``None`` for an image-less prompt in a batch with images, and
    the stock Qwen2/2.5-VL processors reject it (transformers' ``fetch_images(None)``), so a
    mixed batch would crash mid-training instead of here.
    """
    has = ds.rows[IMAGES].map(len) > 0
    if not has.any():
        raise SchemaError(
            where, "frames_per_candidate > 0 but no candidate of any row has a decodable frame"
        )
    if has.all():
        return ds
    dropped = int((~has).sum())
    logger.warning("align: %d row(s) without any candidate frame left out", dropped)
    return AlignDataset(ds.rows[has].reset_index(drop=True), ds.n_skipped + dropped)


def build_rewards(cfg: AlignConfig, profiles: Path) -> list[Any]:
    """The reward functions in the order of ``cfg.rewards.weights()``."""
    rewards: list[Any] = [AccuracyReward(), FormatReward(partial=cfg.rewards.format_partial)]
    if cfg.rewards.similarity:
        rewards.append(SimilarityReward(load_author_embeddings(profiles)))
    names = [r.__name__ for r in rewards]
    assert names == list(cfg.rewards.weights()), (names, cfg.rewards.weights())
    return rewards


def reward_probe(
    model: Any,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    rewards: Sequence[Any],
    weights: Sequence[float],
    *,
    num_generations: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> dict[str, float]:
    """Mean of each reward and of the weighted total over ``num_generations`` seeded samples
    per prompt: the same batch and seed before and after training, so the change is the
    policy's."""
    import torch

    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps the tokenizer
    prompts = [
        tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        for r in rows
    ]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        seqs = model.generate(
            **enc,
            do_sample=True,
            temperature=temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_generations,
            pad_token_id=tokenizer.pad_token_id,
        )
    if was_training:
        model.train()
    new = seqs[:, enc["input_ids"].shape[1] :]  # (rows * G, new_tokens)
    texts = tokenizer.batch_decode(new, skip_special_tokens=True)
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    kwargs = {
        k: [r[k] for r in rows for _ in range(num_generations)]
        for k in ("answer", "candidate_ids", "target_author_id")
    }
    out: dict[str, float] = {}
    total = np.zeros(len(texts))
    for fn, w in zip(rewards, weights, strict=True):
        vals = np.asarray(fn(completions, **kwargs), dtype=np.float64)
        out[fn.__name__] = float(vals.mean())
        total += w * vals
    out["reward"] = float(total.mean())
    return out


def write_compose_config(run_cfg: RunConfig, ckpt: Path, *, batch_size: int = 8) -> Path:
    """``<ckpt>/run_config.yaml``: the run config whose composer generates with the checkpoint.

    ``mspa compose ... -c llm`` and ``mspa backfill ... -c llm --feature-set <model_version>``
    take it unchanged, so the aligned model's features land beside the base model's, in their
    own feature set and with their own ``model_version``.
    """
    import yaml

    from mspa_features.align.evaluate import backend_type_for
    from mspa_features.generation.base import BackendConfig

    # A vision-language policy is handed off to the VLM backend: its frames must reach it.
    backend = BackendConfig(type=backend_type_for(ckpt), model=str(ckpt), batch_size=batch_size)
    composer = run_cfg.composer.model_copy(update={"backend": backend})
    # The workspace is made absolute: the file lives outside the folder the original is in.
    derived = run_cfg.model_copy(
        update={"composer": composer, "workspace": Workspace(run_cfg.workspace).root}
    )
    path = ckpt / COMPOSE_CONFIG
    path.write_text(yaml.safe_dump(derived.model_dump(mode="json"), sort_keys=False))
    return path


def _snapshot(model: Any) -> dict[str, Any]:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters()}


def _weight_change(before: dict[str, Any], model: Any) -> tuple[float, float]:
    """Share of parameter tensors that moved, and the largest absolute change."""
    moved, max_delta, n = 0, 0.0, 0
    for name, p in model.named_parameters():
        if name not in before:
            continue
        d = (p.detach().to("cpu").float() - before[name].float()).abs().max().item()
        n += 1
        moved += int(d > 0)
        max_delta = max(max_delta, d)
    return (moved / n if n else 0.0), max_delta


def grpo_trainer(cfg: AlignConfig, **kwargs: Any) -> Any:
    """TRL's ``GRPOTrainer``, or :class:`~mspa_features.align.tawin_trainer.TAWinGRPOTrainer`
    when ``rewards.tawin`` is set; ``kwargs`` are ``GRPOTrainer``'s."""
    t = cfg.rewards.tawin
    if t is None:
        from trl import GRPOTrainer

        return GRPOTrainer(**kwargs)
    from mspa_features.align.tawin_trainer import TAWinGRPOTrainer

    return TAWinGRPOTrainer(tawin_alpha=t.alpha, tawin_width=t.width, **kwargs)


def _train_worker(
    cfg: AlignConfig, model: Any, tok: Any, rewards: list[Any], ds: AlignDataset, ckpt: Path
) -> AlignResult:
    """A non-zero rank of a multi-process launch: train and save (collective), no tracking."""
    from trl import GRPOConfig

    trainer = grpo_trainer(
        cfg,
        model=model,
        reward_funcs=rewards,
        args=GRPOConfig(**cfg.trl_kwargs(ckpt)),
        train_dataset=ds.to_hf(),
        processing_class=tok,
    )
    trainer.train()
    trainer.save_model(str(ckpt))  # ZeRO-3 gathers the shards: every rank must take part
    return AlignResult(
        ckpt.name, "", str(ckpt), "", cfg.rewards.weights(), len(ds.rows), {}, {}, 0, 0
    )


def mlflow_uri(cfg: AlignConfig, run_cfg: RunConfig) -> str:
    """The configured tracking URI, or SQLite in the run's workspace."""
    if cfg.tracking.mlflow_uri:
        return cfg.tracking.mlflow_uri
    ws = Workspace(run_cfg.workspace)
    ws.root.mkdir(parents=True, exist_ok=True)
    return workspace_tracking_uri(ws.root)


def train(
    cfg: AlignConfig, *, evaluate: bool | None = None, progress: Progress | None = None
) -> AlignResult:
    """Train, save the checkpoint, and (if enabled) evaluate base vs aligned.

    Args:
        cfg: a validated config (:func:`mspa_features.align.config.load_align_config`).
        evaluate: overrides ``cfg.eval.enabled``.
        progress: called with a line of text at each stage.
    """
    import time

    import mlflow
    import torch
    from trl import GRPOConfig

    from mspa_features.align.policy import load_policy

    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    if cfg.grpo.torch_threads:
        torch.set_num_threads(cfg.grpo.torch_threads)
    run_cfg = load_config(cfg.run_config)
    ws = Workspace(run_cfg.workspace)
    say("building training prompts from U2A")
    ds, data_path, profiles = prepare_data(cfg, run_cfg)
    say(f"{len(ds.rows)} prompts ({ds.n_skipped} users skipped) -> {data_path}")
    rewards = build_rewards(cfg, profiles)
    weights = cfg.rewards.weights()

    say(f"loading policy {cfg.model.name}")
    model, tok, base = load_policy(cfg.model, seed=cfg.grpo.seed)
    base_path = str(model.config._name_or_path)
    mv = model_version_id(base, cfg, run_cfg, ds.fingerprint)
    out_root = cfg.output_dir or (ws.root / "models")
    ckpt = Path(out_root).resolve() / mv

    probe_rows = ds.rows.head(cfg.probe_prompts).to_dict(orient="records")

    def probe(m: Any) -> dict[str, float]:
        return reward_probe(
            m,
            tok,
            probe_rows,
            rewards,
            list(weights.values()),
            num_generations=cfg.grpo.num_generations,
            max_new_tokens=cfg.grpo.max_completion_length,
            temperature=cfg.grpo.temperature,
            seed=cfg.grpo.seed,
        )

    from mspa_features.mlflow_store import ensure_experiment

    mlflow.set_tracking_uri(mlflow_uri(cfg, run_cfg))
    # Created with its artifacts beside a SQLite database, not in ./mlruns of the cwd.
    mlflow.set_experiment(
        experiment_id=ensure_experiment(mlflow_uri(cfg, run_cfg), cfg.tracking.experiment)
    )
    # Under `accelerate launch` every process runs this; only rank 0 tracks, saves metadata and
    # evaluates (TRL's own logging follows the same rule).
    if int(os.environ.get("RANK", "0")) != 0:
        return _train_worker(cfg, model, tok, rewards, ds, ckpt)
    tawin = cfg.rewards.tawin
    with mlflow.start_run(run_name=mv) as run:
        mlflow.set_tags({"mspa.model_version": mv, "mspa.base": base, "mspa.stage": "align"})
        mlflow.log_params(
            {
                "mspa.model": cfg.model.name,
                "mspa.dataset": run_cfg.name,
                "mspa.train_rows": len(ds.rows),
                "mspa.num_candidates": cfg.data.num_candidates,
                "mspa.preference_composer": cfg.data.preference_composer,
                "mspa.frames_per_candidate": cfg.data.frames_per_candidate,
                **{f"mspa.weight.{k}": v for k, v in weights.items()},
                **({} if tawin is None else {"mspa.tawin": f"{tawin.alpha},{tawin.width}"}),
            }
        )
        # Sharded (multi-process) parameters cannot be read or sampled from one rank alone.
        local = int(os.environ.get("WORLD_SIZE", "1")) == 1
        say("reward probe before training")
        before = probe(model) if local else {}
        args = GRPOConfig(**cfg.trl_kwargs(ckpt))
        trainer = grpo_trainer(
            cfg,
            model=model,
            reward_funcs=rewards,
            args=args,
            train_dataset=ds.to_hf(),
            processing_class=tok,
        )
        snap = _snapshot(trainer.model) if local else {}
        say(f"GRPO: {cfg.grpo.max_steps} steps, G={cfg.grpo.num_generations}")
        trainer.train()
        changed, max_delta = _weight_change(snap, trainer.model)
        del snap
        say("reward probe after training")
        after = probe(trainer.model) if local else {}
        mlflow.log_metrics(
            {
                **{f"probe_before/{k}": v for k, v in before.items()},
                **{f"probe_after/{k}": v for k, v in after.items()},
                "weights_changed_share": changed,
                "max_abs_weight_delta": max_delta,
            }
        )
        trainer.save_model(str(ckpt))  # also saves the processing class (tokenizer)
        result = AlignResult(
            model_version=mv,
            base=base,
            checkpoint=str(ckpt),
            mlflow_run_id=run.info.run_id,
            reward_weights=weights,
            n_train_rows=len(ds.rows),
            probe_before=before,
            probe_after=after,
            weights_changed=changed,
            max_abs_weight_delta=max_delta,
            log_history=[dict(h) for h in trainer.state.log_history],
        )
        meta = {
            "model_version": mv,
            "base": base,
            "base_model": cfg.model.name,
            "base_path": base_path,
            "config": cfg.model_dump(mode="json", exclude={"run_config", "output_dir"}),
            "train_rows": str(data_path.name),
            "rows_fingerprint": ds.fingerprint,
        }
        (ckpt / CHECKPOINT_META).write_text(json.dumps(meta, indent=2))
        write_compose_config(run_cfg, ckpt)
        del trainer
        if evaluate if evaluate is not None else cfg.eval.enabled:
            from mspa_features.align.evaluate import evaluate_before_after

            say("evaluating base and aligned models on held-out users")
            result.evaluation = evaluate_before_after(
                cfg, run_cfg, base_model=base_path, aligned=ckpt, progress=say
            )
        result.seconds = time.perf_counter() - t0
        results_dir = ws.results / "align"
        results_dir.mkdir(parents=True, exist_ok=True)
        out_file = results_dir / f"{mv}.json"
        out_file.write_text(json.dumps(asdict(result), indent=2, default=str))
        mlflow.log_artifact(str(out_file))
    return result
