"""Text encoder: config validation (fast) and the real embedded MiniLM (slow, loaded once).

The reference for correct vectors is sentence-transformers loading the same folder: it reads the
model's own ``1_Pooling`` config (mean), so agreeing with it proves our pooling is right.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from mspa_features.compose.encoders import (
    EncoderConfig,
    FlagTextEncoder,
    TextEncoder,
    default_pooling,
    load_encoder,
)
from mspa_features.models import minilm_path

TEXTS = [
    "a singer performing live",
    "",
    "ok",
    (
        "I love watching late-night cooking streams where the host explains every step slowly, "
        "answers chat questions about substitutions, and never rushes the plating at the end."
    ),
    # long: well past the 256-token limit, so truncation must match too
    " ".join(["gameplay commentary with long strategy breakdowns and viewer polls"] * 60),
    "Je regarde des diffusions de musique classique le dimanche matin.",
    "我喜欢看户外钓鱼直播，主播很幽默。",
    "Мне нравятся стримы про шахматы и разбор партий гроссмейстеров.",
    "🎮🔥 speedrun night!!! 🏆🏆",
    "ASMR, whispering, rain sounds; 3 hours; no talking.",
]


# ---------------------------------------------------------------------------------------------
# Config (fast: nothing is loaded)
# ---------------------------------------------------------------------------------------------


def test_defaults_are_embedded_minilm_with_mean_pooling():
    cfg = EncoderConfig()
    assert cfg.model == "all-minilm-l6-v2"
    assert cfg.pooling == "mean"
    assert (cfg.batch_size, cfg.max_length, cfg.normalize) == (64, 256, True)
    assert (cfg.devices, cfg.use_fp16, cfg.query_instruction) == ("cpu", False, None)


@pytest.mark.parametrize(
    ("model", "pooling"),
    [("BAAI/bge-m3", "cls"), ("/models/bge-large-en-v1.5", "cls"), ("/models/e5-small", "mean")],
)
def test_unset_pooling_follows_the_model(model, pooling):
    assert EncoderConfig(model=model).pooling == pooling
    assert default_pooling(model) == pooling


@pytest.mark.parametrize(
    "model",
    ["all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", "EMBEDDED_FOLDER"],
)
def test_cls_pooling_is_rejected_for_minilm(model):
    if model == "EMBEDDED_FOLDER":
        model = str(minilm_path())  # the same weights given as a path
    with pytest.raises(ValidationError) as e:
        EncoderConfig(model=model, pooling="cls")
    msg = str(e.value)
    assert "pooling" in msg and "mean" in msg and "0.60" in msg


def test_explicit_mean_is_accepted_for_minilm_and_cls_for_bge():
    assert EncoderConfig(pooling="mean").pooling == "mean"
    assert EncoderConfig(model="BAAI/bge-m3", pooling="cls").pooling == "cls"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pooling": "max"}, "pooling"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_length": 0}, "max_length"),
        ({"model": ""}, "model"),
        ({"devices": "cuda:0,cuda:1"}, "devices"),
        ({"use_fp16": "sometimes"}, "use_fp16"),
        ({"batch_sise": 32}, "batch_sise"),  # typo: extra="forbid"
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValidationError) as e:
        EncoderConfig(**kwargs)
    errors = e.value.errors()
    assert [err["loc"] for err in errors] == [(field,)]
    assert field in str(e.value)


# ---------------------------------------------------------------------------------------------
# The real model (slow: loaded once per module)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def encoder() -> FlagTextEncoder:
    enc = load_encoder(EncoderConfig())
    assert isinstance(enc, FlagTextEncoder)
    return enc


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers' vectors for TEXTS: the known-correct all-MiniLM-L6-v2 output."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(minilm_path()), device="cpu")
    return np.asarray(st.encode(TEXTS, normalize_embeddings=True), dtype=np.float32)


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


@pytest.mark.slow
def test_matches_sentence_transformers(encoder, reference):
    ours = encoder.encode(TEXTS)
    distance = 1.0 - _cos_rows(ours, reference)
    assert distance.max() < 1e-4, dict(zip(TEXTS, distance.round(6), strict=True))


@pytest.mark.slow
def test_cls_pooling_would_be_wrong(reference):
    """FlagEmbedding's own default (cls) on this model: why mean is our default, and enforced."""
    from FlagEmbedding import FlagAutoModel

    bare = FlagAutoModel.from_finetuned(
        str(minilm_path()),
        model_class="encoder-only-base",
        pooling_method="cls",
        use_fp16=False,
        devices="cpu",
        normalize_embeddings=True,
        trust_remote_code=False,
        query_instruction_format="{}{}",
    )
    cls_vectors = np.asarray(bare.encode(TEXTS, max_length=256), dtype=np.float32)
    cos = _cos_rows(cls_vectors, reference)
    assert cos.min() < 0.95, cos
    assert cos.mean() < 0.95, cos
    with pytest.raises(ValidationError, match="pooling"):
        EncoderConfig(pooling="cls")


