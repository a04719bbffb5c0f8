"""Ablation config: validated at load, errors naming the file and field; variants checked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mspa_features.errors import ConfigError
from ranker_hooks.ablation.run import load_ablation_config, make_ranker, ranker_class
from ranker_hooks.ablation.variants import Variant
from ranker_hooks.rankers.torch_ranker import TorchRanker

REPO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ablation" / "movielens.yaml"

GOOD = """
name: test
run_config: ../run.yaml
split: {split_at: 1998-03-01, eval_days: 30}
seeds: [1, 2]
ranker: {type: torch, params: {epochs: 2, hidden: [8]}}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "ab" / "a.yaml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return p


def test_good_config_loads_resolves_run_config_and_builds_the_ranker(tmp_path) -> None:
    cfg = load_ablation_config(write(tmp_path, GOOD))
    assert cfg.run_config == (tmp_path / "run.yaml").resolve()
    assert cfg.split.split_at == datetime(1998, 3, 1, tzinfo=UTC)
    assert cfg.split.eval_end == datetime(1998, 3, 31, tzinfo=UTC)
    assert cfg.variants[0] == "baseline" and "text_tokens" in cfg.variants
    r = make_ranker(cfg, seed=2)
    assert isinstance(r, TorchRanker)
    assert (r.config.seed, r.config.epochs, r.config.hidden, r.config.threads) == (2, 2, (8,), 1)


def test_repo_config_is_valid() -> None:
    cfg = load_ablation_config(REPO_CONFIG)
    assert cfg.run_config.name == "movielens.yaml" and cfg.run_config.is_file()


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (GOOD + "variantz: [baseline]\n", "variantz", "Extra inputs are not permitted"),
        (
            GOOD + "variants: [baseline, bogus]\n",
            "variants",
            "unknown variant 'bogus'; valid: baseline",
        ),
        (GOOD.replace("eval_days: 30", "eval_days: -1"), "split.eval_days", "greater than 0"),
        (GOOD.replace("seeds: [1, 2]", "seeds: []"), "seeds", "at least 1"),
        (GOOD.replace("split: {split_at: 1998-03-01, eval_days: 30}", ""), "split", "required"),
        (GOOD.replace("epochs: 2", "epochs: 0"), "ranker", "must be >= 1"),
        (GOOD.replace("epochs: 2", "epoch: 2"), "ranker", "epoch"),
        (GOOD.replace("type: torch", "type: keras"), "ranker", "unknown ranker type 'keras'"),
    ],
)
def test_bad_fields_are_named(tmp_path, text: str, field: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_ablation_config(path)
    assert str(path) in str(e.value)
    assert f"{field}:" in str(e.value)
    assert message in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_ablation_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_ablation_config(write(tmp_path, "a: [1"))


def test_ranker_class_accepts_dotted_paths_and_refuses_non_rankers() -> None:
    assert ranker_class("ranker_hooks.rankers.torch_ranker:TorchRanker") is TorchRanker
    with pytest.raises(TypeError, match="'pathlib:Path' must be a Ranker subclass"):
        ranker_class("pathlib:Path")


def test_variant_kind_and_leaked_must_agree() -> None:
    Variant(name="lis_x", kind="lis", service="s", leaked=True)
    with pytest.raises(ValueError, match="leaked features are for kind 'lis' only"):
        Variant(name="x", kind="ais", service="s", leaked=True)
    with pytest.raises(ValueError, match="every lis variant is leaked"):
        Variant(name="x", kind="lis", service="s")
    with pytest.raises(ValueError, match="kind 'other'"):
        Variant(name="x", kind="other", service="s")  # type: ignore[arg-type]
