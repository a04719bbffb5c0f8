"""Multi-task ranking: the multi-head torch ranker, the ``tasks:`` config, per-task metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mspa_features.errors import ConfigError, RankerInputError
from mspa_features.evaluation import metrics
from ranker_hooks.ablation.results import TASK_METRICS, AblationResult, VariantResult
from ranker_hooks.rankers.base import RankerData
from ranker_hooks.rankers.torch_ranker import TorchRanker


def _toy(n: int = 1200, seed: int = 0) -> RankerData:
    """Two tasks that disagree: click follows dense[0] > 0, gift follows dense[1] > 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    labels = np.stack([(x[:, 0] > 0), (x[:, 1] > 0)], axis=1).astype(np.int8)  # (n, 2)
    return RankerData(
        user_ids=np.array([f"u{i % 40}" for i in range(n)], dtype=object),
        author_ids=np.array([f"a{i % 13}" for i in range(n)], dtype=object),
        dense=x,
        dense_names=["x0", "x1"],
        labels=labels,
    )


def test_each_head_learns_its_own_label() -> None:
    train, test = _toy(seed=0), _toy(n=600, seed=1)
    r = TorchRanker(epochs=4, batch_size=64, seed=0)
    r.fit(train)
    p = r.predict(test)
    assert p.shape == (len(test), 2) and np.all((p >= 0) & (p <= 1))
    own = [metrics.auc(test.labels[:, j], p[:, j]) for j in range(2)]
    crossed = [metrics.auc(test.labels[:, 1 - j], p[:, j]) for j in range(2)]
    assert min(own) > 0.9, own
    assert max(abs(c - 0.5) for c in crossed) < 0.1, crossed  # a head ignores the other task


def test_multi_task_save_load_and_single_task_unchanged(tmp_path: Path) -> None:
    data = _toy(n=300)
    r = TorchRanker(epochs=1, batch_size=64, task_weights=(1.0, 2.0))
    r.fit(data)
    r.save(tmp_path)
    assert np.array_equal(TorchRanker.load(tmp_path).predict(data), r.predict(data))
    single = RankerData(**{**data.__dict__, "labels": data.labels[:, 0]})
    s = TorchRanker(epochs=1, batch_size=64)
    s.fit(single)
    assert s.predict(single).shape == (300,) and s.n_tasks is None


def test_label_shape_and_weights_are_checked() -> None:
    data = _toy(n=100)
    with pytest.raises(Exception, match="one weight per task"):
        TorchRanker(epochs=1, task_weights=(1.0, 1.0, 1.0)).fit(data)
    r = TorchRanker(epochs=1)
    r.fit(data)
    one = RankerData(**{**data.__dict__, "labels": data.labels[:, 0]})
    with pytest.raises(RankerInputError, match="1|2 task"):
        r.fit(one, warm_start=True)


def test_tfra_refuses_several_tasks() -> None:
    from ranker_hooks.rankers.tfra_ranker import TfraRankerConfig

    # pydantic wraps the IncompatibleSettingsError raised in model_post_init (a ValueError)
    with pytest.raises(ValueError, match="the TFRA ranker learns a single task"):
        TfraRankerConfig(task_weights=(1.0, 1.0))
    assert TfraRankerConfig(task_weights=(1.0,)).task_weights == (1.0,)


def _write(tmp_path: Path, tasks: str, ranker: str = "torch") -> Path:
    p = tmp_path / "ablation.yaml"
    p.write_text(
        "split: {split_at: 2026-01-22T00:00:00Z, eval_days: 9}\n"
        f"ranker: {{type: {ranker}}}\n" + tasks,
        encoding="utf-8",
    )
    return p


@pytest.mark.parametrize(
    ("tasks", "needle"),
    [
        ("tasks: [{name: Click, positive: [click]}]\n", "tasks"),
        ("tasks: [{name: click, positive: []}]\n", "positive"),
        ("tasks: [{name: click, positive: [click, click]}]\n", "distinct"),
        ("tasks: [{name: a, positive: [x]}, {name: a, positive: [y]}]\n", "distinct task names"),
        ("tasks: [{name: a, positive: [x], weight: 0}]\n", "weight"),
        ("tasks: [{name: a, positives: [x]}]\n", "positives"),
    ],
)
def test_task_config_errors_name_the_field(tmp_path: Path, tasks: str, needle: str) -> None:
    from ranker_hooks.ablation.config import load_ablation_config

    with pytest.raises(ConfigError, match=needle):
        load_ablation_config(_write(tmp_path, tasks))


def test_task_config_loads_and_tfra_refuses_at_load(tmp_path: Path) -> None:
    from ranker_hooks.ablation.config import load_ablation_config

    two = "tasks: [{name: click, positive: [click, tip]}, {name: gift, positive: [tip]}]\n"
    cfg = load_ablation_config(_write(tmp_path, two))
    assert [t.name for t in cfg.tasks] == ["click", "gift"] and cfg.task_weights() == (1.0, 1.0)
    assert load_ablation_config(_write(tmp_path, "")).tasks == []  # the single-task default
    with pytest.raises(ConfigError, match="single task"):
        load_ablation_config(_write(tmp_path, two, ranker="tfra"))


def test_per_user_bootstrap_matches_uauc_and_gauc() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    users = rng.integers(0, 60, n)
    y = (rng.random(n) < 0.4).astype(np.int8)
    a, b = rng.random(n), rng.random(n) + 0.3 * y
    for name, fn in (("uauc", metrics.uauc), ("gauc", metrics.gauc)):
        r = metrics.paired_bootstrap_per_user(y, a, b, users, metric=name, n_boot=200)
        assert r.delta == pytest.approx(fn(y, b, users) - fn(y, a, users), abs=1e-12)
        assert r.ci_low < r.delta < r.ci_high and r.ci_low > 0 and r.p_value < 0.05


def _result() -> AblationResult:
    def row(name: str, kind: str, d: float) -> VariantResult:
        tasks = {
            t: {k: (0.7 + d if "delta" not in k else d) for k in TASK_METRICS}
            for t in ("click", "gift")
        }
        return VariantResult(
            name=name, kind=kind, leaked=False, auc=0.7, uauc=0.6, gauc=0.6, logloss=0.5,
            wpauc=0.1, delta_auc=d, delta_auc_ci_low=d - 0.01, delta_auc_ci_high=d + 0.01,
            p_value=0.5, n_train=10, n_test=5, tasks=tasks,
        )  # fmt: skip

    return AblationResult(
        run_name="mt",
        variants=[row("baseline", "baseline", 0.0), row("preference_and_author", "ais", 0.02)],
        results_path=Path("results.json"),
        parent_run_id=None,
        tracking_uri="",
        window={"split_at": "2026-01-22", "eval_end": "2026-01-31"},
        seeds=[0],
    )


def test_task_rows_and_tables_fit_80_columns() -> None:
    from rich.console import Console

    from ranker_hooks.ablation.report import task_frame, task_tables

    frame = task_frame(_result())
    assert list(frame["task"]) == ["click", "click", "gift", "gift"]
    assert set(TASK_METRICS) <= set(frame.columns)
    console = Console(width=80, record=True, force_terminal=False)
    tables = task_tables(_result())
    assert len(tables) == 2
    for t in tables:
        console.print(t)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "task click" in text and "task gift" in text and "+0.0200" in text
    assert "…" not in text  # no number cut


def test_single_task_result_has_no_task_rows() -> None:
    from ranker_hooks.ablation.report import task_frame, task_tables

    r = _result()
    for v in r.variants:
        v.tasks = {}
    assert len(task_frame(r)) == 0 and task_tables(r) == []
