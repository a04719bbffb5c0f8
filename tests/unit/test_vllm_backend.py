"""The vLLM backend: message conversion (pure), the missing-extra / no-GPU errors, the option
plumbing against a stand-in ``vllm`` module, and a real run on a GPU (skipped without one)."""

from __future__ import annotations

import base64
import io
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mspa_features.compose.prompts import RECOMMEND
from mspa_features.errors import ConfigError, MissingExtraError, MspaError, SchemaConstraintError
from mspa_features.generation.base import (
    BackendConfig,
    ChatMessage,
    GenerationConfig,
    sequence_seed,
)
from mspa_features.generation.structured import bound_strings, letter_schema
from mspa_features.generation.vllm_backend import (
    VLLMBackend,
    image_mime_type,
    sampling_kwargs,
    to_vllm_messages,
)


def _image(w: int, h: int, color: str, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, fmt)
    return buf.getvalue()


PNG_A, JPEG_B, PNG_C = _image(8, 8, "red"), _image(9, 9, "blue", "JPEG"), _image(7, 5, "green")
CONV = [
    ChatMessage("system", "You rate movies."),
    ChatMessage("user", "Frames:", images=(PNG_A, JPEG_B)),
    ChatMessage("assistant", "Noted."),
    ChatMessage("user", "And this one?", images=(PNG_C,)),
]


def _decode(url: str) -> tuple[str, bytes]:
    head, payload = url.split(",", 1)
    assert head.startswith("data:") and head.endswith(";base64")
    return head[len("data:") : -len(";base64")], base64.b64decode(payload)


# ----------------------------------------------------------------------------- conversion


def test_to_vllm_messages_images_become_data_urls_in_order_text_kept() -> None:
    msgs = to_vllm_messages(CONV)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"] == "You rate movies."
    assert msgs[2]["content"] == "Noted."

    first = msgs[1]["content"]
    assert [p["type"] for p in first] == ["image_url", "image_url", "text"]
    assert first[2] == {"type": "text", "text": "Frames:"}
    assert _decode(first[0]["image_url"]["url"]) == ("image/png", PNG_A)
    assert _decode(first[1]["image_url"]["url"]) == ("image/jpeg", JPEG_B)

    second = msgs[3]["content"]
    assert [p["type"] for p in second] == ["image_url", "text"]
    assert _decode(second[0]["image_url"]["url"]) == ("image/png", PNG_C)
    assert second[1] == {"type": "text", "text": "And this one?"}


def test_unrecognised_image_bytes_name_the_image_index() -> None:
    conv = [ChatMessage("user", "x", images=(PNG_A,)), ChatMessage("user", "y", images=(b"zz",))]
    with pytest.raises(ValueError, match=r"image 1 \(message 1\): unrecognised image format"):
        to_vllm_messages(conv)
    with pytest.raises(ValueError, match="<empty>"):
        image_mime_type(b"")


# ----------------------------------------------------------------------------- errors


def test_missing_vllm_names_the_gpu_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, installed or not
    with pytest.raises(MissingExtraError, match=r"mspa-features\[gpu\]") as info:
        VLLMBackend(BackendConfig(type="vllm", model="some/model"))
    assert info.value.extra == "gpu"


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown option.*gpu_mem"):
        VLLMBackend(BackendConfig(type="vllm", model="m", options={"gpu_mem": 0.5}))


# ----------------------------------------------------------------------------- stand-in vllm


@dataclass
class _Completion:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class _RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[_Completion]


class _FakeLLM:
    """Records the engine kwargs and each ``chat`` call; answers with canned outputs."""

    def __init__(self, model: str, **kwargs: Any):
        self.model = model
        self.kwargs = kwargs
        self.calls: list[tuple[Any, Any, dict[str, Any]]] = []

    def chat(self, messages: Any, sampling_params: Any, **kwargs: Any) -> list[_RequestOutput]:
        self.calls.append((messages, sampling_params, kwargs))
        reasons = ["stop", "length"]
        return [
            _RequestOutput(list(range(10 + i)), [_Completion(f"out{i}", [1, 2, 3], reasons[i % 2])])
            for i in range(len(messages))
        ]


