"""Before/after evaluation of an alignment run on held-out users (MSPA Tables 1 and 3).

Each model (base, aligned) is loaded through the normal ``transformers`` generation backend
and evaluated with :func:`mspa_features.evaluation.composer_eval.evaluate_composer`: it composes the
preference texts (Recall/NDCG@K, A2A on its author descriptions) and answers the lettered
questions (Acc@m over ``generations`` seeded samples).

On CPU the author pool is cut to the authors the cohort's questions name (the largest ``m``
candidate sets): describing every author with an LLM costs tens of minutes per model.
Retrieval metrics over that pool are easier than over the full catalogue; they compare
models with each other, not with the paper. A2A keeps the triples inside the pool.
Results go to ``results/align/eval-<model_version>.json`` and the active MLflow run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from mspa_features.align.config import AlignConfig
from mspa_features.config import RunConfig, Workspace


def _backend_model(name: str | Path) -> str:
    return str(name)


def backend_type_for(model: str | Path) -> str:
    """The generation backend that keeps a policy's architecture: ``transformers-vl`` for a
    checkpoint folder whose ``config.json`` ``model_type`` is a vision-language model the VLM
    backend serves (frames reach it as images), else ``transformers`` (text-only)."""
    from mspa_features.generation.vlm import MODEL_CLASSES

    config = Path(str(model)) / "config.json"
    if not config.is_file():
        return "transformers"
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, OSError):
        return "transformers"
    return "transformers-vl" if model_type in MODEL_CLASSES else "transformers"


def evaluate_model(
    cfg: AlignConfig,
    run_cfg: RunConfig,
    model: str | Path,
    *,
    label: str,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """U2A/A2A metrics of one model (an embedded name or a checkpoint folder); cached on disk
    by the backend's model version and the evaluation settings."""
    from mspa_features.compose.cache import ComposerCache
    from mspa_features.compose.composer import LLMComposer, TemplateComposer
    from mspa_features.compose.jobs import SplitComposer, get_encoder, load_authors
    from mspa_features.evaluation.composer_eval import evaluate_composer
    from mspa_features.evaluation.datasets import U2ADataset
    from mspa_features.generation.base import BackendConfig, GenerationConfig, load_backend

    say = progress or (lambda _m: None)
    ws = Workspace(run_cfg.workspace)
    e = cfg.eval
    backend = load_backend(
        BackendConfig(
            type=backend_type_for(model),
            model=_backend_model(model),
            batch_size=e.batch_size,
            threads=cfg.grpo.torch_threads,
        )
    )
    key = hashlib.sha256(
        json.dumps(
            [
                backend.model_version,
                e.model_dump(mode="json"),
                run_cfg.name,
                run_cfg.composer.structured,
            ]
        ).encode()
    ).hexdigest()[:10]
    out = ws.results / "align" / f"eval-{key}.json"
    if out.exists():
        say(f"{label}: reusing {out.name}")
        return json.loads(out.read_text())

    authors = load_authors(ws, run_cfg.name)
    u2a = U2ADataset.load(ws.datasets(run_cfg.name)).table
    test = u2a[u2a["split"] == "test"].sort_values("user_id").head(e.cohort_users)
    test = test.reset_index(drop=True)
    m_max = max(e.num_candidates)
    pool = sorted({a for c in test[f"candidates_m{m_max}"] for a in c} & set(authors))
    a2a = pd.read_parquet(ws.datasets(run_cfg.name) / "a2a.parquet")
    a2a = a2a[a2a["a1"].isin(pool) & a2a["a2"].isin(pool) & a2a["a3"].isin(pool)]

    composer = LLMComposer(
        backend,
        gen=GenerationConfig(max_new_tokens=e.composer_max_new_tokens),
        cache=ComposerCache(ws.composer_cache),
        token_budget=run_cfg.composer.token_budget,
        # Constrained decoding (composer.structured, the default) makes Acc@m by generation of
        # the base and the aligned model real numbers: every answer names one of the letters.
        structured=run_cfg.composer.structured,
    )
    decoding = composer.decoding
    if e.author_descriptions == "template":
        # Preferences from the model, candidate descriptions from the template composer, the
        # same texts the training prompts showed.
        composer = SplitComposer(composer, TemplateComposer())
    ev = evaluate_composer(
        label,
        composer,
        get_encoder(run_cfg.composer),
        test,
        authors,  # histories read their authors' profiles; only the pool is described
        a2a,
        num_candidates=e.num_candidates,
        cache=ComposerCache(ws.composer_cache),
        recommender=backend,
        generations=e.generations,
        temperature=e.temperature,
        rec_max_new_tokens=e.rec_max_new_tokens,
        pool=pool,
        progress=lambda stage, i, t: say(f"{label}: {stage} {i}/{t}"),
        decoding=decoding,
    )
    backend.close()
    row = ev.row()
    row.update(
        {
            "model": str(model),
            "decoding": decoding,
            "author_pool": len(pool),
            "author_descriptions": e.author_descriptions,
            "a2a_triples_in_pool": len(a2a),
            "acc_gen_runs": {str(m): v for m, v in ev.acc_gen.items()},
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2, default=str))
    return row


def evaluate_before_after(
    cfg: AlignConfig,
    run_cfg: RunConfig,
    *,
    base_model: str,
    aligned: str | Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate the base and the aligned model; log both to the active MLflow run.

    Args:
        base_model: an embedded name or the folder the base policy was loaded from.
        aligned: the aligned checkpoint folder.
    """
    import mlflow

    out: dict[str, Any] = {}
    for label, model in {"base": base_model, "aligned": aligned}.items():
        row = evaluate_model(cfg, run_cfg, model, label=label, progress=progress)
        out[label] = row
        if mlflow.active_run() is not None:
            mlflow.log_metrics(
                {
                    f"eval_{label}/{k.replace('@', '_at_')}": float(v)
                    for k, v in row.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
            )
    return out
