"""The transformers vision-language path on a tiny Qwen2-VL.

The tiny model has RANDOM WEIGHTS (built by ``build_tiny_qwen2vl``): these tests prove the
plumbing (loading, multi-image prompts, batching, M-RoPE inputs, decoding), never quality. Its
texts are noise, so nothing here asserts what they say.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from mspa_features.errors import ConfigError
from mspa_features.generation.base import (
    BackendConfig,
    ChatMessage,
    GenerationConfig,
    load_backend,
)
from mspa_features.generation.vlm import (
    IMAGE_TOKEN,
    QwenVLBackend,
    QwenVLTextImageProcessor,
    to_qwen_messages,
)


def _image(w: int, h: int, color: str, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, fmt)
    return buf.getvalue()


# Three frames of different sizes/aspects (one JPEG), then a one-image conversation.
MULTI = [
    ChatMessage("system", "You rate movies."),
    ChatMessage(
        "user",
        "Three frames from my history.",
        images=(
            _image(40, 30, "red"),
            _image(64, 64, "blue", "JPEG"),
            _image(100, 20, "green"),
        ),
    ),
]
SINGLE = [ChatMessage("user", "One poster.", images=(_image(20, 20, "white"),))]
TEXT_ONLY = [ChatMessage("user", "No images here.")]


# ----------------------------------------------------------------------------- no model needed


def test_to_qwen_messages_puts_one_placeholder_per_image_then_text() -> None:
    msgs = to_qwen_messages(MULTI)
    assert msgs[0] == {"role": "system", "content": "You rate movies."}
    assert msgs[1]["role"] == "user"
    assert msgs[1]["content"] == [
        {"type": "image"},
        {"type": "image"},
        {"type": "image"},
        {"type": "text", "text": "Three frames from my history."},
    ]


def test_not_a_model_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local model folder"):
        QwenVLBackend(BackendConfig(type="transformers-vl", model=str(tmp_path)))


def test_unsupported_model_type_and_unknown_option_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ConfigError, match="model_type 'llama' is not supported"):
        QwenVLBackend(BackendConfig(type="transformers-vl", model=str(tmp_path)))
    with pytest.raises(ConfigError, match="unknown option"):
        QwenVLBackend(
            BackendConfig(type="transformers-vl", model=str(tmp_path), options={"devcie": "cpu"})
        )


# ----------------------------------------------------------------------------- tiny model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny RANDOM-WEIGHT Qwen2-VL, built once for this module (~20-30 s: GGUF tokenizer)."""
    from mspa_features.generation.vlm import build_tiny_qwen2vl

    return build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))


@pytest.fixture(scope="module")
def backend(tiny_dir: Path) -> QwenVLBackend:
    # Loaded through the backend registry machinery (dotted path until the short name is added).
    be = load_backend(
        BackendConfig(
            type="mspa_features.generation.vlm:QwenVLBackend", model=str(tiny_dir), batch_size=2
        )
    )
    assert isinstance(be, QwenVLBackend)
    return be


@pytest.mark.slow
def test_tiny_model_loads(backend: QwenVLBackend, tiny_dir: Path) -> None:
    assert backend.supports_images is True
    assert backend.name == "transformers-vl"
    assert backend.model_version.startswith("transformers-vl:qwen2_vl:")
    # same folder -> same version (cache keys stay valid across loads)
    again = QwenVLBackend(BackendConfig(type="transformers-vl", model=str(tiny_dir)))
    assert again.model_version == backend.model_version
    assert backend.count_tokens("hello world") == 2
    assert (tiny_dir / "README.md").read_text().find("RANDOM WEIGHTS") >= 0


