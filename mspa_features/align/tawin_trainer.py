"""TRL's ``GRPOTrainer`` with TAWin advantage reweighting (``rewards.tawin`` in the align config).

Written against TRL 1.16.0 (the pinned version). TRL 1.16 has no separate advantage hook: the
group-normalised advantages are computed inside ``GRPOTrainer._generate_and_score_completions``
and returned in its output dict under ``"advantages"`` (this process's slice), which
``_compute_loss`` then reads. :class:`TAWinGRPOTrainer` overrides only that method: it calls
TRL's, scores each completion by the policy's mean per-token log-probability (TRL's
``old_per_token_logps`` when it computed them, else one no-grad forward pass through TRL's own
``_get_per_token_logps_and_entropies``), gathers advantages and scores across processes so
whole groups are reweighted, and multiplies this process's advantages by
:func:`~mspa_features.align.rewards.tawin.tawin_weights`. Everything else (rewards, KL, loss,
vLLM, DeepSpeed) is TRL's. Heavy import (torch, trl): import this module lazily.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer

from mspa_features.align.rewards import tawin

_VISION_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


class TAWinGRPOTrainer(GRPOTrainer):
    """GRPO whose training advantages are reweighted to a WPAUC window.

    Logged per step (TRL's metrics, so MLflow and ``log_history`` get them):
    ``tawin/negatives_in_window`` (share of negatives with a non-zero weight),
    ``tawin/max_weight`` and ``tawin/advantage_change`` (mean ``|A*w - A|``).

    Args:
        tawin_alpha: the window's start on the FPR axis.
        tawin_width: the window's width.
        *args, **kwargs: ``GRPOTrainer``'s.
    """

    def __init__(self, *args: Any, tawin_alpha: float, tawin_width: float, **kwargs: Any):
        tawin.check_window(tawin_alpha, tawin_width)
        super().__init__(*args, **kwargs)
        self.tawin_alpha = float(tawin_alpha)
        self.tawin_width = float(tawin_width)

    def _completion_scores(self, output: dict[str, Any]) -> torch.Tensor:
        """(B,) mean log-probability of each local completion under the current policy."""
        mask = output["completion_mask"].float()  # (B, T)
        if "tool_mask" in output:
            mask = mask * output["tool_mask"]
        logps = output.get("old_per_token_logps")
        if logps is None:
            prompt_ids, completion_ids = output["prompt_ids"], output["completion_ids"]
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            with torch.no_grad():
                logps, _, _ = self._get_per_token_logps_and_entropies(
                    self.model,
                    input_ids,
                    attention_mask,
                    completion_ids.size(1),
                    batch_size=self.args.per_device_train_batch_size,
                    **{k: output.get(k) for k in _VISION_KEYS},
                )  # (B, T)
        return (logps * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if not self.model.training:  # evaluation keeps TRL's advantages
            return output
        local_adv = output["advantages"]  # (B,) this process's slice
        scores = self.accelerator.gather(self._completion_scores(output).float())
        advantages = self.accelerator.gather(local_adv.float())  # (processes * B,)
        g = self.num_generations
        weights = tawin.tawin_weights(
            advantages.view(-1, g).cpu().numpy(),
            scores.view(-1, g).cpu().numpy(),
            alpha=self.tawin_alpha,
            width=self.tawin_width,
        ).reshape(-1)  # (processes * B,)
        w = torch.as_tensor(weights, dtype=local_adv.dtype, device=local_adv.device)
        start = self.accelerator.process_index * len(local_adv)
        w_local = w[start : start + len(local_adv)]
        output["advantages"] = local_adv * w_local

        neg = advantages < 0
        w_dev = w.to(advantages.device)
        metrics = self._metrics["train"]
        n_neg = int(neg.sum().item())
        metrics["tawin/negatives_in_window"].append(
            float((w_dev[neg] > 0).float().mean().item()) if n_neg else 1.0
        )
        metrics["tawin/max_weight"].append(float(w_dev.max().item()))
        metrics["tawin/advantage_change"].append(
            float((advantages * w_dev - advantages).abs().mean().item())
        )
        return output


__all__ = ["TAWinGRPOTrainer"]
