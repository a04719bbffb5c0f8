"""GRPO training prompts from the U2A dataset (MSPA section 3.2).

One row per user of a U2A split: the RECOMMEND prompt (the user's preference text and ``m``
lettered candidate descriptions) as chat messages, plus the columns the rewards read:
``answer`` (the truth letter), ``candidate_ids`` (in letter order) and ``target_author_id``.
The candidates and their order come from the U2A table, which shuffles them with its seed, so
the truth sits at every letter about equally often and a model cannot learn "always A".

For vision-language policies (``frames_per_candidate > 0``) each candidate also brings up to
that many of its frames: an ``images`` column holds them (bytes, letter order) and each
candidate line says how many it has. TRL's ``GRPOTrainer`` puts a row's images before the text
of its user message (``trl.data_utils.prepare_multimodal_messages``).

Rows are saved to ``workspace/datasets/<dataset>/align/<split>_m<m>_<composer>[_f<k>].parquet``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mspa_features.compose.composer import Composer, author_frames
from mspa_features.compose.prompts import RECOMMEND, render_author, render_candidates
from mspa_features.data.contracts import Author
from mspa_features.errors import InvalidValueError, SchemaError
from mspa_features.evaluation.composer_eval import u2a_histories

COLUMNS = (
    "prompt",
    "user_id",
    "answer",
    "answer_index",
    "candidate_ids",
    "target_author_id",
)


IMAGES = "images"  # only in rows built with frames: list of encoded images per row


def row_schema(*, images: bool = False) -> Any:
    """The saved rows' ``pyarrow.Schema`` (prompt as JSON text): what an empty dataset is
    written with, since pandas gives an empty frame's columns no type (parquet ``null``)."""
    import pyarrow as pa

    fields = [
        pa.field("prompt", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("answer_index", pa.int64()),
        pa.field("candidate_ids", pa.list_(pa.string())),
        pa.field("target_author_id", pa.string()),
    ]
    if images:
        fields.append(pa.field(IMAGES, pa.list_(pa.binary())))
    return pa.schema(fields)


@dataclass
class AlignDataset:
    """Training rows (``COLUMNS``, plus ``images`` when built with frames) and a fingerprint of
    their content (part of the model id)."""

    rows: pd.DataFrame
    n_skipped: int = 0

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        with_images = IMAGES in self.rows.columns
        for r in self.rows.itertuples(index=False):
            h.update(json.dumps([r.prompt, r.answer, list(r.candidate_ids)]).encode())
            if with_images:
                # Count, then each image's digest: same bytes split differently hash apart.
                h.update(str(len(r.images)).encode())
                for b in r.images:
                    h.update(hashlib.sha256(b).digest())
        return h.hexdigest()[:12]

    def save(self, path: str | Path) -> Path:
        """Write the rows as parquet (prompt messages as JSON text, images as
        ``list<binary>``); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = self.rows.copy()
        if df.empty:
            import pyarrow.parquet as pq

            pq.write_table(row_schema(images=IMAGES in df.columns).empty_table(), path)
            return path
        df["prompt"] = [json.dumps(p) for p in df["prompt"]]
        if IMAGES not in df.columns:
            df.to_parquet(path, index=False)
            return path
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Typed explicitly: rows whose lists are all empty would otherwise infer list<null>.
        images = pa.array([list(x) for x in df[IMAGES]], type=pa.list_(pa.binary()))
        table = pa.Table.from_pandas(df.drop(columns=IMAGES), preserve_index=False)
        pq.write_table(table.append_column(IMAGES, images), path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> AlignDataset:
        df = pd.read_parquet(path)
        df["prompt"] = [json.loads(p) for p in df["prompt"]]
        df["candidate_ids"] = [list(c) for c in df["candidate_ids"]]
        if IMAGES in df.columns:
            df[IMAGES] = [[bytes(b) for b in x] for x in df[IMAGES]]
        return cls(rows=df)

    def to_hf(self):  # -> datasets.Dataset
        """A ``datasets.Dataset`` with conversational ``prompt`` (TRL's input); ``images``, when
        present, decodes to PIL images (what ``GRPOTrainer`` hands the processor)."""
        from datasets import Dataset, Image, List

        records = self.rows.to_dict(orient="records")
        if IMAGES not in self.rows.columns:
            return Dataset.from_list(records)
        for r in records:
            r[IMAGES] = [{"bytes": b, "path": None} for b in r[IMAGES]]
        # The Image feature keeps the original bytes and decodes them on access.
        return Dataset.from_list(records).cast_column(IMAGES, List(Image()))


def build_align_rows(
    u2a: pd.DataFrame,
    authors: Mapping[str, Author],
    author_texts: Mapping[str, str],
    composer: Composer,
    *,
    num_candidates: int,
    split: str = "train",
    max_users: int | None = None,
    frames_per_candidate: int = 0,
    image_root: Path | None = None,
) -> AlignDataset:
    """Build the training prompts for one U2A split.

    Args:
        u2a: the U2A table (``U2ADataset.table``).
        authors: accepted authors by id (histories and fallback descriptions).
        author_texts: candidate descriptions by author id (e.g. ``author_profiles.author_text``);
            an author missing here is described by its rendered profile.
        composer: writes the preference texts (template or LLM).
        num_candidates: ``m``; the U2A table must hold ``candidates_m{m}``.
        split: which users; ``max_users`` keeps the first N by id.
        frames_per_candidate: 0 builds text-only rows; k > 0 adds an ``images`` column with up
            to k decodable frames per candidate, in letter order, and the count on each
            candidate line (authors without usable frames contribute none).
        image_root: where relative frame paths resolve (the run's data folder).

    Raises:
        SchemaError: the U2A table lacks the ``m`` columns.
        ValueError: ``frames_per_candidate`` is negative.
    """
    if frames_per_candidate < 0:
        raise InvalidValueError("frames_per_candidate", frames_per_candidate, ">= 0")
    col = f"candidates_m{num_candidates}"
    if col not in u2a.columns:
        have = sorted(c.removeprefix("candidates_m") for c in u2a.columns if "candidates_m" in c)
        raise SchemaError(
            "<u2a table>", f"no candidate sets of size {num_candidates} (built: {have})", column=col
        )
    table = u2a[u2a["split"] == split].sort_values("user_id").reset_index(drop=True)
    if max_users is not None:
        table = table.head(max_users)
    composed = composer.compose_preferences(u2a_histories(table, dict(authors)))
    rows, skipped = [], 0
    frames: dict[str, list[bytes]] = {}  # by author: candidates recur across users
    for r, pref in zip(table.itertuples(index=False), composed, strict=True):
        if pref.status == "skipped" or not pref.text.strip():
            skipped += 1  # no usable history: nothing to recommend from
            continue
        cands = [str(a) for a in getattr(r, col)]
        texts = [
            author_texts.get(a) or (render_author(authors[a]) if a in authors else a) for a in cands
        ]
        images: list[bytes] | None = None
        counts = None
        if frames_per_candidate > 0:
            for a in cands:
                if a not in frames:
                    frames[a] = (
                        author_frames(authors[a], image_root, frames_per_candidate)
                        if a in authors
                        else []
                    )
            counts = [len(frames[a]) for a in cands]
            images = [b for a in cands for b in frames[a]]
        candidates = render_candidates(texts, image_counts=counts)
        msgs = RECOMMEND.messages(preference=pref.text, candidates=candidates)
        row = {
            "prompt": [{"role": m.role, "content": m.content} for m in msgs],
            "user_id": str(r.user_id),
            "answer": str(getattr(r, f"answer_m{num_candidates}")),
            "answer_index": int(getattr(r, f"answer_index_m{num_candidates}")),
            "candidate_ids": cands,
            "target_author_id": str(r.target_author_id),
        }
        if images is not None:
            row[IMAGES] = images
        rows.append(row)
    columns = [*COLUMNS, IMAGES] if frames_per_candidate > 0 else list(COLUMNS)
    return AlignDataset(rows=pd.DataFrame(rows, columns=columns), n_skipped=skipped)
