"""Training prompts from U2A: lettered candidates, truth letter, reward columns, skips."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from mspa_features.align.dataset import COLUMNS, AlignDataset, build_align_rows
from mspa_features.align.rewards import AccuracyReward
from mspa_features.compose.composer import TemplateComposer
from mspa_features.data.contracts import Author, Frame
from mspa_features.errors import SchemaError

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _author(i: int, genre: str) -> Author:
    return Author(
        author_id=f"a{i}",
        event_timestamp=T0,
        profile_text=f"Movie {i}",
        attributes={"genres": genre},
    )


AUTHORS = {a.author_id: a for a in [_author(i, "Drama" if i % 2 else "Comedy") for i in range(8)]}


def _u2a() -> pd.DataFrame:
    ts = pd.Timestamp("2024-02-01", tz="UTC")
    rows = [
        # u1: truth a5 at letter C
        ("u1", "train", ["a1", "a3"], "a5", ["a2", "a4", "a5", "a6"], "C", 2),
        # u0: empty history -> skipped
        ("u0", "train", [], "a7", ["a7", "a0", "a1", "a2"], "A", 0),
        ("u2", "test", ["a0"], "a2", ["a2", "a1", "a3", "a4"], "A", 0),
    ]
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "split": [r[1] for r in rows],
            "history_author_ids": [r[2] for r in rows],
            "history_ts": [[ts - pd.Timedelta(days=1)] * len(r[2]) for r in rows],
            "target_author_id": [r[3] for r in rows],
            "target_ts": [ts] * len(rows),
            "as_of": [ts] * len(rows),
            "candidates_m4": [r[4] for r in rows],
            "answer_m4": [r[5] for r in rows],
            "answer_index_m4": [r[6] for r in rows],
        }
    )


def test_rows_hold_prompt_truth_and_reward_columns(tmp_path) -> None:
    texts = {"a5": "The one about drama", "a2": "A comedy"}
    ds = build_align_rows(_u2a(), AUTHORS, texts, TemplateComposer(), num_candidates=4)
    assert ds.n_skipped == 1 and len(ds.rows) == 1  # u0 has no history; u2 is test split
    row = ds.rows.iloc[0]
    assert row["user_id"] == "u1" and row["answer"] == "C" and row["answer_index"] == 2
    assert row["candidate_ids"][2] == row["target_author_id"] == "a5"
    system, user = row["prompt"]
    assert system["role"] == "system" and user["role"] == "user"
    # Lettered candidates in U2A order; descriptions from author_texts, else the profile.
    assert "A. A comedy" in user["content"] and "C. The one about drama" in user["content"]
    assert "B. Profile: Movie 4" in user["content"]
    assert '"Answer": "<letter>"' in user["content"]
    # The columns are exactly what the rewards read: a right answer scores 1.
    good = '{"User Preference": "drama", "Recommendation Reason": "fits", "Answer": "C"}'
    assert AccuracyReward()([good], **ds.rows[["answer", "candidate_ids"]].to_dict("list")) == [1.0]
    # Round trip through parquet keeps prompts and candidates.
    back = AlignDataset.load(ds.save(tmp_path / "rows.parquet"))
    assert back.rows["prompt"].iloc[0] == row["prompt"]
    assert back.rows["candidate_ids"].iloc[0] == list(row["candidate_ids"])
    assert back.fingerprint == ds.fingerprint
    hf = back.to_hf()
    assert hf.column_names[0] == "prompt" and hf[0]["answer"] == "C"


def test_split_and_limit() -> None:
    test = build_align_rows(_u2a(), AUTHORS, {}, TemplateComposer(), num_candidates=4, split="test")
    assert test.rows["user_id"].tolist() == ["u2"]
    none = build_align_rows(_u2a(), AUTHORS, {}, TemplateComposer(), num_candidates=4, max_users=1)
    assert none.rows.empty and none.n_skipped == 1  # first user by id is u0 (skipped)


def test_missing_candidate_size_is_named() -> None:
    with pytest.raises(SchemaError, match="candidates_m10"):
        build_align_rows(_u2a(), AUTHORS, {}, TemplateComposer(), num_candidates=10)


def _png(rgb: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), rgb).save(buf, format="PNG")
    return buf.getvalue()


RED, GREEN, BLUE, GREY = _png((255, 0, 0)), _png((0, 255, 0)), _png((0, 0, 255)), _png((9, 9, 9))


def _with_frames(image_root: Path, a2_first: bytes = RED) -> dict[str, Author]:
    """u1's candidates, in letter order a2, a4, a5, a6: three inline frames; one undecodable
    frame and a missing file; one frame file relative to ``image_root``; none."""
    (image_root / "frames").mkdir(parents=True, exist_ok=True)
    (image_root / "frames" / "a5.png").write_bytes(BLUE)
    frames = {
        "a2": [Frame(bytes=a2_first), Frame(bytes=GREEN), Frame(bytes=GREY)],
        "a4": [Frame(bytes=b"not an image"), Frame(path="frames/missing.png")],
        "a5": [Frame(path="frames/a5.png")],
    }
    return {k: dataclasses.replace(a, frames=frames.get(k, [])) for k, a in AUTHORS.items()}


def _build(authors: dict[str, Author], image_root: Path, k: int) -> AlignDataset:
    return build_align_rows(
        _u2a(),
        authors,
        {},
        TemplateComposer(),
        num_candidates=4,
        frames_per_candidate=k,
        image_root=image_root,
    )


def test_frames_follow_letter_order_and_counts_are_in_the_text(tmp_path: Path) -> None:
    ds = _build(_with_frames(tmp_path), tmp_path, 2)
    row = ds.rows.iloc[0]
    assert list(ds.rows.columns) == [*COLUMNS, "images"]
    # a2 is capped at 2 of its 3 frames; a4's bad bytes and missing file and a6's lack of
    # frames contribute nothing; a5's frame comes from a path under the image root.
    assert row["images"] == [RED, GREEN, BLUE]
    user = row["prompt"][1]["content"]
    for line in (
        "A. Profile: Movie 2; Frames: 2 image(s)",
        "B. Profile: Movie 4; Frames: 0 image(s)",
        "C. Profile: Movie 5; Frames: 1 image(s)",
        "D. Profile: Movie 6; Frames: 0 image(s)",
    ):
        assert line in user.splitlines()
    # Authors without any usable frame: rows still build, with no images.
    bare = _build(AUTHORS, tmp_path, 2)
    assert bare.rows["images"].iloc[0] == []
    assert "A. Profile: Movie 2; Frames: 0 image(s)" in bare.rows["prompt"].iloc[0][1]["content"]


def test_no_frames_keeps_the_text_only_rows_and_fingerprint(tmp_path: Path) -> None:
    texts = {"a5": "The one about drama", "a2": "A comedy"}
    old = build_align_rows(_u2a(), AUTHORS, texts, TemplateComposer(), num_candidates=4)
    zero = build_align_rows(
        _u2a(),
        _with_frames(tmp_path),
        texts,
        TemplateComposer(),
        num_candidates=4,
        frames_per_candidate=0,
        image_root=tmp_path,
    )
    assert list(zero.rows.columns) == list(COLUMNS)
    assert zero.rows.equals(old.rows) and zero.fingerprint == old.fingerprint
    assert "Frames:" not in zero.rows["prompt"].iloc[0][1]["content"]
    with pytest.raises(ValueError, match="frames_per_candidate"):
        _build(AUTHORS, tmp_path, -1)


def test_fingerprint_covers_the_image_bytes(tmp_path: Path) -> None:
    red = _build(_with_frames(tmp_path / "r"), tmp_path / "r", 2)
    grey = _build(_with_frames(tmp_path / "g", a2_first=GREY), tmp_path / "g", 2)
    # Same text, different pixels: the fingerprint (part of the model id) must tell them apart.
    assert red.rows["prompt"].iloc[0] == grey.rows["prompt"].iloc[0]
    assert red.fingerprint != grey.fingerprint
    assert red.fingerprint == _build(_with_frames(tmp_path / "r"), tmp_path / "r", 2).fingerprint


def test_images_survive_parquet_and_become_pil_images_for_trl(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = _build(_with_frames(tmp_path), tmp_path, 2)
    path = ds.save(tmp_path / "rows.parquet")
    assert pq.read_schema(path).field("images").type == pa.list_(pa.binary())
    back = AlignDataset.load(path)
    assert back.rows["images"].iloc[0] == [RED, GREEN, BLUE]
    assert back.fingerprint == ds.fingerprint
    # No usable frame anywhere still saves list<binary> and loads empty lists.
    empty = AlignDataset.load(_build(AUTHORS, tmp_path, 1).save(tmp_path / "empty.parquet"))
    assert empty.rows["images"].iloc[0] == []

    hf = back.to_hf()
    images = hf[0]["images"]
    assert [im.size for im in images] == [(8, 8)] * 3
    assert [im.convert("RGB").getpixel((0, 0)) for im in images] == [
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
    ]
    assert hf[0]["prompt"] == ds.rows["prompt"].iloc[0] and hf[0]["answer"] == "C"


def test_training_keeps_only_rows_with_frames_and_counts_the_rest(tmp_path):
    # TRL gives the processor None for an image-less prompt beside ones with images, which the
    # stock VL processors reject: such rows are left out before training, and counted.
    import pandas as pd
    import pytest

    from mspa_features.align.dataset import AlignDataset
    from mspa_features.align.trainer import _rows_with_images
    from mspa_features.errors import SchemaError

    rows = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "images": [[b"png"], [], [b"a", b"b"]]})
    kept = _rows_with_images(AlignDataset(rows, n_skipped=2), tmp_path)
    assert kept.rows["user_id"].tolist() == ["u1", "u3"] and kept.n_skipped == 3
    none = pd.DataFrame({"user_id": ["u1"], "images": [[]]})
    with pytest.raises(SchemaError, match="no candidate of any row has a decodable frame"):
        _rows_with_images(AlignDataset(none), tmp_path)


@pytest.mark.parametrize("images", [False, True])
def test_an_empty_dataset_is_saved_with_its_schema(tmp_path: Path, images: bool) -> None:
    """No U2A user left (every one skipped): the rows file keeps its column types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mspa_features.align.dataset import IMAGES

    columns = [*COLUMNS, IMAGES] if images else list(COLUMNS)
    path = AlignDataset(rows=pd.DataFrame([], columns=columns)).save(tmp_path / "rows.parquet")
    schema = pq.read_schema(path)
    assert schema.names == columns
    assert schema.field("prompt").type == pa.string()
    assert schema.field("answer_index").type == pa.int64()
    assert schema.field("candidate_ids").type == pa.list_(pa.string())
    assert schema.field("target_author_id").type == pa.string()
    if images:
        assert schema.field(IMAGES).type == pa.list_(pa.binary())
    back = AlignDataset.load(path)
    assert len(back.rows) == 0 and list(back.rows.columns) == columns
