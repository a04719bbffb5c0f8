"""Frames resolve as validation resolves them and every dropped frame is counted with a reason;
an aligned checkpoint is handed off to a backend that keeps its architecture (issue 14, item 7)."""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import yaml
from PIL import Image

from mspa_features.compose.composer import (
    FRAME_EMPTY,
    FRAME_NO_ROOT,
    FRAME_NOT_FOUND,
    FRAME_UNDECODABLE,
    author_frames,
)
from mspa_features.config import RunConfig, load_config
from mspa_features.data.contracts import Author, Frame


def _png(color: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (color, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def _author(frames: list[Frame]) -> Author:
    return Author(
        author_id="a",
        event_timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        profile_text="p",
        frames=frames,
    )


def test_relative_frames_resolve_against_the_root_and_drops_are_counted(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img/ok.png").write_bytes(_png(10))
    (tmp_path / "img/bad.png").write_bytes(b"not an image")
    a = _author(
        [
            Frame(path="img/ok.png"),
            Frame(path="img/missing.png"),
            Frame(path="img/bad.png"),
            Frame(bytes=_png(20)),
            Frame(),
        ]
    )
    dropped: Counter[str] = Counter()
    got = author_frames(a, tmp_path, limit=5, dropped=dropped)
    assert got == [_png(10), _png(20)]
    assert dropped == {FRAME_NOT_FOUND: 1, FRAME_UNDECODABLE: 1, FRAME_EMPTY: 1}
    # Without a root a relative path cannot resolve: counted, never silently lost.
    dropped.clear()
    assert author_frames(a, None, limit=5, dropped=dropped) == [_png(20)]
    assert dropped[FRAME_NO_ROOT] == 3 and dropped[FRAME_EMPTY] == 1


def test_run_config_gives_the_composer_the_validation_image_root(tmp_path):
    syn = {"name": "s", "workspace": str(tmp_path / "ws"), "data": {"source": "synthetic"}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(syn))
    cfg = load_config(p)
    fp = cfg.data.synthetic.fingerprint()
    # ingest_folder validates the generator's raw folder: frames resolve there too.
    assert cfg.composer.image_root == (tmp_path / "ws/raw" / f"synthetic-{fp}").resolve()
    mine = {**syn, "composer": {"image_root": "frames"}}
    p.write_text(yaml.safe_dump(mine))
    assert load_config(p).composer.image_root == (tmp_path / "frames").resolve()
    ml = RunConfig.model_validate({"name": "m", "data": {"source": "movielens"}})
    assert ml.composer.image_root is None  # filled by load_config, not by the model


def test_llm_composer_passes_the_root_and_counts_drops(tmp_path):
    from mspa_features.compose.composer import LLMComposer
    from mspa_features.generation.base import BackendConfig, Generation, GenerationBackend

    class _VL(GenerationBackend):
        name = "fake-vl"
        supports_images = True
        seen: ClassVar[list[int]] = []

        @property
        def model_version(self) -> str:
            return "fake"

        def generate(self, conversations, cfg, **_kw):
            for c in conversations:
                self.seen.append(sum(len(m.images) for m in c))
            return [Generation('{"Author Type": "x"}', 1, 1, "stop") for _ in conversations]

        def count_tokens(self, text: str) -> int:
            return len(text.split())

    (tmp_path / "ok.png").write_bytes(_png(1))
    comp = LLMComposer(_VL(BackendConfig()), image_root=tmp_path, max_frames_per_author=4)
    comp.describe_authors([_author([Frame(path="ok.png"), Frame(path="gone.png")])])
    assert _VL.seen == [1]
    assert comp.stats.frames_dict() == {"used": 1, "dropped": {FRAME_NOT_FOUND: 1}}


def test_handoff_keeps_a_vision_language_policy_on_the_vlm_backend(tmp_path):
    from mspa_features.align.evaluate import backend_type_for
    from mspa_features.align.trainer import write_compose_config

    vl, text = tmp_path / "vl", tmp_path / "text"
    for d, mt in ((vl, "qwen2_vl"), (text, "llama")):
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"model_type": mt}))
    assert backend_type_for(vl) == "transformers-vl"
    assert backend_type_for(text) == "transformers"
    assert backend_type_for("smollm2") == "transformers"
    run = RunConfig.model_validate(
        {"name": "s", "workspace": str(tmp_path / "ws"), "data": {"source": "synthetic"}}
    )
    written = yaml.safe_load(Path(write_compose_config(run, vl)).read_text())
    assert written["composer"]["backend"]["type"] == "transformers-vl"
    assert written["composer"]["backend"]["model"] == str(vl)
