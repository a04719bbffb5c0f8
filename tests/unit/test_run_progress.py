"""The main job's progress rows at 80 columns: whole names, a row per step from its start, the
comparison's fits on their own row."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
from rich.console import Console

from mspa_features.cli import main_job
from mspa_features.cli.run import NAME_WIDTH, RunProgress, progress_display
from mspa_features.compose.feature_rows import batch_progress
from ranker_hooks.ablation.run import _Ticker


def _recorder() -> tuple[list[tuple[str, int, int]], object]:
    calls: list[tuple[str, int, int]] = []
    return calls, lambda what, done, total: calls.append((what, done, total))


def test_batch_progress_reports_the_step_and_its_total_when_it_starts() -> None:
    calls, progress = _recorder()
    tick = batch_progress(progress, "users", 12)
    assert calls == [("users", 0, 12)]  # before the first (24 s) batch is back
    tick(8)
    tick(4)
    assert calls[1:] == [("users", 8, 12), ("users", 12, 12)]
    batch_progress(None, "users", 12)(3)  # no callback: nothing to report, no error


def test_ablation_ticker_reports_zero_fits_when_fitting_starts() -> None:
    calls, progress = _recorder()
    ticker = _Ticker(progress, total=33)
    assert calls == [("ablation", 0, 33)]
    ticker.tick()
    assert calls[-1] == ("ablation", 1, 33)


def test_comparison_fits_get_their_own_row_name() -> None:
    calls, progress = _recorder()
    main_job._comparison_steps(progress)("ablation", 3, 6)
    assert calls == [("comparison", 3, 6)]
    assert main_job._comparison_steps(None) is None


def test_backfill_steps_name_their_feature_set() -> None:
    calls, progress = _recorder()
    step = main_job._feature_set_steps(progress, "llm")
    step("preferences: compose + encode", 0, 1)
    step("author_profiles: snapshots in range", 2, 4)
    assert calls == [
        ("llm preferences - compose + encode", 0, 1),
        ("llm authors - snapshots in range", 2, 4),
    ]


def _fake_stages(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every stage of the main job replaced by one that reports its steps as the real one
    does (the Spark step names are spark_jobs.backfill's), so the names are the job's own."""
    from mspa_features.compose import jobs
    from mspa_features.evaluation import drift_report

    accepted = pa.table({"event_timestamp": pd.to_datetime(["1998-01-01"]), "label": [1]})
    result = SimpleNamespace(
        contract="interactions", accepted=accepted, n_input=1, n_accepted=1, n_quarantined=0,
        reason_counts=dict,
    )  # fmt: skip
    monkeypatch.setattr(main_job, "check_stage_inputs", lambda cfg: None)
    monkeypatch.setattr(main_job, "prepare_data", lambda cfg, ws: [result])
    monkeypatch.setattr(
        main_job, "build_eval_sets", lambda cfg, ws: (SimpleNamespace(report={}), [])
    )
    monkeypatch.setattr(main_job, "evaluate_baselines", lambda *a: ({}, {}))

    def evaluate(cfg, progress):  # type: ignore[no-untyped-def]
        for kind in cfg.eval.composers:
            batch_progress(progress, f"{kind}: authors", 169)(169)
            batch_progress(progress, f"{kind}: users", 12)
            for m in cfg.u2a.num_candidates:
                progress(f"{kind}: recommend m={m} x{cfg.eval.generations}", 0, 1)
        return {}

    def build_features(cfg, ws, progress):  # type: ignore[no-untyped-def]
        for fs in cfg.features.feature_sets:
            step = main_job._feature_set_steps(progress, fs)
            for what in ("due users", "compose + encode", "publish partitions"):
                step(f"preferences: {what}", 0, 31)
            for what in ("snapshots in range", "compose + encode", "publish partitions"):
                step(f"author_profiles: {what}", 0, 216)
        progress(main_job.FEAST_STEP, 0, 1)
        return {"sample": None}

    def ablation(cfg, progress, sample):  # type: ignore[no-untyped-def]
        _Ticker(progress, 33)
        _Ticker(main_job._comparison_steps(progress), 6)
        return {}

    monkeypatch.setattr(jobs, "evaluate", evaluate)
    monkeypatch.setattr(main_job, "build_features", build_features)
    monkeypatch.setattr(drift_report, "drift", lambda *a: SimpleNamespace(summary=dict))
    monkeypatch.setattr(main_job, "serving_preview", lambda *a: [])
    monkeypatch.setattr(main_job, "run_ablation_stage", ablation)


def test_every_stage_and_step_shows_whole_beside_its_counts_at_80_columns(tmp_path, monkeypatch):
    from mspa_features.config import load_config

    _fake_stages(monkeypatch)
    cfg = load_config("configs/movielens.yaml").model_copy(update={"workspace": tmp_path})
    out = Console(width=80, record=True, color_system=None, file=io.StringIO())
    prog = progress_display(out)
    rows = RunProgress(prog)
    main_job.run(cfg, progress=rows.stage, step_progress=rows.step)
    out.print(prog.get_renderable())
    lines = out.export_text().splitlines()

    names = [t.description for t in prog.tasks]
    assert "…" not in "\n".join(lines)
    for name in names:
        assert len(name) <= NAME_WIDTH, name
        assert any(f" {name.strip()} " in ln for ln in lines), name  # whole, spinner before
    assert max(len(ln) for ln in lines) <= 80
    # a step shows its row and total from its start, before its first batch or fit is back
    by_name = {t.description.strip(): t for t in prog.tasks}
    assert (by_name["llm: users"].completed, by_name["llm: users"].total) == (0, 12)
    assert by_name["ablation"].total == 33 and by_name["comparison"].total == 6
    # the features stage: one row per feature set and entity, showing its latest step (a row
    # per step would push the display past a 24-line terminal)
    features = [n for n in by_name if n.startswith(("template ", "llm "))]
    assert features == [
        "template preferences - publish partitions",
        "template authors - publish partitions",
        "llm preferences - publish partitions",
        "llm authors - publish partitions",
    ]
    assert len(lines) <= 24


def test_row_tickers_of_a_spark_step_add_up_per_partition(tmp_path) -> None:
    # A compose task reports inputs done after each composer batch; the driver sums the tasks.
    from spark_jobs.udfs import RowTicker, read_row_progress

    folder = tmp_path / "preferences-r1.progress"
    assert read_row_progress(folder) == 0  # no task has started
    tick = RowTicker(str(folder))  # outside Spark: partition 0
    assert read_row_progress(folder) == 0
    tick(64)
    tick(36)
    (folder / "3").write_text("12")  # another partition's task
    (folder / "5.tmp").write_text("999")  # a write in progress is not counted twice
    assert read_row_progress(folder) == 112
    RowTicker(str(folder))  # a retried attempt of partition 0 starts its count again
    assert read_row_progress(folder) == 12
    silent = RowTicker(None)  # no display: nothing written
    silent(5)
    assert sorted(p.name for p in folder.iterdir()) == ["0", "3", "5.tmp"]
    # a folder the task cannot write (here: below a file) stops the reports, never the task
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    lost = RowTicker(str(blocked / "progress"))
    lost(64)
    assert lost.path is None and lost.done == 64
