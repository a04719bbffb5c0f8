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
