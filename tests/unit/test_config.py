"""Config: validated at load; errors name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mspa_features.config import load_config
from mspa_features.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["movielens.yaml", "synthetic.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.u2a.num_candidates == [4, 10]


def test_whole_data_config_is_the_main_job_without_the_llm_sample():
    # configs/movielens_full_llm.yaml: the README's measured whole-data comparison
    main = load_config(REPO / "configs" / "movielens.yaml")
    full = load_config(REPO / "configs" / "movielens_full_llm.yaml")
    assert main.features.sample is not None and full.features.sample is None
    assert full.features.feature_sets == ["template", "llm"]
    assert full.ablation.compare == ["template", "llm"]
    # llama.cpp on every core (the main job keeps one thread for a shared machine)
    assert main.composer.backend.threads == 1 and full.composer.backend.threads is None
    same = {"features": {"sample"}, "composer": {"backend": {"threads"}}}  # the rest: the same
    for section in type(full).model_fields:
        drop: Any = same.get(section, set())
        a, b = getattr(main, section), getattr(full, section)
        if hasattr(a, "model_dump"):
            a, b = a.model_dump(exclude=drop), b.model_dump(exclude=drop)
        assert a == b, section


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_field_is_rejected_with_its_path(tmp_path):
    p = _write(tmp_path, "name: x\ndata: {source: movielens, positve_threshold: 4}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(p) in str(e.value) and "data.positve_threshold" in str(e.value)


def test_bad_values_are_all_reported(tmp_path):
    p = _write(tmp_path, "name: x\ndata: {source: csv}\nu2a: {split: [0.5, 0.5, 0.5]}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "data.source" in msg and "u2a" in msg and "sum to 1" in msg


def test_synthetic_settings_only_with_synthetic_source(tmp_path):
    p = _write(tmp_path, "name: x\ndata: {source: movielens, synthetic: {n_users: 5}}\n")
    with pytest.raises(ConfigError, match="synthetic"):
        load_config(p)
    cfg = load_config(_write(tmp_path, "name: x\ndata: {source: synthetic}\n"))
    assert cfg.data.synthetic is not None


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [unclosed"))


def test_ablation_stage_config_resolves_against_the_run_config(tmp_path):
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "x.yaml").write_text("name: x\n")
    cfg = load_config(
        _write(
            tmp_path,
            "name: x\ndata: {source: movielens}\nablation: {enabled: true, config: ab/x.yaml}\n",
        )
    )
    assert cfg.ablation.config == tmp_path / "ab" / "x.yaml"
    from mspa_features.cli.main_job import check_stage_inputs

    # Other commands load the config without the ablation file; the main job refuses to start.
    missing = load_config(
        _write(
            tmp_path,
            "name: x\ndata: {source: movielens}\nablation: {enabled: true, config: nope.yaml}\n",
        )
    )
    with pytest.raises(ConfigError, match="ablation.config: file not found"):
        check_stage_inputs(missing)
    with pytest.raises(ConfigError, match="needs features.enabled"):
        load_config(
            _write(
                tmp_path,
                "name: x\ndata: {source: movielens}\nfeatures: {enabled: false}\n"
                "ablation: {enabled: true, config: ab/x.yaml}\n",
            )
        )
    assert (
        load_config(_write(tmp_path, "name: x\ndata: {source: movielens}\n")).ablation.enabled
        is False
    )


def test_misspelt_keys_say_did_you_mean_at_every_level(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "name: movielens\nworkspace: ws\ndata:\n  source: movielens\n  positiv_threshold: 4\n"
        "featurs:\n  cadence: weekly\neval:\n  cohort_user: 3\nzzzzzz: 1\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    problems = e.value.problems
    assert "data.positiv_threshold: Extra inputs are not permitted (did you mean " \
        "'positive_threshold'?)" in problems
    assert "featurs: Extra inputs are not permitted (did you mean 'features'?)" in problems
    assert "eval.cohort_user: Extra inputs are not permitted (did you mean 'cohort_users'?)" \
        in problems
    # nothing close: no guess
    assert "zzzzzz: Extra inputs are not permitted" in problems


def test_misspelt_keys_in_ablation_and_align_configs(tmp_path):
    from mspa_features.align.config import load_align_config
    from ranker_hooks.ablation.run import load_ablation_config

    ab = tmp_path / "ab.yaml"
    ab.write_text("name: x\nsplit:\n  split_at: 1998-03-01\nseedz: [0]\n")
    with pytest.raises(ConfigError, match=r"seedz: .*\(did you mean 'seeds'\?\)"):
        load_ablation_config(ab)
    al = tmp_path / "al.yaml"
    al.write_text("grpo:\n  num_generation: 4\n")
    with pytest.raises(ConfigError, match=r"grpo.num_generation: .*did you mean 'num_generations'"):
        load_align_config(al)
