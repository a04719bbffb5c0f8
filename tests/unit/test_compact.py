"""Compact embeddings: the codec, the reducer and the Pareto maths, on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from mspa_features.errors import InvalidValueError, UnknownNameError
from mspa_features.evaluation.compact import (
    at_scale,
    compact_set_name,
    cosine_preservation,
    decode_codes,
    fit_reducer,
    human_bytes,
    pareto_front,
    supports_truncation,
)
from mspa_features.serving.compact import (
    _cosine_udf,
    _decode_udf,
    dequantize_int8,
    float16_error_bound,
    int8_error_bound,
    pack,
    quantize_int8,
    unpack,
    value_bytes,
)


def _unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_int8_round_trip_within_half_a_step() -> None:
    x = _unit_rows(200, 48)
    q, scale = quantize_int8(x)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert np.abs(q).max() == 127  # the largest component of each row uses the full range
    err = np.abs(dequantize_int8(q, scale) - x)
    bound = int8_error_bound(scale)[:, None]
    assert np.all(err <= bound * (1 + 1e-6) + 1e-7)
    # a step is max|x|/127: no error may exceed half of it, and some come close
    assert err.max() > 0.5 * bound.max()


def test_int8_known_vector() -> None:
    q, scale = quantize_int8(np.array([[0.5, -1.0, 0.25, 0.0]]))
    assert scale[0] == np.float32(1.0 / 127)
    assert q.tolist() == [[64, -127, 32, 0]]  # 63.5 rounds half to even: 64; 31.75 -> 32


def test_int8_zero_vector_is_zero() -> None:
    q, scale = quantize_int8(np.zeros((1, 5)))
    assert scale[0] == 0 and not q.any()
    assert not dequantize_int8(q, scale).any()


def test_pack_unpack_and_sizes() -> None:
    x = _unit_rows(10, 32)
    for dtype in ("int8", "float16"):
        blobs = pack(x, dtype)
        assert all(len(b) == value_bytes(32, dtype) for b in blobs)
        back = np.stack([unpack(b) for b in blobs])
        assert back.shape == x.shape
        if dtype == "float16":
            assert np.all(np.abs(back - x) <= float16_error_bound(x))
            assert np.array_equal(back, x.astype(np.float16).astype(np.float32))
        else:
            q, scale = quantize_int8(x)
            assert np.array_equal(back, dequantize_int8(q, scale))
    assert value_bytes(128, "int8") == 133 and value_bytes(128, "float16") == 257
    with pytest.raises(UnknownNameError):
        pack(x, "int4")
    with pytest.raises(InvalidValueError):
        unpack(b"\x07abc")


def test_decode_udf_matches_unpack_and_keeps_missing() -> None:
    x = _unit_rows(3, 16)
    codes = pack(x, "int8")
    got = _decode_udf({"pref_emb_code": [codes[0], None, float("nan"), codes[2]]})
    assert set(got) == {"pref_emb"}
    assert got["pref_emb"][1] is None and got["pref_emb"][2] is None
    assert np.allclose(got["pref_emb"][0], unpack(codes[0]))
    assert np.allclose(got["pref_emb"][3], unpack(codes[2]))
    a, b = pack(x[:2], "float16")
    cos = _cosine_udf({"pref_emb_code": [a, a, None], "author_emb_code": [a, b, b]})
    va, vb = unpack(a).astype(np.float64), unpack(b).astype(np.float64)
    assert cos["pref_author_cosine"][0] == pytest.approx(1.0)
    expected = va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb))
    assert cos["pref_author_cosine"][1] == pytest.approx(expected)
    assert cos["pref_author_cosine"][2] is None
    # Feast infers output types by feeding b"hello world": a float list and a float come back
    unknown = _decode_udf({"author_emb_code": [b"hello world"]})["author_emb"][0]
    assert len(unknown) == 1 and np.isnan(unknown[0])
    odd = _cosine_udf({"pref_emb_code": [b"hello world"], "author_emb_code": [a]})
    assert np.isnan(odd["pref_author_cosine"][0])


def test_pca_reconstructs_a_rank_k_matrix_exactly() -> None:
    rng = np.random.default_rng(1)
    k, d = 6, 40
    basis = np.linalg.qr(rng.normal(size=(d, k)))[0].T  # (k, d) orthonormal
    x = rng.normal(size=(300, k)) @ basis + rng.normal(size=d)  # rank k around a mean
    r = fit_reducer(x, "pca", k)
    assert r.components.shape == (k, d)
    assert r.explained_variance_ratio == pytest.approx(1.0)
    assert np.allclose(r.inverse_transform(r.transform(x)), x, atol=1e-4)
    assert np.allclose(r.components @ r.components.T, np.eye(k), atol=1e-8)
    # fewer components lose exactly the variance of the dropped ones
    r2 = fit_reducer(x, "pca", k - 2)
    assert r2.explained_variance_ratio < 1.0


def test_truncation_keeps_first_dims_renormalised() -> None:
    x = np.array([[3.0, 4.0, 12.0], [0.0, 2.0, 1.0]])
    r = fit_reducer(x, "truncate", 2)
    assert np.allclose(r.transform(x), [[0.6, 0.8], [0.0, 1.0]])
    assert supports_truncation("x|nomic-embed-text-v1.5:mean")
    assert not supports_truncation("template-v2|all-minilm-l6-v2:mean:17a7de5304b5")


def test_reducer_rejects_bad_inputs() -> None:
    x = _unit_rows(5, 8)
    with pytest.raises(InvalidValueError):
        fit_reducer(x, "pca", 6)  # more components than rows
    with pytest.raises(UnknownNameError):
        fit_reducer(x, "svd", 2)
    with pytest.raises(InvalidValueError):
        fit_reducer(x, "pca", 2).transform(_unit_rows(2, 9))


def test_cosine_preservation_is_perfect_without_loss() -> None:
    rng = np.random.default_rng(2)
    basis = np.linalg.qr(rng.normal(size=(24, 4)))[0].T
    users = rng.normal(size=(100, 4)) @ basis
    authors = rng.normal(size=(100, 4)) @ basis
    r = fit_reducer(np.concatenate([users, authors]), "pca", 4)
    kept = cosine_preservation(r, "float16", users, authors)
    assert kept["recon_cosine_mean"] == pytest.approx(1.0, abs=1e-3)
    assert kept["recon_cosine_min"] > 0.99
    lossy = cosine_preservation(
        fit_reducer(np.concatenate([users, authors]), "pca", 1), "int8", users, authors
    )
    assert lossy["recon_cosine_mean"] < kept["recon_cosine_mean"]
    assert decode_codes(np.array([[0.5, -1.0]]), "int8").shape == (1, 2)


def test_pareto_front_and_scale() -> None:
    # (bytes, AUC lost): (10, 0.02) and (100, 0.0) are optimal; (50, 0.03) is dominated by
    # (10, 0.02); (100, 0.01) by (100, 0.0)
    flags = pareto_front([10, 50, 100, 100], [0.02, 0.03, 0.0, 0.01])
    assert flags == [True, False, True, False]
    assert at_scale(1543) == 1543 * 400_000_000
    assert human_bytes(at_scale(1543)) == "617.2 GB"
    assert human_bytes(37) == "37 B"
    assert compact_set_name("template", "pca", 32, "int8") == "template_pca32_int8"
    assert compact_set_name("template", "truncate", 64, "float16") == "template_trunc64_float16"


def _report_row(name: str, method: str, dims: int, dtype: str, **redis: object) -> dict:
    return {
        "variant": "preference",
        "set": name,
        "method": method,
        "dims": dims,
        "dtype": dtype,
        "bytes_per_user": 1543 if method == "full" else value_bytes(dims, dtype) + 2,
        "bytes_per_author": 1543 if method == "full" else value_bytes(dims, dtype) + 2,
        "read_p50_ms": 0.5,
        "auc": 0.7,
        "delta_auc_vs_full": 0.0,
        "ci_low": None if method == "full" else -0.01,
        "ci_high": None if method == "full" else 0.01,
        "users_at_scale": "x",
        **redis,
    }


def test_pareto_table_shows_the_redis_store_bytes_only_for_a_redis_run() -> None:
    from rich.console import Console

    from mspa_features.cli.compact import pareto_table, summary_lines

    rows = [
        _report_row(
            "template",
            "full",
            384,
            "float32",
            store_bytes_per_user=2231.0,
            store_bytes_per_author=2180.0,
            store_encoding="hashtable",
            shared_key_bytes_per_user=9876.0,
            users_at_scale_store="892.4 GB",
        ),
        _report_row(
            "template_pca32_int8",
            "pca",
            32,
            "int8",
            store_bytes_per_user=231.0,
            store_bytes_per_author=180.0,
            store_encoding="listpack",
            shared_key_bytes_per_user=9876.0,
            users_at_scale_store="92.4 GB",
        ),
    ]
    doc = {
        "feature_set": "template",
        "split_at": "1998-03-01T00:00:00+00:00",
        "n_test": 10,
        "seeds": [0],
        "online_store": "redis",
        "rows": rows,
        "fit_rows": {"preferences": 1},
        "fit_max_event_timestamp": "t",
        "baseline_auc": 0.7,
        "json_path": "r.json",
        "plots": {},
        "ablation_results": "a",
        "ablation_parent_run_id": "p",
        "seconds": {},
    }

    def text(d: dict) -> str:
        console = Console(width=300, record=True)
        console.print(pareto_table(d))
        return console.export_text()

    redis = text(doc)
    assert "Redis B/user" in redis and "400M in Redis" in redis
    assert "231 listpack" in redis and "2231 hashtable" in redis and "92.4 GB" in redis
    assert any("9876 B/user" in line for line in summary_lines(doc))
    sqlite = text({**doc, "online_store": "sqlite"})
    assert "Redis" not in sqlite and "listpack" not in sqlite
    assert not any("Redis" in line for line in summary_lines({**doc, "online_store": "sqlite"}))


def test_compact_refuses_milvus_before_reading_the_config(tmp_path) -> None:
    from typer.testing import CliRunner

    from mspa_features.cli import app

    got = CliRunner().invoke(app, ["compact", str(tmp_path / "missing.yaml"), "--online", "milvus"])
    assert got.exit_code == 2
    assert "sqlite or redis" in got.output