@pytest.mark.slow
def test_shape_dtype_norms_and_version(encoder):
    assert isinstance(encoder, TextEncoder)
    assert encoder.dim == 384
    name, pooling, fingerprint = encoder.model_version.split(":")
    assert (name, pooling, len(fingerprint)) == ("all-minilm-l6-v2", "mean", 12)
    v = encoder.encode(TEXTS)
    assert v.shape == (len(TEXTS), 384)
    assert v.dtype == np.float32 and v.flags["C_CONTIGUOUS"]
    assert np.all(np.isfinite(v))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_deterministic(encoder):
    np.testing.assert_array_equal(encoder.encode(TEXTS), encoder.encode(TEXTS))


@pytest.mark.slow
def test_batching_does_not_change_vectors():
    """Small batches (different padding per batch) give the same vectors as one big batch."""
    small = FlagTextEncoder(EncoderConfig(batch_size=3))
    big = FlagTextEncoder(EncoderConfig(batch_size=64))
    np.testing.assert_allclose(small.encode(TEXTS), big.encode(TEXTS), atol=1e-5)


@pytest.mark.slow
def test_empty_input(encoder):
    out = encoder.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32


@pytest.mark.slow
def test_empty_and_whitespace_strings(encoder):
    v = encoder.encode(["", "   ", "\n\t", "music"])
    assert v.shape == (4, 384) and np.all(np.isfinite(v))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # whitespace-only is encoded as "": identical vectors
    np.testing.assert_allclose(v[1], v[0], atol=1e-6)
    np.testing.assert_allclose(v[2], v[0], atol=1e-6)
    assert float(v[0] @ v[3]) < 0.99


@pytest.mark.slow
def test_order_preserved(encoder):
    a, b = TEXTS[0], TEXTS[3]  # different lengths: the length sort must be undone
    ab = encoder.encode([a, b])
    ba = encoder.encode([b, a])
    np.testing.assert_allclose(ab[0], ba[1], atol=1e-5)
    np.testing.assert_allclose(ab[1], ba[0], atol=1e-5)
    # and each row equals the text encoded alone
    np.testing.assert_allclose(ab[0], encoder.encode([a])[0], atol=1e-5)


@pytest.mark.slow
def test_semantic_sanity(encoder):
    q, near, far = encoder.encode(
        ["a singer performing live", "a vocalist on stage", "a recipe for pasta"]
    )
    assert float(q @ near) > float(q @ far) + 0.1


@pytest.mark.slow
def test_non_string_input_names_the_index(encoder):
    with pytest.raises(TypeError, match=r"texts\[2\] must be str, got NoneType"):
        encoder.encode(["a", "b", None])
    with pytest.raises(TypeError, match=r"texts\[0\] must be str, got int"):
        encoder.encode([3])
    with pytest.raises(TypeError, match="single str"):
        encoder.encode("not a list")


@pytest.mark.slow
def test_encode_leaves_torch_threads_alone(encoder):
    import torch

    before = torch.get_num_threads()
    encoder.encode(TEXTS[:3])
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_query_instruction_is_prepended_only_for_queries():
    enc = FlagTextEncoder(EncoderConfig(query_instruction="Represent this viewer: "))
    text = ["likes chess streams"]
    np.testing.assert_allclose(
        enc.encode_queries(text),
        enc.encode(["Represent this viewer: likes chess streams"]),
        atol=1e-6,
    )
    assert float(enc.encode_queries(text)[0] @ enc.encode(text)[0]) < 0.999


class _NoSpecialTokens:
    """A tokenizer wrapper that adds no [CLS]/[SEP]: "" then has no tokens at all."""

    def __init__(self, tok):
        self._tok = tok

    def __call__(self, texts, **kwargs):
        return self._tok(texts, add_special_tokens=False, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tok, name)


@pytest.mark.slow
def test_text_with_no_tokens_still_gets_a_unit_vector(encoder, monkeypatch):
    monkeypatch.setattr(encoder, "_tokenizer", _NoSpecialTokens(encoder._tokenizer))
    v = encoder.encode(["", "music"])
    assert np.all(np.isfinite(v))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
