"""Shared fixtures: temp workspaces, the real MovieLens files fetched once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests marked gpu skip cleanly, with the reason, on machines without a CUDA device.
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker: gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def movielens_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real ML-100K files from the recbole wheel, fetched once for the whole session.

    MSPA_TEST_DATA_CACHE points at a folder reused across runs (CI sets it) so the wheel is
    downloaded once per machine.
    """
    from mspa_features.data import movielens

    cache = os.environ.get("MSPA_TEST_DATA_CACHE")
    root = Path(cache) if cache else tmp_path_factory.mktemp("raw")
    return movielens.fetch(root)


@pytest.fixture(scope="session")
def template_backfill(movielens_raw: Path):
    """A factory: ``make(root, start, end, app_name) -> (run config, backfill config, feature
    set folder)``: MovieLens-100K ingested into a fresh workspace under ``root``, then the
    ``template`` set backfilled by the real Spark job (``local[2]``) over ``[start, end]``.

    Each call builds its own workspace (the tests that use it register and change their sets).
    """

    def make(root: Path, start, end, app_name: str):
        import shutil

        from mspa_features.config import DataConfig, RunConfig, Workspace
        from mspa_features.data import movielens
        from mspa_features.data.ingest import write_results
        from mspa_features.snapshots.backfill import BackfillConfig, feature_set_dir
        from spark_jobs.backfill import backfill_authors, backfill_preferences
        from spark_jobs.session import build_spark_session

        write_results(movielens.convert(movielens_raw).results(), root / "data", root / "q")
        cfg = RunConfig(
            name="movielens", workspace=root / "ws", data=DataConfig(source="movielens")
        )
        shutil.copytree(root / "data", Workspace(cfg.workspace).data("movielens"))
        bf = BackfillConfig(
            master="local[2]",
            spark_conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"},
        )
        spark = build_spark_session(bf, app_name=app_name)
        try:
            backfill_preferences(spark, cfg, bf, start, end)
            backfill_authors(spark, cfg, bf, start, end)
        finally:
            spark.stop()
        return cfg, bf, feature_set_dir(cfg, bf)

    return make
