"""Old import paths of modules moved by the data-flow layout (0.2), kept working with a
``DeprecationWarning`` so that user code and run configs naming them (``ranker.type:
ranker_hooks.torch_ranker:TorchRanker``) still run. See docs/architecture.md for the layout."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

# old module -> new module; a package entry covers its submodules.
MOVED: dict[str, str] = {
    "mspa_features.contracts": "mspa_features.data.contracts",
    "mspa_features.validation": "mspa_features.data.validation",
    "mspa_features.composer": "mspa_features.compose.composer",
    "mspa_features.prompts": "mspa_features.compose.prompts",
    "mspa_features.parsing": "mspa_features.compose.parsing",
    "mspa_features.encoders": "mspa_features.compose.encoders",
    "mspa_features.cache": "mspa_features.compose.cache",
    "mspa_features.compose_jobs": "mspa_features.compose.jobs",
    "mspa_features.features": "mspa_features.compose.feature_rows",
    "mspa_features.metrics": "mspa_features.evaluation.metrics",
    "mspa_features.baselines": "mspa_features.evaluation.baselines",
    "mspa_features.data.eval_datasets": "mspa_features.evaluation.datasets",
    "mspa_features.feast_defs": "mspa_features.serving.definitions",
    "mspa_features.registry": "mspa_features.serving.materialize",
    "mspa_features.feature_reads": "mspa_features.serving.reads",
    "mspa_features.retrieval": "mspa_features.serving.nearest",
    "mspa_features.rewards": "mspa_features.align.rewards",
    # the library side of the backfill; its Spark functions moved to spark_jobs (see the module)
    "mspa_features.backfill": "mspa_features.snapshots.backfill",
    # the main job wires every package together: it belongs to the CLI layer
    "mspa_features.pipeline": "mspa_features.cli.main_job",
    "mspa_features.leak_defs": "ranker_hooks.lis.feast_defs",
    "mspa_features.aligned_defs": "ranker_hooks.aligned_id.feast_defs",
    "ranker_hooks.base": "ranker_hooks.rankers.base",
    "ranker_hooks.torch_ranker": "ranker_hooks.rankers.torch_ranker",
    "ranker_hooks.tfra_ranker": "ranker_hooks.rankers.tfra_ranker",
    "ranker_hooks.report": "ranker_hooks.ablation.report",
    "ranker_hooks.tracking": "ranker_hooks.ablation.tracking",
    "ranker_hooks.variants": "ranker_hooks.ablation.variants",
    "ranker_hooks.protocol": "ranker_hooks.ablation.split",
    "ranker_hooks.lis_ablation": "ranker_hooks.lis.ablation",
    "ranker_hooks.lis_variants": "ranker_hooks.lis.variants",
    "ranker_hooks.leaks": "ranker_hooks.lis.leaks",
    "ranker_hooks.id_alignment": "ranker_hooks.aligned_id.adapter",
}

# Old modules whose name is now a package: attribute access falls through to the successor.
SUCCESSORS: dict[str, str] = {
    "mspa_features.evaluation": "mspa_features.evaluation.composer_eval",
    "ranker_hooks.ablation": "ranker_hooks.ablation.run",
    "ranker_hooks.lis": "ranker_hooks.lis.verdicts",
    "ranker_hooks.aligned_id": "ranker_hooks.aligned_id.build",
}


def successor(old: str) -> str | None:
    """The new module path for ``old`` (a moved module or a submodule of a moved package)."""
    for key in sorted(MOVED, key=len, reverse=True):
        if old == key or old.startswith(key + "."):
            return MOVED[key] + old[len(key) :]
    return None


def package_getattr(package: str, name: str) -> object:
    """``__getattr__`` body for a package that took over an old module's name."""
    if name.startswith("__"):
        raise AttributeError(name)
    # ``from package import submodule`` asks the package first: a real submodule wins, quietly
    # (``from mspa_features.evaluation import metrics`` is the module, not a moved name).
    if importlib.util.find_spec(f"{package}.{name}") is not None:
        return importlib.import_module(f"{package}.{name}")
    module = importlib.import_module(SUCCESSORS[package])
    try:
        value = getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
    warnings.warn(
        f"{package}.{name} moved to {SUCCESSORS[package]}.{name}", DeprecationWarning, stacklevel=3
    )
    return value


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.new}", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:  # already executed under its new name
        return None


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        new = successor(fullname)
        return importlib.util.spec_from_loader(fullname, _Alias(new)) if new else None


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (idempotent)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        # first: a submodule of a moved package must alias the new module, not load a twin
        sys.meta_path.insert(0, _MovedFinder())