@pytest.mark.slow
def test_multi_image_prompt_has_one_pad_token_per_merged_patch(backend: QwenVLBackend) -> None:
    # TRL #4488/#3847: image-token mismatches with multi-image prompts. The count of
    # <|image_pad|> ids must equal sum(grid_thw.prod() / merge_size**2), per row and in total.
    inputs = backend.prepare_inputs([MULTI, SINGLE])
    merge = backend.processor.image_processor.merge_size
    grid = inputs["image_grid_thw"]  # (4, 3): 3 images of MULTI, then SINGLE's
    assert grid.shape == (4, 3)
    per_image = [int(g.prod()) // merge**2 for g in grid]
    assert all(n > 0 for n in per_image)
    is_image = inputs["input_ids"] == backend.image_token_id  # (2, L)
    assert is_image.sum(dim=1).tolist() == [sum(per_image[:3]), per_image[3]]
    assert int(is_image.sum()) == sum(per_image)
    # M-RoPE needs mm_token_type_ids == 1 exactly on the image tokens
    assert (inputs["mm_token_type_ids"] == 1).equal(is_image)
    # one row of pixel_values per patch
    assert inputs["pixel_values"].shape[0] == int(grid.prod(dim=1).sum())
    # left padding: the shorter row starts with padding, both end with real tokens
    mask = inputs["attention_mask"]
    assert mask[:, -1].tolist() == [1, 1]
    assert mask[1, 0].item() == 0


@pytest.mark.slow
def test_builtin_processor_expands_each_placeholder_in_order(tiny_dir: Path) -> None:
    proc = QwenVLTextImageProcessor.from_pretrained(tiny_dir)
    from PIL import Image

    small, large = Image.new("RGB", (20, 20)), Image.new("RGB", (64, 64))
    text = f"a{IMAGE_TOKEN}b{IMAGE_TOKEN}c"
    out = proc(text=[text], images=[small, large])
    grid = out["image_grid_thw"]
    expected = [int(g.prod()) // proc.merge_size**2 for g in grid]
    ids = out["input_ids"][0].tolist()
    runs, run = [], 0
    for t in ids + [-1]:
        if t == proc.image_token_id:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    assert runs == expected
    with pytest.raises(ValueError, match="2 <\\|image_pad\\|> placeholders in the text but 1"):
        proc(text=[text], images=[small])


@pytest.mark.slow
def test_batch_of_two_greedy_is_deterministic_and_bounded(backend: QwenVLBackend) -> None:
    cfg = GenerationConfig(max_new_tokens=5)
    first = backend.generate([MULTI, SINGLE], cfg)
    second = backend.generate([MULTI, SINGLE], cfg)
    assert len(first) == 2
    assert first == second
    prompt_lens = backend.prepare_inputs([MULTI, SINGLE])["attention_mask"].sum(dim=1).tolist()
    for g, n_prompt in zip(first, prompt_lens, strict=True):
        assert g.n_prompt_tokens == n_prompt
        assert 1 <= g.n_generated_tokens <= 5
        assert g.finish_reason in ("stop", "length")
        if g.finish_reason == "length":
            assert g.n_generated_tokens == 5


@pytest.mark.slow
def test_max_new_tokens_respected(backend: QwenVLBackend) -> None:
    (g,) = backend.generate([SINGLE], GenerationConfig(max_new_tokens=2))
    assert g.n_generated_tokens <= 2
    assert g.finish_reason == "length" or g.n_generated_tokens < 2


@pytest.mark.slow
def test_seeded_sampling_repeats_and_leaves_global_rng_alone(backend: QwenVLBackend) -> None:
    import torch

    cfg = GenerationConfig(max_new_tokens=4, temperature=1.0, seed=7)
    state = torch.get_rng_state()
    a = backend.generate([SINGLE], cfg)
    b = backend.generate([SINGLE], cfg)
    assert a == b
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.slow
def test_stop_string_truncates_the_greedy_text(backend: QwenVLBackend) -> None:
    (full,) = backend.generate([TEXT_ONLY], GenerationConfig(max_new_tokens=8))
    if len(full.text) < 3:
        pytest.skip(f"random model produced too short a text to cut: {full.text!r}")
    stop = full.text[2]
    (cut,) = backend.generate([TEXT_ONLY], GenerationConfig(max_new_tokens=8, stop=(stop,)))
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"


@pytest.mark.slow
def test_undecodable_image_names_its_index(backend: QwenVLBackend) -> None:
    bad = [
        ChatMessage("user", "frames", images=(_image(30, 30, "red"), _image(30, 30, "blue"))),
        ChatMessage("user", "more", images=(b"definitely not an image",)),
    ]
    with pytest.raises(ValueError, match=r"conversation 1: cannot decode image 2 \(message 1"):
        backend.generate([SINGLE, bad], GenerationConfig(max_new_tokens=2))


@pytest.mark.slow
def test_text_only_conversation(backend: QwenVLBackend) -> None:
    inputs = backend.prepare_inputs([TEXT_ONLY])
    assert "pixel_values" not in inputs
    assert int(inputs["mm_token_type_ids"].sum()) == 0
    (g,) = backend.generate([TEXT_ONLY], GenerationConfig(max_new_tokens=3))
    assert g.n_prompt_tokens == int(inputs["attention_mask"].sum())
    assert 1 <= g.n_generated_tokens <= 3
    # mixed batch: text-only beside an image conversation
    mixed = backend.generate([TEXT_ONLY, SINGLE], GenerationConfig(max_new_tokens=3))
    assert len(mixed) == 2


# ----------------------------------------------------------------------------- structured, seeds


@pytest.mark.slow
def test_schema_forces_the_random_model_into_the_answer(backend: QwenVLBackend) -> None:
    # RANDOM weights: free-form the model writes noise; constrained, every row is a complete
    # answer of its own schema (rows in one batch keep separate grammars).
    from mspa_features.compose.prompts import RECOMMEND
    from mspa_features.generation.structured import bound_strings, conforms, letter_schema

    rec4 = bound_strings(letter_schema(RECOMMEND.answer_schema, 4), 24)
    rec2 = bound_strings(letter_schema(RECOMMEND.answer_schema, 2), 24)
    convs, schemas = [MULTI, SINGLE, TEXT_ONLY], [rec4, None, rec2]
    for cfg in (
        GenerationConfig(max_new_tokens=96),
        GenerationConfig(max_new_tokens=96, temperature=1.0, seed=2),
    ):
        gens = backend.generate(convs, cfg, schema=schemas)
        assert [g.constrained for g in gens] == [True, False, True]
        for g, s in zip(gens, schemas, strict=True):
            if s is not None:
                assert g.finish_reason == "stop" and conforms(g.text, s), g.text
        assert not conforms(gens[1].text, rec4)  # the free row stays noise


@pytest.mark.slow
def test_sampled_copies_differ_and_ignore_batching(backend: QwenVLBackend) -> None:
    # Each conversation samples with its own seed (sequence_seed(seed, i)): four copies of one
    # question are four draws, and regrouping them into batches of 1 changes nothing.
    cfg = GenerationConfig(max_new_tokens=6, temperature=1.0, seed=11)
    copies = [SINGLE] * 4
    by_two = backend.generate(copies, cfg)  # batch_size=2: two forward batches
    assert len({g.text for g in by_two}) >= 3
    original = backend.config
    backend.config = original.model_copy(update={"batch_size": 1})
    try:
        by_one = backend.generate(copies, cfg)
    finally:
        backend.config = original
    assert [g.text for g in by_one] == [g.text for g in by_two]
