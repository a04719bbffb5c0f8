"""One GRPO step of TRL's ``GRPOTrainer`` on training rows that carry candidate frames.

The policy is the tiny Qwen2-VL with RANDOM WEIGHTS (``build_tiny_qwen2vl``): this proves the
plumbing (rows -> ``to_hf`` -> TRL's image placeholders -> processor -> vision tower -> loss),
not quality. Its completions are noise, so the reward here is an arbitrary function of the text
that differs within a group (equal rewards give zero advantages and no gradient).
"""

from __future__ import annotations

import io
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mspa_features.align.dataset import build_align_rows
from mspa_features.compose.composer import TemplateComposer
from mspa_features.data.contracts import Author, Frame

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _png(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), rgb).save(buf, format="PNG")
    return buf.getvalue()


def _processor(folder: Path) -> Any:
    """A ``Qwen2VLProcessor`` without a video processor.

    TRL needs a ``ProcessorMixin`` (``QwenVLTextImageProcessor`` is not one), and the stock
    processor cannot be built without torchvision (it insists on a video processor); dropping
    ``video_processor`` from ``__init__`` drops it from the processor's attributes.

    ``__call__`` maps ``None`` to ``[]``: for a batch mixing prompts with and without images,
    TRL 1.16 passes ``None`` for the image-less ones and transformers' ``fetch_images`` rejects
    ``None`` (an empty list is its "no images" marker). The stock Qwen2(.5)-VL processors do
    not override ``__call__``, so they need the same mapping.
    """
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

        def __call__(self, images=None, text=None, **kwargs):
            if images is not None:
                images = [[] if x is None else x for x in images]
            return super().__call__(images=images, text=text, **kwargs)

    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    return ImageOnlyQwen2VLProcessor(
        image_processor=Qwen2VLImageProcessorPil.from_pretrained(folder),
        tokenizer=tok,
        chat_template=tok.chat_template,
    )


def _rows() -> Any:
    """Four users; u0's candidates have no frames (a batch mixing image-less rows)."""
    authors = {
        f"a{i}": Author(
            author_id=f"a{i}",
            event_timestamp=T0,
            profile_text=f"Movie {i}",
            frames=[Frame(bytes=_png((30 * i, 0, 0)))] if i % 3 else [],
        )
        for i in range(8)
    }
    users = [
        ("u0", ["a1", "a2"], ["a0", "a3", "a6", "zz"]),
        ("u1", ["a2", "a3"], ["a4", "a5", "a6", "a7"]),
        ("u2", ["a3", "a4"], ["a5", "a6", "a7", "a0"]),
        ("u3", ["a4", "a5"], ["a6", "a7", "a0", "a1"]),
    ]
    ts = pd.Timestamp("2024-02-01", tz="UTC")
    u2a = pd.DataFrame(
        {
            "user_id": [u[0] for u in users],
            "split": "train",
            "history_author_ids": [u[1] for u in users],
            "history_ts": [[ts - pd.Timedelta(days=1)] * 2 for _ in users],
            "target_author_id": [u[2][0] for u in users],
            "target_ts": ts,
            "as_of": ts,
            "candidates_m4": [u[2] for u in users],
            "answer_m4": "A",
            "answer_index_m4": 0,
        }
    )
    return build_align_rows(
        u2a, authors, {}, TemplateComposer(), num_candidates=4, frames_per_candidate=1
    )


def text_hash_reward(completions: list[list[dict[str, str]]], **kwargs: Any) -> list[float]:
    return [float(zlib.crc32(c[0]["content"].encode()) % 7) for c in completions]


def test_one_grpo_step_trains_the_vision_tower_on_candidate_frames(tmp_path: Path) -> None:
    import torch
    from transformers import Qwen2VLForConditionalGeneration
    from trl import GRPOConfig, GRPOTrainer

    from mspa_features.generation.vlm import build_tiny_qwen2vl

    torch.set_num_threads(2)
    ds = _rows()
    assert [len(x) for x in ds.rows["images"]] == [0, 3, 2, 2]
    folder = build_tiny_qwen2vl(tmp_path / "tiny-qwen2vl")
    model = Qwen2VLForConditionalGeneration.from_pretrained(folder)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        max_steps=1,
        per_device_train_batch_size=8,  # all four prompts (G=2 each) in the one step
        num_generations=2,
        max_completion_length=8,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        remove_unused_columns=False,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[text_hash_reward],
        args=args,
        train_dataset=ds.to_hf(),
        processing_class=_processor(folder),
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "visual" in n}
    trainer.train()
    assert before, "no vision-tower parameters found"
    # The vision tower only gets a gradient if the frames reached the forward pass.
    moved = [
        n
        for n, p in trainer.model.named_parameters()
        if n in before and not torch.equal(p.detach(), before[n])
    ]
    assert len(moved) == len(before)
    assert trainer.state.log_history[0]["reward_std"] > 0
