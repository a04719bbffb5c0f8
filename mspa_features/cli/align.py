"""``mspa align configs/align/X.yaml``: GRPO preference alignment (MSPA section 3.2)."""

from __future__ import annotations

from typing import Annotated

import typer

from mspa_features.cli.common import AlignConfigArg, DeprecatedConfigOpt, config_file, console


def align(
    config: AlignConfigArg = None,
    config_option: DeprecatedConfigOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="validate the config (and its DeepSpeed JSON), no run")
    ] = False,
    evaluate: Annotated[
        bool | None,
        typer.Option("--eval/--no-eval", help="before/after evaluation (default: the config's)"),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="override grpo.max_steps")] = None,
) -> None:
    """Align a model with GRPO on U2A questions; save a checkpoint with a model_version id."""
    from mspa_features.align.config import load_align_config

    config = config_file(config, config_option, "align")
    cfg = load_align_config(config)
    if steps is not None:
        cfg = cfg.model_copy(update={"grpo": cfg.grpo.model_copy(update={"max_steps": steps})})
    weights = ", ".join(f"{k}={v:g}" for k, v in cfg.rewards.weights().items())
    console.print(
        f"model {cfg.model.name}; rewards {weights}; beta={cfg.grpo.beta:g} "
        f"G={cfg.grpo.num_generations} lr={cfg.grpo.learning_rate:g} "
        f"steps={cfg.grpo.max_steps} vllm={cfg.grpo.use_vllm} "
        f"deepspeed={cfg.grpo.deepspeed.name if cfg.grpo.deepspeed else None}",
        highlight=False,
    )
    if check:
        console.print(f"config ok: {config}")
        return
    from mspa_features.align.trainer import train
    from mspa_features.cli.data import ensure_run_data
    from mspa_features.config import load_config

    # the run config's data and U2A sets, unless already there
    ensure_run_data(load_config(cfg.run_config), eval_sets=True)
    res = train(cfg, evaluate=evaluate, progress=lambda m: console.print(f"[dim]{m}[/]"))
    b, a = res.probe_before, res.probe_after
    parts = [f"{k} {b[k]:.3f} -> {a[k]:.3f}" for k in b]
    console.print(f"reward probe (training batch): {'; '.join(parts)}", highlight=False)
    console.print(
        f"weights changed: {res.weights_changed:.0%} of tensors, max |delta| "
        f"{res.max_abs_weight_delta:.2e}; {res.seconds:.0f}s",
        highlight=False,
    )
    if res.evaluation:
        from mspa_features.cli.common import metric_table

        rows = {
            k: {c: v for c, v in row.items() if isinstance(v, float)}
            for k, row in res.evaluation.items()
        }
        cols = sorted({c for r in rows.values() for c in r if not c.endswith("_std")})
        console.print(metric_table("Before/after (held-out users)", rows, cols))
    console.print(f"model_version: [bold]{res.model_version}[/]\ncheckpoint: {res.checkpoint}")
    console.print(
        f"compose with it: composer.backend: {{type: transformers, model: {res.checkpoint}}}",
        highlight=False,
    )
