"""The default ranker backend: a DCN-v2 CTR model in torch, seeded and deterministic on CPU.

Inputs per row: a user ID embedding, an author ID embedding, the dense injected features
(standardised with statistics frozen at the first fit) and, when present, hashed text tokens
pooled by an ``EmbeddingBag``. They are concatenated into ``x0`` and fed to a DCN-v2 cross
network and a deep MLP in parallel; one linear layer on both outputs gives the logit.

Several binary tasks (click, gift, ...) share that bottom: labels of shape ``(n, T)`` give the
output layer ``T`` rows, one logit head per task, trained on the (weighted) sum of the tasks'
binary cross-entropies; :meth:`TorchRanker.predict` then returns ``(n, T)``. Labels of shape
``(n,)`` are the single-task model, unchanged: one head, ``(n,)`` probabilities.

ID vocabularies grow: a fit or :meth:`TorchRanker.load_id_embeddings` meeting new ids appends
rows and keeps the old ones (what the LIS swap and warm-started ``M_{T+n}`` need). Row 0 of each
table is the OOV row: unseen ids at predict time read it.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mspa_features.errors import (
    InputMismatchError,
    InvalidValueError,
    NotFittedError,
    RankerInputError,
    UnknownNameError,
)
from ranker_hooks.rankers.base import IdEmbeddings, IdKind, Ranker, RankerData

_KINDS: tuple[IdKind, ...] = ("user", "author")


@dataclass
class TorchRankerConfig:
    """Hyper-parameters of :class:`TorchRanker`."""

    id_dim: int = field(default=16, metadata={"help": "ID embedding size (user and author)"})
    dense_dim: int = field(default=16, metadata={"help": "projection size of the dense tower"})
    token_dim: int = field(default=8, metadata={"help": "hashed-token embedding size"})
    token_buckets: int = field(
        default=4096, metadata={"help": "hashed-token vocabulary (ids >= this are folded in)"}
    )
    cross_layers: int = field(default=2, metadata={"help": "DCN-v2 cross layers"})
    hidden: tuple[int, ...] = field(default=(64, 32), metadata={"help": "deep MLP widths"})
    epochs: int = field(default=3, metadata={"help": "passes over the training rows per fit"})
    batch_size: int = field(default=1024, metadata={"help": "rows per optimiser step"})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "Adam weight decay"})
    seed: int = field(default=0, metadata={"help": "seeds init and shuffling"})
    threads: int = field(default=1, metadata={"help": "torch intra-op threads while training"})
    task_weights: tuple[float, ...] = field(
        default=(),
        metadata={
            "help": "loss weight per task, for (n, T) labels (empty: every task weighs 1); "
            "its length must be T"
        },
    )

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        self.task_weights = tuple(float(w) for w in self.task_weights)
        if any(not w > 0 for w in self.task_weights):
            raise InvalidValueError(
                "task_weights", self.task_weights, "positive numbers", record="TorchRankerConfig"
            )
        positive = {
            "id_dim": self.id_dim,
            "dense_dim": self.dense_dim,
            "token_dim": self.token_dim,
            "token_buckets": self.token_buckets,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "threads": self.threads,
        }
        bad = {k: v for k, v in positive.items() if int(v) < 1}
        if bad:
            raise InvalidValueError(", ".join(bad), bad, ">= 1", record="TorchRankerConfig")
        if self.cross_layers < 0 or any(h < 1 for h in self.hidden):
            raise InvalidValueError(
                "cross_layers and hidden",
                {"cross_layers": self.cross_layers, "hidden": self.hidden},
                "cross_layers >= 0 and hidden widths >= 1",
                record="TorchRankerConfig",
            )
        if not self.lr > 0 or self.weight_decay < 0:
            raise InvalidValueError(
                "lr and weight_decay",
                {"lr": self.lr, "weight_decay": self.weight_decay},
                "lr > 0 and weight_decay >= 0",
                record="TorchRankerConfig",
            )


def _build_module(
    cfg: TorchRankerConfig,
    n_users: int,
    n_authors: int,
    n_dense: int,
    tokens: bool,
    n_tasks: int | None = None,
):
    """The DCN-v2 module; ``n_tasks`` None: one head, ``(B,)`` logits; else ``(B, n_tasks)``."""
    import torch
    from torch import nn

    class DCNv2(nn.Module):
        """x0 = [user_e | author_e | dense_proj | token_bag]; cross and deep towers in parallel."""

        def __init__(self) -> None:
            super().__init__()
            self.user = nn.Embedding(n_users + 1, cfg.id_dim)  # row 0: OOV
            self.author = nn.Embedding(n_authors + 1, cfg.id_dim)
            for emb in (self.user, self.author):
                nn.init.normal_(emb.weight, std=0.01)
            width = 2 * cfg.id_dim
            self.dense = None
            if n_dense:
                self.dense = nn.Sequential(nn.Linear(n_dense, cfg.dense_dim), nn.ReLU())
                width += cfg.dense_dim
            self.tokens = None
            if tokens:
                self.tokens = nn.EmbeddingBag(
                    cfg.token_buckets, cfg.token_dim, mode="mean", padding_idx=0
                )
                width += cfg.token_dim
            self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(cfg.cross_layers))
            layers: list[nn.Module] = []
            prev = width
            for h in cfg.hidden:
                layers += [nn.Linear(prev, h), nn.ReLU()]
                prev = h
            self.deep = nn.Sequential(*layers)
            # One output row per task: each task's head reads the shared bottom. A single
            # task keeps exactly the one-output layer (same init, same weights as before).
            self.head = nn.Linear(width + prev, n_tasks or 1)

        def forward(self, u, a, dense, tok):  # (B,), (B,), (B, d), (B, t) -> (B,) | (B, T)
            parts = [self.user(u), self.author(a)]  # (B, id_dim) each
            if self.dense is not None:
                parts.append(self.dense(dense))  # (B, dense_dim)
            if self.tokens is not None:
                parts.append(self.tokens(tok))  # (B, token_dim); padding 0 ignored
            x0 = torch.cat(parts, dim=1)  # (B, width)
            x = x0
            for layer in self.cross:
                x = x0 * layer(x) + x  # DCN-v2: x_{l+1} = x0 ⊙ (W x_l + b) + x_l
            logits = self.head(torch.cat([x, self.deep(x0)], dim=1))  # (B, T or 1)
            return logits if n_tasks is not None else logits.squeeze(1)

    return DCNv2()


def _column_stats(dense: np.ndarray, chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (constant columns get std 1), float32.

    Accumulated in float64 over row chunks: a float64 copy of 100k x 770 features would cost
    more memory than the model and data together.
    """
    n, d = dense.shape
    total, total_sq = np.zeros(d), np.zeros(d)
    for s in range(0, n, chunk):
        block = np.asarray(dense[s : s + chunk], dtype=np.float64)  # (<=chunk, d)
        total += block.sum(axis=0)
        total_sq += np.square(block).sum(axis=0)
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - np.square(mean), 0.0))
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def _n_tasks(labels: np.ndarray | None) -> int | None:
    """None for ``(n,)`` labels (the single-task model), else the ``T`` of ``(n, T)``."""
    if labels is None or np.ndim(labels) == 1:
        return None
    if np.ndim(labels) != 2 or np.shape(labels)[1] < 1:
        raise RankerInputError(
            "TorchRanker", f"labels must be (n,) or (n, T), got {np.shape(labels)}", field="labels"
        )
    return int(np.shape(labels)[1])