@dataclass
class _StructuredOutputsParams:
    """vLLM's field names (0.22-0.31): one constraint of json / regex / choice / grammar."""

    json: Any = None
    regex: str | None = None
    choice: list[str] | None = None
    grammar: str | None = None


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in ``vllm`` module and a CUDA-visible torch: tests the plumbing, not vLLM."""
    import torch

    mod = types.ModuleType("vllm")
    mod.LLM = _FakeLLM  # type: ignore[attr-defined]
    mod.SamplingParams = lambda **kw: dict(kw)  # type: ignore[attr-defined]
    sp = types.ModuleType("vllm.sampling_params")
    sp.StructuredOutputsParams = _StructuredOutputsParams  # type: ignore[attr-defined]
    mod.sampling_params = sp  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sp)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return mod


def test_no_cuda_is_a_clear_error(
    fake_vllm: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MspaError, match="vllm backend needs a CUDA GPU"):
        VLLMBackend(BackendConfig(type="vllm", model="some/model"))


def test_options_reach_the_engine_and_sampling(fake_vllm: types.ModuleType) -> None:
    be = VLLMBackend(
        BackendConfig(
            type="vllm",
            model="Qwen/Qwen2.5-VL-7B-Instruct",
            options={
                "tensor_parallel_size": 2,
                "gpu_memory_utilization": 0.5,
                "dtype": "bfloat16",
                "limit_mm_per_prompt": 3,
                "max_model_len": 8192,
            },
        )
    )
    assert be.llm.model == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert be.llm.kwargs == {
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.5,
        "dtype": "bfloat16",
        "limit_mm_per_prompt": {"image": 3},
        "max_model_len": 8192,
    }
    assert be.model_version == "vllm:Qwen/Qwen2.5-VL-7B-Instruct"

    cfg = GenerationConfig(max_new_tokens=7, temperature=0.7, top_p=0.9, seed=11, stop=("\n\n",))
    gens = be.generate([CONV, [ChatMessage("user", "text only")]], cfg)
    (messages, params, kwargs) = be.llm.calls[0]
    assert messages == [to_vllm_messages(CONV), [{"role": "user", "content": "text only"}]]
    # one SamplingParams per request, each with its own seed
    assert params == [
        {
            "max_tokens": 7,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": sequence_seed(11, i),
            "stop": ["\n\n"],
        }
        for i in range(2)
    ]
    assert kwargs["add_generation_prompt"] is True
    assert [g.text for g in gens] == ["out0", "out1"]
    assert [g.finish_reason for g in gens] == ["stop", "length"]
    assert [g.n_prompt_tokens for g in gens] == [10, 11]
    assert [g.n_generated_tokens for g in gens] == [3, 3]

    too_many = [ChatMessage("user", "x", images=(PNG_A,) * 4)]
    with pytest.raises(ValueError, match="conversation 0: 4 images but limit_mm_per_prompt"):
        be.generate([too_many], cfg)


def test_bad_limit_mm_per_prompt_is_a_config_error(fake_vllm: types.ModuleType) -> None:
    with pytest.raises(ConfigError, match="limit_mm_per_prompt"):
        VLLMBackend(BackendConfig(type="vllm", model="m", options={"limit_mm_per_prompt": -1}))


# ----------------------------------------------------------------------------- real GPU


@pytest.mark.gpu
@pytest.mark.slow
def test_vllm_generates_on_gpu(tmp_path: Path) -> None:
    """Real vLLM on a CUDA device. MSPA_VLLM_TEST_MODEL may name a small local VL model folder;
    otherwise a tiny RANDOM-WEIGHT Qwen2-VL is built (plumbing only, its text is noise), with
    head dims of 64 so vLLM's attention kernels accept it."""
    pytest.importorskip("vllm")
    model = os.environ.get("MSPA_VLLM_TEST_MODEL")
    if not model:
        from mspa_features.generation.vlm import build_tiny_qwen2vl

        model = str(
            build_tiny_qwen2vl(
                tmp_path / "tiny",
                hidden_size=128,
                num_attention_heads=2,
                vision_embed_dim=128,
                vision_num_heads=2,
            )
        )
    be = VLLMBackend(
        BackendConfig(
            type="vllm",
            model=model,
            options={
                "dtype": "bfloat16",
                "gpu_memory_utilization": 0.3,
                "limit_mm_per_prompt": 3,
                "max_model_len": 2048,
                "enforce_eager": True,
            },
        )
    )
    try:
        convs = [CONV, [ChatMessage("user", "Say hi.")]]
        cfg = GenerationConfig(max_new_tokens=6)
        first = be.generate(convs, cfg)
        assert len(first) == 2
        assert all(1 <= g.n_generated_tokens <= 6 and g.n_prompt_tokens > 0 for g in first)
        assert be.generate(convs, cfg) == first  # greedy is deterministic
        assert be.count_tokens("hello world") > 0
    finally:
        be.close()


