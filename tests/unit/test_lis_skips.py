"""run_lis goes on without a variant it has nothing to build for (issue 14 item 9)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mspa_features.config import DataConfig, RunConfig
from mspa_features.errors import LeakBuildError


def test_an_aligned_set_with_too_few_warm_authors_is_a_note_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ranker_hooks.ablation import config as ablation_config
    from ranker_hooks.ablation import run as ablation
    from ranker_hooks.aligned_id import build as aligned_id
    from ranker_hooks.aligned_id import feast_defs as aligned_defs
    from ranker_hooks.lis import feast_defs as leak_defs
    from ranker_hooks.lis.ablation import run_lis
    from ranker_hooks.lis.leaks import build

    run_cfg = RunConfig(name="toy", workspace=tmp_path / "ws", data=DataConfig(source="movielens"))
    cfg = SimpleNamespace(
        split=SimpleNamespace(split_at="2024-02-01T00:00:00Z", train_start=None),
        seeds=[0],
        feature_set="template",
        repo_path=tmp_path,
    )
    too_few = LeakBuildError("fit_id_adapter", "3 warm ids (in both tables); need >= 4")

    def no_aligned_set(*_a, **_k):
        raise too_few

    def must_not_register(*_a, **_k):
        raise AssertionError("a set that was not built is registered")

    ran: dict[str, list[str]] = {}

    def fake_ablation(_run_cfg, _cfg, *, extra_variants, **_k):
        ran["variants"] = [v.name for v in extra_variants]
        (tmp_path / "r").mkdir()
        return SimpleNamespace(
            variants=[], notes=[], parent_run_id=None, results_path=tmp_path / "r" / "x.json"
        )

    class Store:  # every service is registered, aligned__template too (an earlier run's)
        def get_feature_service(self, name: str) -> str:
            return name

    built = SimpleNamespace(notes=["future_id_n7: no interaction in the window"])
    monkeypatch.setattr(build, "build_leak_sets", lambda *a, **k: built)
    monkeypatch.setattr(leak_defs, "register_leaks", lambda *a, **k: None)
    monkeypatch.setattr(aligned_id, "build_aligned_set", no_aligned_set)
    monkeypatch.setattr(aligned_defs, "register_aligned", must_not_register)
    monkeypatch.setattr(ablation, "run_ablation", fake_ablation)
    monkeypatch.setattr(ablation_config, "make_ranker", lambda *a, **k: None)

    out = run_lis(run_cfg, cfg, horizons=(7,), kinds=("future_id",), store=Store())
    assert ran["variants"] == ["lis_future_id_n7"]  # no aligned_id: not built in this run
    assert out.notes == [
        "future_id_n7: no interaction in the window",
        f"variant aligned_id skipped: {too_few}",
    ]
    assert "need >= 4" in out.notes[1]