def _loss(n_tasks: int | None, weights: tuple[float, ...]):
    """Binary cross-entropy: the plain mean for one task; for ``(B, T)`` logits the sum over
    tasks of each task's mean BCE, weighted by ``weights`` (default 1 each)."""
    import torch

    bce = torch.nn.BCEWithLogitsLoss()
    if n_tasks is None:
        return bce
    w = torch.tensor(weights or (1.0,) * n_tasks, dtype=torch.float32)  # (T,)
    per_row = torch.nn.BCEWithLogitsLoss(reduction="none")

    def loss(logits, y):  # (B, T), (B, T) -> ()
        return (per_row(logits, y).mean(dim=0) * w).sum()

    return loss


@contextmanager
def _torch_settings(threads: int):
    """Fix threads and deterministic algorithms for the block, restoring the caller's settings."""
    import torch

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


class TorchRanker(Ranker):
    """DCN-v2 CTR ranker (see module docstring).

    Args:
        config: hyper-parameters; default :class:`TorchRankerConfig()`.
    """

    def __init__(self, config: TorchRankerConfig | None = None, **overrides: Any) -> None:
        self.config = config or TorchRankerConfig(**overrides)
        self.vocab: dict[IdKind, dict[str, int]] = {"user": {}, "author": {}}
        self.dense_names: list[str] | None = None
        self.uses_tokens: bool | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._module: Any = None
        self._fits = 0
        # None: trained on (n,) labels (one task); else the T of (n, T) labels.
        self.n_tasks: int | None = None

    # ------------------------------------------------------------------ helpers

    def _check_schema(self, data: RankerData, *, labels: bool = False) -> None:
        if self.dense_names is None:
            raise NotFittedError("TorchRanker")
        if list(data.dense_names) != self.dense_names:
            raise RankerInputError(
                "TorchRanker",
                f"dense columns differ from training: got {data.dense_names[:4]}... "
                f"({len(data.dense_names)}), trained on {self.dense_names[:4]}... "
                f"({len(self.dense_names)})",
                field="dense_names",
            )
        if labels and data.labels is not None and _n_tasks(data.labels) != self.n_tasks:
            raise RankerInputError(
                "TorchRanker",
                f"labels of shape {np.shape(data.labels)} for a model of "
                f"{self.n_tasks or 1} task(s) trained on "
                f"{'(n,)' if self.n_tasks is None else f'(n, {self.n_tasks})'} labels",
                field="labels",
            )
        if (data.tokens is not None) != self.uses_tokens:
            raise RankerInputError(
                "TorchRanker",
                f"trained {'with' if self.uses_tokens else 'without'} tokens, "
                f"data {'has' if data.tokens is not None else 'has no'} tokens",
                field="tokens",
            )

    def _grow(self, kind: IdKind, ids: np.ndarray) -> None:
        """Append unseen ``ids`` to the ``kind`` vocabulary and table; old rows are kept."""
        import torch

        vocab = self.vocab[kind]
        new = [i for i in dict.fromkeys(str(x) for x in ids) if i not in vocab]
        if not new:
            return
        for i in new:
            vocab[i] = len(vocab) + 1
        if self._module is None:
            return
        emb = getattr(self._module, kind)
        old = emb.weight.data
        gen = torch.Generator().manual_seed(self.config.seed * 7919 + len(vocab) + self._fits)
        extra = torch.randn(len(new), old.shape[1], generator=gen) * 0.01
        emb.weight = torch.nn.Parameter(torch.cat([old, extra], dim=0))
        emb.num_embeddings = emb.weight.shape[0]

    def _index(self, kind: IdKind, ids: np.ndarray) -> np.ndarray:
        vocab = self.vocab[kind]
        return np.fromiter((vocab.get(str(x), 0) for x in ids), dtype=np.int64, count=len(ids))

    def _tensors(self, data: RankerData) -> tuple[Any, Any, Any, Any]:
        import torch

        u = torch.from_numpy(self._index("user", data.user_ids))
        a = torch.from_numpy(self._index("author", data.author_ids))
        dense = (np.asarray(data.dense, dtype=np.float32) - self._mean) / self._std
        d = torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))
        if data.tokens is not None:
            tok = np.asarray(data.tokens, dtype=np.int64)
            # Token ids beyond the table fold into it; 0 stays padding.
            tok = np.where(tok > 0, (tok - 1) % (self.config.token_buckets - 1) + 1, 0)
            t = torch.from_numpy(tok)
        else:
            t = torch.zeros((len(data), 1), dtype=torch.int64)
        return u, a, d, t

    # ------------------------------------------------------------------ Ranker API

    def fit(self, data: RankerData, *, warm_start: bool = False) -> dict[str, float]:
        """Train with Adam on binary cross-entropy; ``warm_start`` keeps weights and vocabularies.

        A warm start restarts the optimiser state (Adam moments) but not the weights; new ids
        get fresh rows. Raises ``ValueError`` without labels or with a different dense schema.
        """
        import torch

        if data.labels is None:
            raise RankerInputError("TorchRanker.fit", "data has no labels", field="labels")
        if len(data) == 0:
            raise RankerInputError("TorchRanker.fit", "data has no rows")
        cfg = self.config
        n_tasks = _n_tasks(data.labels)
        if cfg.task_weights and len(cfg.task_weights) != (n_tasks or 1):
            raise InputMismatchError(
                "must agree (one weight per task)",
                {"task_weights": len(cfg.task_weights), "label columns": n_tasks or 1},
                record="TorchRanker.fit",
            )
        t0 = time.perf_counter()
        with _torch_settings(cfg.threads):
            if not warm_start or self._module is None:
                self.vocab = {"user": {}, "author": {}}
                self._fits = 0
                self.n_tasks = n_tasks
                self.dense_names = list(data.dense_names)
                self.uses_tokens = data.tokens is not None
                self._grow("user", data.user_ids)
                self._grow("author", data.author_ids)
                self._mean, self._std = _column_stats(data.dense)
                # Seed a forked RNG: the init is reproducible without touching the caller's.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(cfg.seed)
                    self._module = _build_module(
                        cfg,
                        len(self.vocab["user"]),
                        len(self.vocab["author"]),
                        len(self.dense_names),
                        bool(self.uses_tokens),
                        self.n_tasks,
                    )
            else:
                self._check_schema(data, labels=True)
                self._grow("user", data.user_ids)
                self._grow("author", data.author_ids)
            self._fits += 1
            u, a, d, t = self._tensors(data)
            y = torch.from_numpy(np.asarray(data.labels, dtype=np.float32))
            model = self._module
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            loss_fn = _loss(self.n_tasks, cfg.task_weights)
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self._fits)
            n = len(data)
            last = float("nan")
            for _ in range(cfg.epochs):
                order = torch.randperm(n, generator=gen)
                total, count = 0.0, 0
                for start in range(0, n, cfg.batch_size):
                    idx = order[start : start + cfg.batch_size]
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(u[idx], a[idx], d[idx], t[idx]), y[idx])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                last = total / count
            model.eval()
        return {
            "train_loss": last,
            "epochs": float(cfg.epochs),
            "rows": float(n),
            "seconds": time.perf_counter() - t0,
        }

    def predict(self, data: RankerData) -> np.ndarray:
        """Probabilities: ``(n,)`` for a single-task model, ``(n, T)`` for ``T`` tasks."""
        import torch

        self._check_schema(data)
        if len(data) == 0:
            return np.zeros(0 if self.n_tasks is None else (0, self.n_tasks), dtype=np.float64)
        u, a, d, t = self._tensors(data)
        out = []
        with _torch_settings(self.config.threads), torch.no_grad():
            self._module.eval()
            step = max(self.config.batch_size, 8192)
            for s in range(0, len(data), step):
                logits = self._module(
                    u[s : s + step], a[s : s + step], d[s : s + step], t[s : s + step]
                )
                out.append(torch.sigmoid(logits.double()).numpy())
        return np.concatenate(out)

    def export_id_embeddings(self, kind: IdKind) -> IdEmbeddings:
        if kind not in _KINDS:
            raise UnknownNameError("id kind", kind, _KINDS)
        if self._module is None:
            raise NotFittedError("TorchRanker", "export id embeddings")
        vocab = self.vocab[kind]
        ids = np.array(list(vocab), dtype=object)
        weight = getattr(self._module, kind).weight.detach().numpy()
        rows = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
        return IdEmbeddings(kind=kind, ids=ids, matrix=weight[rows].astype(np.float32).copy())

    def load_id_embeddings(self, table: IdEmbeddings) -> None:
        import torch

        if self._module is None:
            raise NotFittedError("TorchRanker", "load id embeddings")
        if table.kind not in _KINDS:
            raise UnknownNameError("id kind", table.kind, _KINDS)
        if table.matrix.shape[1] != self.config.id_dim:
            raise InputMismatchError(
                "must be equal",
                {"table dim": table.matrix.shape[1], "model id_dim": self.config.id_dim},
                record=f"TorchRanker.load_id_embeddings({table.kind})",
            )
        self._grow(table.kind, table.ids)
        rows = torch.from_numpy(self._index(table.kind, table.ids))
        with torch.no_grad():
            getattr(self._module, table.kind).weight[rows] = torch.from_numpy(
                np.asarray(table.matrix, dtype=np.float32)
            )

    def save(self, path: Path) -> None:
        import torch

        if self._module is None:
            raise NotFittedError("TorchRanker", "save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "config": asdict(self.config),
            "vocab": self.vocab,
            "dense_names": self.dense_names,
            "uses_tokens": self.uses_tokens,
            "fits": self._fits,
            "n_tasks": self.n_tasks,
        }
        (path / "ranker.json").write_text(json.dumps(meta), encoding="utf-8")
        torch.save(
            {
                "state": self._module.state_dict(),
                "mean": torch.from_numpy(self._mean),
                "std": torch.from_numpy(self._std),
            },
            path / "weights.pt",
        )

    @classmethod
    def load(cls, path: Path) -> TorchRanker:
        import torch

        path = Path(path)
        meta = json.loads((path / "ranker.json").read_text(encoding="utf-8"))
        blob = torch.load(path / "weights.pt", weights_only=True)
        self = cls(TorchRankerConfig(**meta["config"]))
        self.vocab = {k: dict(v) for k, v in meta["vocab"].items()}
        self.dense_names = list(meta["dense_names"])
        self.uses_tokens = bool(meta["uses_tokens"])
        self._fits = int(meta["fits"])
        self.n_tasks = meta.get("n_tasks")  # absent: saved before multi-task, one task
        self._mean, self._std = blob["mean"].numpy(), blob["std"].numpy()
        self._module = _build_module(
            self.config,
            len(self.vocab["user"]),
            len(self.vocab["author"]),
            len(self.dense_names),
            self.uses_tokens,
            self.n_tasks,
        )
        self._module.load_state_dict(blob["state"])
        self._module.eval()
        return self


__all__ = ["TorchRanker", "TorchRankerConfig"]
