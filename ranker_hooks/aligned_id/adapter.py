"""Content -> ID-embedding alignment (CB2CF / RecGOAT style): predict a ranker's author-ID
embedding from the composer's author (content) embedding.

Trained on warm authors (those the ranker has an ID row for), it predicts embeddings for cold
authors (first seen after the ranker's training window), which the ranker can read as a
feature. Two objectives, usable alone or together:

* regression: mean squared error to the standardised ID embedding;
* contrastive (RecGOAT's instance-level alignment): InfoNCE between the prediction and the true
  ID embeddings of the batch, so each author is closer to its own ID row than to the others'.

Quality is the mean cosine between prediction and true ID embedding on held-out warm authors,
reported beside the mean-embedding baseline (every author predicted as the mean ID row).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mspa_features.errors import (
    DataError,
    InputMismatchError,
    InvalidValueError,
    UnknownNameError,
)
from ranker_hooks.lis.feast_defs import utc_timestamp
from ranker_hooks.rankers.base import IdEmbeddings, IdKind


@dataclass
class AlignmentConfig:
    """Hyper-parameters of :func:`fit_id_adapter`."""

    hidden: int = field(default=0, metadata={"help": "hidden width of the adapter MLP; 0 = linear"})
    loss: Literal["regression", "contrastive", "both"] = field(
        default="both", metadata={"help": "training objective"}
    )
    contrastive_weight: float = field(
        default=0.5, metadata={"help": "weight of InfoNCE when loss='both' (MSE gets 1 - w)"}
    )
    temperature: float = field(default=0.1, metadata={"help": "InfoNCE temperature"})
    epochs: int = field(default=200, metadata={"help": "passes over the training authors"})
    batch_size: int = field(default=256, metadata={"help": "authors per step (InfoNCE negatives)"})
    lr: float = field(default=1e-2, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "Adam weight decay"})
    holdout: float = field(
        default=0.2, metadata={"help": "share of warm authors held out for the quality report"}
    )
    val_fraction: float = field(
        default=0.1,
        metadata={"help": "share of training authors for early stopping (0: train all epochs)"},
    )
    patience: int = field(
        default=20, metadata={"help": "epochs without a better validation cosine before stopping"}
    )
    seed: int = field(default=0, metadata={"help": "seeds the split, init and shuffling"})
    threads: int = field(default=1, metadata={"help": "torch intra-op threads"})

    def __post_init__(self) -> None:
        if self.loss not in ("regression", "contrastive", "both"):
            raise UnknownNameError(
                "AlignmentConfig loss", self.loss, ("regression", "contrastive", "both")
            )
        bad = {
            k: v
            for k, v in {
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "threads": self.threads,
                "patience": self.patience,
            }.items()
            if int(v) < 1
        }
        if self.hidden < 0:
            bad["hidden"] = self.hidden
        if not self.lr > 0:
            bad["lr"] = self.lr
        if not self.temperature > 0:
            bad["temperature"] = self.temperature
        if self.weight_decay < 0:
            bad["weight_decay"] = self.weight_decay
        if not 0.0 <= self.contrastive_weight <= 1.0:
            bad["contrastive_weight"] = self.contrastive_weight
        if not 0.0 <= self.holdout < 1.0:
            bad["holdout"] = self.holdout
        if not 0.0 <= self.val_fraction < 1.0:
            bad["val_fraction"] = self.val_fraction
        if bad:
            raise InvalidValueError(
                ", ".join(bad),
                bad,
                "in range (see the field's help)",
                record="AlignmentConfig",
            )


@dataclass(frozen=True)
class AlignmentReport:
    """Held-out quality: mean cosine to the true ID embedding, adapter vs mean baseline.

    ``n_train`` authors fitted the adapter, ``n_val`` chose its epoch (early stopping),
    ``n_holdout`` (never seen) give the cosines.
    """

    n_train: int
    n_holdout: int
    cosine_adapter: float
    cosine_mean_baseline: float
    final_loss: float
    best_epoch: int = 0
    n_val: int = 0

    @property
    def gain(self) -> float:
        return self.cosine_adapter - self.cosine_mean_baseline

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "gain": self.gain}


class IdAdapter:
    """A fitted content -> ID-embedding map (see :func:`fit_id_adapter`)."""

    def __init__(
        self, module: Any, *, kind: IdKind, mean: np.ndarray, scale: float, content_dim: int
    ) -> None:
        self._module = module
        self.kind: IdKind = kind
        self._mean = mean  # (id_dim,) target mean; predictions are de-standardised with it
        self._scale = scale
        self.content_dim = content_dim

    def predict(self, content: IdEmbeddings, ids: Any | None = None) -> IdEmbeddings:
        """Predicted ID embeddings for ``ids`` (default every id of ``content``).

        Raises:
            ValueError: an id has no content row, or the content dimension differs.
        """
        import torch

        if content.matrix.shape[1] != self.content_dim:
            raise InputMismatchError(
                "must be equal",
                {"content dim": content.matrix.shape[1], "fitted content dim": self.content_dim},
                record="IdAdapter.predict",
            )
        index = {str(i): r for r, i in enumerate(content.ids)}
        ids = np.asarray(content.ids if ids is None else ids, dtype=object)
        missing = [str(i) for i in ids if str(i) not in index]
        if missing:
            raise DataError("IdAdapter.predict", f"no content row for ids {missing[:5]}")
        x = torch.as_tensor(
            _finite(content.matrix[[index[str(i)] for i in ids]], "content"), dtype=torch.float32
        )
        with torch.no_grad():
            y = self._module(x).numpy()  # (n, id_dim), standardised
        return IdEmbeddings(
            kind=self.kind,
            ids=ids,
            matrix=(y * self._scale + self._mean).astype(np.float32),
        )


def _finite(m: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    bad = ~np.isfinite(m).all(axis=1)
    if bad.any():
        raise DataError(name, "holds a non-finite value", record=int(bad.argmax()))
    return m


def _mean_cosine(pred: np.ndarray, true: np.ndarray) -> float:
    num = (pred * true).sum(1)
    den = np.linalg.norm(pred, axis=1) * np.linalg.norm(true, axis=1)
    return float(np.mean(np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)))


def fit_id_adapter(
    content: IdEmbeddings,
    id_table: IdEmbeddings,
    config: AlignmentConfig | None = None,
) -> tuple[IdAdapter, AlignmentReport]:
    """Fit the adapter on the warm ids (in both tables) and report held-out quality.

    Args:
        content: the composer's author embeddings (``content.ids`` -> rows).
        id_table: the ranker's ID table (e.g. ``ranker.export_id_embeddings("author")``).
        config: hyper-parameters.

    Returns:
        The adapter (trained on the non-held-out warm ids) and its :class:`AlignmentReport`.

    Raises:
        ValueError: fewer than 4 warm ids, or a non-finite row (named).
    """
    import torch

    cfg = config or AlignmentConfig()
    x_all = _finite(content.matrix, "content")
    y_all = _finite(id_table.matrix, "id_table")
    c_index = {str(i): r for r, i in enumerate(content.ids)}
    warm = [(c_index[str(i)], r) for r, i in enumerate(id_table.ids) if str(i) in c_index]
    if len(warm) < 4:
        raise InvalidValueError(
            "warm ids (in both tables)", len(warm), ">= 4", record="fit_id_adapter"
        )
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(warm))
    n_hold = round(cfg.holdout * len(warm))
    if cfg.holdout > 0:
        n_hold = min(max(n_hold, 1), len(warm) - 2)
    hold, train = order[:n_hold], order[n_hold:]
    xi = np.array([w[0] for w in warm])
    yi = np.array([w[1] for w in warm])
    # Early stopping watches a slice of the training authors, never the held-out ones.
    n_val = round(cfg.val_fraction * len(train)) if len(train) >= 10 else 0
    val, train = train[:n_val], train[n_val:]
    x_tr, y_tr = x_all[xi[train]], y_all[yi[train]]
    x_val, y_val = x_all[xi[val]], y_all[yi[val]]

    mean = y_tr.mean(0)
    scale = float(np.sqrt(((y_tr - mean) ** 2).sum(1).mean())) or 1.0  # RMS row norm
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        torch.manual_seed(cfg.seed)
        d_in, d_out = x_tr.shape[1], y_tr.shape[1]
        module = (
            torch.nn.Linear(d_in, d_out)
            if cfg.hidden == 0
            else torch.nn.Sequential(
                torch.nn.Linear(d_in, cfg.hidden),
                torch.nn.GELU(),
                torch.nn.Linear(cfg.hidden, d_out),
            )
        )
        opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        x = torch.as_tensor(x_tr)  # (n, d_in)
        y = torch.as_tensor((y_tr - mean) / scale)  # (n, d_out), standardised
        gen = torch.Generator().manual_seed(cfg.seed)
        w_con = {"regression": 0.0, "contrastive": 1.0, "both": cfg.contrastive_weight}[cfg.loss]
        loss_value = math.nan
        best = (-math.inf, 0, None)  # (validation cosine, epoch, weights)
        for epoch in range(1, cfg.epochs + 1):
            module.train()
            perm = torch.randperm(len(x), generator=gen)
            for lo in range(0, len(x), cfg.batch_size):
                b = perm[lo : lo + cfg.batch_size]
                pred = module(x[b])  # (B, d_out)
                loss = torch.zeros(())
                if w_con < 1.0:
                    loss = loss + (1.0 - w_con) * torch.nn.functional.mse_loss(pred, y[b])
                if w_con > 0.0 and len(b) > 1:
                    # InfoNCE: row i's positive is its own ID embedding, the batch the negatives.
                    p = torch.nn.functional.normalize(pred, dim=1)
                    t = torch.nn.functional.normalize(y[b], dim=1)
                    logits = p @ t.T / cfg.temperature  # (B, B)
                    loss = loss + w_con * torch.nn.functional.cross_entropy(
                        logits, torch.arange(len(b))
                    )
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_value = float(loss.detach())
            if n_val:
                module.eval()
                with torch.no_grad():
                    pv = module(torch.as_tensor(x_val)).numpy() * scale + mean  # (n_val, d_out)
                cos = _mean_cosine(pv, y_val)
                if cos > best[0]:
                    best = (cos, epoch, {k: v.clone() for k, v in module.state_dict().items()})
                elif epoch - best[1] >= cfg.patience:
                    break
        if best[2] is not None:
            module.load_state_dict(best[2])
        module.eval()
    finally:
        torch.set_num_threads(prev_threads)

    adapter = IdAdapter(module, kind=id_table.kind, mean=mean, scale=scale, content_dim=d_in)
    if n_hold:
        true = y_all[yi[hold]]
        pred = adapter.predict(
            IdEmbeddings(kind=content.kind, ids=content.ids, matrix=x_all),
            ids=np.asarray(content.ids, dtype=object)[xi[hold]],
        ).matrix
        cos_adapter = _mean_cosine(pred, true)
        cos_mean = _mean_cosine(np.broadcast_to(mean, true.shape), true)
    else:
        cos_adapter = cos_mean = math.nan
    report = AlignmentReport(
        n_train=len(train),
        n_holdout=int(n_hold),
        cosine_adapter=cos_adapter,
        cosine_mean_baseline=cos_mean,
        final_loss=loss_value,
        best_epoch=best[1] if n_val else cfg.epochs,
        n_val=int(n_val),
    )
    return adapter, report


def author_content(author_profiles: Path, *, as_of: datetime | None = None) -> IdEmbeddings:
    """The composer's author embeddings from a feature set's ``author_profiles`` folder.

    Per author, the latest snapshot with ``event_timestamp <= as_of`` (default: the latest);
    authors without an embedding are left out.

    Raises:
        ValueError: the folder holds no readable author profile.
    """
    import pyarrow.dataset as ds

    folder = Path(author_profiles)
    if not folder.is_dir() or not any(folder.rglob("*.parquet")):
        raise DataError("author_content", f"no parquet under {folder}")
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table(
        columns=["author_id", "event_timestamp", "author_emb"]
    )
    df = table.to_pandas()
    df = df[df["author_emb"].notna()]
    if as_of is not None:
        df = df[pd.to_datetime(df["event_timestamp"], utc=True) <= utc_timestamp(as_of)]
    if df.empty:
        raise DataError("author_content", f"no author embedding in {folder} as of {as_of}")
    df = df.sort_values(["author_id", "event_timestamp"]).drop_duplicates("author_id", keep="last")
    return IdEmbeddings(
        kind="author",
        ids=df["author_id"].astype(str).to_numpy(dtype=object),
        matrix=np.vstack(df["author_emb"].to_numpy()).astype(np.float32),
    )


def cold_author_ids(interactions: pd.DataFrame, T: datetime) -> np.ndarray:
    """Authors whose first interaction is at or after ``T`` (cold for a ranker trained before T)."""
    ts = pd.to_datetime(interactions["event_timestamp"], utc=True)
    first = ts.groupby(interactions["author_id"].astype(str)).min()
    cutoff = utc_timestamp(T)
    return np.array(sorted(first.index[first >= cutoff]), dtype=object)


__all__ = [
    "AlignmentConfig",
    "AlignmentReport",
    "IdAdapter",
    "author_content",
    "cold_author_ids",
    "fit_id_adapter",
]