# ----------------------------------------------------------------------------- params (no GPU)


def test_each_request_of_a_call_gets_its_own_seed() -> None:
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.7, seed=3)
    seeds = [sampling_kwargs(cfg, i)["seed"] for i in range(30)]
    assert len(set(seeds)) == 30  # the m copies of one question are independent draws
    assert seeds == [sequence_seed(3, i) for i in range(30)]
    other = [sampling_kwargs(GenerationConfig(seed=4), i)["seed"] for i in range(30)]
    assert not set(seeds) & set(other)


def test_sampling_kwargs_carry_the_checked_schema() -> None:
    schema = bound_strings(letter_schema(RECOMMEND.answer_schema, 4), 48)
    kw = sampling_kwargs(GenerationConfig(max_new_tokens=48), 0, schema)
    assert kw["structured_outputs"] == {"json": schema}
    assert kw["max_tokens"] == 48 and kw["temperature"] == 0.0 and kw["stop"] is None
    assert "structured_outputs" not in sampling_kwargs(GenerationConfig(), 0)
    bad = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(("}}}
    with pytest.raises(SchemaConstraintError, match="does not compile"):
        sampling_kwargs(GenerationConfig(), 0, bad)
    with pytest.raises(SchemaConstraintError, match="object"):
        sampling_kwargs(GenerationConfig(), 0, {"type": "string"})


def test_schema_reaches_each_request_as_structured_outputs(fake_vllm: types.ModuleType) -> None:
    be = VLLMBackend(BackendConfig(type="vllm", model="m"))
    four = letter_schema(RECOMMEND.answer_schema, 4)
    two = letter_schema(RECOMMEND.answer_schema, 2)
    convs = [[ChatMessage("user", f"q{i}")] for i in range(3)]
    gens = be.generate(convs, GenerationConfig(max_new_tokens=9), schema=[four, None, two])
    (_, params, _) = be.llm.calls[0]
    assert params[0]["structured_outputs"] == _StructuredOutputsParams(json=four)
    assert "structured_outputs" not in params[1]
    assert params[2]["structured_outputs"].json["properties"]["Answer"]["enum"] == ["A", "B"]
    assert [g.constrained for g in gens] == [True, False, True]
    be.generate(convs, GenerationConfig(max_new_tokens=9), schema=four)  # one for all
    (_, params, _) = be.llm.calls[1]
    assert all(p["structured_outputs"].json == four for p in params)
    with pytest.raises(SchemaConstraintError, match="2 schemas for 3"):
        be.generate(convs, GenerationConfig(), schema=[four, two])
