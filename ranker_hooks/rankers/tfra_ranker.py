"""The TFRA ranker backend: TensorFlow Recommenders-Addons dynamic-embedding ID tables.

TFRA 0.8.1 needs tensorflow 2.16.2, numpy<2 and protobuf<5, which cannot share an environment
with feast 0.67 (STACK_NOTES). So :class:`TfraRanker` lives in the main environment and drives
:mod:`ranker_hooks.rankers.tfra_worker` in the TFRA environment (``scripts/setup_tfra.sh``) as a
subprocess, exchanging ``.npz`` files through its model folder. The worker's model is a standard
CTR ranker: dynamic tables for user and author ids, a mean-pooled dynamic table for hashed tokens,
a dense tower over the injected features and an MLP head.

String ids become int64 table keys through a stable hash (BLAKE2b, 8 bytes, never 0),
independent of process and machine; the driver keeps the id -> key registry so exported tables
carry string ids. Ids the model never registered (by a fit or ``load_id_embeddings``) are sent as
key 0, the OOV key, which reads a zero row.

Model folder (what :meth:`TfraRanker.save` writes and :meth:`TfraRanker.load` reads):
    ranker.json               driver config, dense schema, fit count
    model.json                what the worker builds the model from
    ckpt/model.*              TF checkpoint: dense weights, dynamic tables, Adam state
    standardize.npz           dense mean/std frozen at the first fit
    ids_user.npz, ids_author.npz   id -> key registries
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from mspa_features.config_base import StrictModel
from mspa_features.errors import (
    DataError,
    IncompatibleSettingsError,
    InvalidValueError,
    NotFittedError,
    RankerInputError,
    TfraEnvironmentError,
    TfraWorkerError,
    UnknownNameError,
)
from ranker_hooks.rankers.base import IdEmbeddings, IdKind, Ranker, RankerData

_KINDS: tuple[IdKind, ...] = ("user", "author")
_WORKER = Path(__file__).with_name("tfra_worker.py")
_REPO = Path(__file__).resolve().parents[2]
PYTHON_ENV_VAR = "MSPA_TFRA_PYTHON"


class TfraRankerConfig(StrictModel):
    """Hyper-parameters of :class:`TfraRanker` (names shared with the torch backend)."""

    id_dim: int = Field(16, ge=1, description="ID embedding size (user and author tables)")
    dense_dim: int = Field(16, ge=1, description="width of the dense tower")
    token_dim: int = Field(8, ge=1, description="hashed-token embedding size")
    hidden: tuple[int, ...] = Field((64, 32), description="MLP head widths")
    epochs: int = Field(3, ge=1, description="passes over the training rows per fit")
    batch_size: int = Field(1024, ge=1, description="rows per optimiser step")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate")
    seed: int = Field(0, ge=0, description="seeds init and shuffling")
    threads: int = Field(1, ge=1, description="TensorFlow intra/inter-op threads in the worker")
    python: str | None = Field(
        None,
        description=f"TFRA environment's python; default ${PYTHON_ENV_VAR}, else "
        "<repo>/.venv-tfra/bin/python",
    )
    timeout_s: float = Field(3600, gt=0, description="limit for one worker call")
    task_weights: tuple[float, ...] = Field(
        (), description="loss weight per task; the TFRA worker learns one task only"
    )

    def model_post_init(self, _context: Any) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise InvalidValueError(
                "hidden", self.hidden, "at least one width, each >= 1", record="TfraRankerConfig"
            )
        if len(self.task_weights) > 1:
            # The worker protocol carries one label column and one head; a multi-task TFRA
            # model is not built yet, so refuse rather than train on the first task alone.
            raise IncompatibleSettingsError(
                {"ranker.type": "tfra", "tasks": len(self.task_weights)},
                "the TFRA ranker learns a single task",
                fix="use ranker type 'torch' for several tasks, or configure one task",
            )


def id_keys(ids: np.ndarray) -> np.ndarray:
    """Stable int64 table keys for string ids (BLAKE2b-64; same on every process and machine).

    Never 0: key 0 is the OOV key.
    """
    keys = np.fromiter(
        (
            int.from_bytes(
                hashlib.blake2b(str(i).encode("utf-8"), digest_size=8).digest(),
                "little",
                signed=True,
            )
            for i in ids
        ),
        dtype=np.int64,
        count=len(ids),
    )
    keys[keys == 0] = 1
    return keys


def _resolve_python(configured: str | None) -> Path:
    if configured:
        path, source = Path(configured), "config 'python'"
    elif os.environ.get(PYTHON_ENV_VAR):
        path, source = Path(os.environ[PYTHON_ENV_VAR]), PYTHON_ENV_VAR
    else:
        path, source = _REPO / ".venv-tfra" / "bin" / "python", "the default location"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise TfraEnvironmentError(path, source)
    return path


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # The worker runs in another environment: nothing of the main one may leak into its imports.
    for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(key, None)
    env.update(
        TF_USE_LEGACY_KERAS="1",  # TFRA 0.8.1 builds on Keras 2 (tf-keras)
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONNOUSERSITE="1",
        PYTHONHASHSEED="0",
        # CPU only: deterministic, and the same results on machines with and without a GPU.
        CUDA_VISIBLE_DEVICES="",
    )
    return env


class TfraRanker(Ranker):
    """CTR ranker on TFRA dynamic-embedding tables, trained in the TFRA environment.

    ``fit(warm_start=True)`` continues from the current checkpoint (weights and Adam state);
    new ids are inserted into the tables. The TFRA environment is looked up at the first call
    that needs it, so configs validate on machines without it.

    Args:
        config: hyper-parameters; default :class:`TfraRankerConfig()`.
        **overrides: fields of :class:`TfraRankerConfig` when ``config`` is not given.

    Raises:
        pydantic.ValidationError: an unknown or invalid hyper-parameter (named).
    """

    def __init__(self, config: TfraRankerConfig | None = None, **overrides: Any) -> None:
        self.config = config or TfraRankerConfig(**overrides)
        # The working model folder; save() copies it, load() copies from it.
        self._tmp = tempfile.TemporaryDirectory(prefix="tfra-ranker-")
        self._dir = Path(self._tmp.name)
        self.dense_names: list[str] | None = None
        self.uses_tokens: bool | None = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._registry: dict[IdKind, dict[int, str]] = {"user": {}, "author": {}}
        self._fits = 0

    # ------------------------------------------------------------------ helpers

    @property
    def fitted(self) -> bool:
        return self._fits > 0

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError("TfraRanker")

    def _validate(self, data: RankerData, *, train: bool) -> None:
        name = "TfraRanker.fit" if train else "TfraRanker.predict"
        if train:
            if data.labels is None:
                raise RankerInputError(name, "data has no labels", field="labels")
            if len(data) == 0:
                raise RankerInputError(name, "data has no rows")
            labels = np.asarray(data.labels)
            if labels.ndim != 1:
                raise RankerInputError(
                    name,
                    f"labels of shape {labels.shape}: the TFRA ranker learns one task ((n,) "
                    "labels); several tasks need the torch ranker",
                    field="labels",
                )
            bad = np.flatnonzero((labels != 0) & (labels != 1))
            if bad.size:
                raise RankerInputError(
                    name, f"label {labels[bad[0]]!r} is not 0/1", record=int(bad[0]), field="labels"
                )
        dense = np.asarray(data.dense, dtype=np.float64)
        rows, cols = np.nonzero(~np.isfinite(dense))
        if rows.size:
            raise RankerInputError(
                name,
                f"value {dense[rows[0], cols[0]]} is not finite",
                record=int(rows[0]),
                field=f"dense[{data.dense_names[cols[0]]}]",
            )
        if data.tokens is not None:
            tokens = np.asarray(data.tokens)
            if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
                raise RankerInputError(
                    name, f"expected int (n, t), got {tokens.dtype} {tokens.shape}", field="tokens"
                )
            neg = np.argwhere(tokens < 0)
            if len(neg):
                raise RankerInputError(
                    name,
                    "token ids must be >= 0 (0 = padding)",
                    record=int(neg[0][0]),
                    field="tokens",
                )

    def _check_schema(self, data: RankerData) -> None:
        if list(data.dense_names) != self.dense_names:
            raise RankerInputError(
                "TfraRanker",
                f"dense columns differ from training: got {list(data.dense_names)[:4]}... "
                f"({len(data.dense_names)}), trained on {self.dense_names[:4]}... "
                f"({len(self.dense_names)})",
                field="dense_names",
            )
        if (data.tokens is not None) != self.uses_tokens:
            raise RankerInputError(
                "TfraRanker",
                f"trained {'with' if self.uses_tokens else 'without'} tokens, data "
                f"{'has' if data.tokens is not None else 'has no'} tokens",
                field="tokens",
            )

    def _register(self, kind: IdKind, ids: np.ndarray) -> np.ndarray:
        """Keys of ``ids``, adding unseen ids to the ``kind`` registry."""
        ids = np.asarray([str(i) for i in ids], dtype=object)
        keys = id_keys(ids)
        registry = self._registry[kind]
        for key, id_ in zip(keys.tolist(), ids.tolist(), strict=True):
            known = registry.setdefault(key, id_)
            if known != id_:  # 64-bit collision: never seen in practice, fatal if it happens
                raise RankerInputError(
                    "TfraRanker",
                    f"ids {known!r} and {id_!r} hash to the same key",
                    field=f"{kind}_ids",
                )
        return keys

    def _keys(self, kind: IdKind, ids: np.ndarray) -> np.ndarray:
        """Table keys of ``ids``; ids not in the registry get the OOV key 0."""
        keys = id_keys(ids)
        registry = self._registry[kind]
        known = np.fromiter((k in registry for k in keys.tolist()), dtype=bool, count=len(keys))
        return np.where(known, keys, 0)

    def _data_file(self, data: RankerData, folder: Path, *, train: bool) -> Path:
        dense = (np.asarray(data.dense, dtype=np.float32) - self._mean) / self._std
        arrays = {
            "user_keys": self._keys("user", data.user_ids),
            "author_keys": self._keys("author", data.author_ids),
            "dense": np.ascontiguousarray(dense, dtype=np.float32),
        }
        if data.tokens is not None:
            arrays["tokens"] = np.asarray(data.tokens, dtype=np.int64)
        if train:
            arrays["labels"] = np.asarray(data.labels, dtype=np.float32)
        path = folder / "data.npz"
        np.savez(path, **arrays)
        return path

    def _run(self, command: str, *args: str) -> None:
        python = _resolve_python(self.config.python)
        argv = [str(python), str(_WORKER), command, "--model-dir", str(self._dir), *args]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=_worker_env(),
                timeout=self.config.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise TfraWorkerError(command, -1, f"timed out after {self.config.timeout_s} s") from e
        if proc.returncode != 0:
            raise TfraWorkerError(command, proc.returncode, proc.stderr)

    def _write_meta(self) -> None:
        cfg = self.config
        worker = {
            "id_dim": cfg.id_dim,
            "dense_dim": cfg.dense_dim,
            "token_dim": cfg.token_dim,
            "hidden": list(cfg.hidden),
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "threads": cfg.threads,
            "n_dense": len(self.dense_names),
            "tokens": bool(self.uses_tokens),
            "predict_batch_size": max(cfg.batch_size, 8192),
        }
        (self._dir / "model.json").write_text(json.dumps(worker), encoding="utf-8")
        meta = {
            # The python path is machine-specific: it is never written into a model folder.
            "config": self.config.model_dump(mode="json", exclude={"python"}),
            "dense_names": self.dense_names,
            "uses_tokens": self.uses_tokens,
            "fits": self._fits,
        }
        (self._dir / "ranker.json").write_text(json.dumps(meta), encoding="utf-8")
        np.savez(self._dir / "standardize.npz", mean=self._mean, std=self._std)
        for kind in _KINDS:
            reg = self._registry[kind]
            np.savez(
                self._dir / f"ids_{kind}.npz",
                keys=np.fromiter(reg.keys(), dtype=np.int64, count=len(reg)),
                ids=np.array(list(reg.values()), dtype=str),
            )

    # ------------------------------------------------------------------ Ranker API

    def fit(self, data: RankerData, *, warm_start: bool = False) -> dict[str, float]:
        """Train with Adam on binary cross-entropy in the TFRA worker.

        ``warm_start`` continues from the current weights, tables and Adam state (a cold fit
        starts a new model). Returns ``train_loss`` (last epoch), ``first_epoch_loss``,
        ``epochs``, ``rows`` and ``seconds``.

        Raises:
            RankerInputError: no labels or rows, a non-0/1 label, a non-finite dense value or a
                negative token (record and field named), or a different schema on warm start.
            TfraEnvironmentError: the TFRA environment is missing.
            TfraWorkerError: the worker failed.
        """
        self._validate(data, train=True)
        if warm_start and self.fitted:
            self._check_schema(data)
        else:
            for child in self._dir.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            self._registry = {"user": {}, "author": {}}
            self._fits = 0
            self.dense_names = list(data.dense_names)
            self.uses_tokens = data.tokens is not None
            dense = np.asarray(data.dense, dtype=np.float64)
            self._mean = dense.mean(axis=0).astype(np.float32)
            std = dense.std(axis=0).astype(np.float32)
            self._std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
        self._register("user", data.user_ids)
        self._register("author", data.author_ids)
        self._write_meta()
        with tempfile.TemporaryDirectory(prefix="tfra-io-") as io:
            stats_path = Path(io) / "stats.json"
            args = ["--data", str(self._data_file(data, Path(io), train=True))]
            args += ["--stats", str(stats_path)]
            self._run("fit", *args, *(["--warm-start"] if self.fitted else []))
            stats = json.loads(stats_path.read_text(encoding="utf-8"))
        self._fits += 1
        self._write_meta()
        return {
            "train_loss": stats["loss"],
            "first_epoch_loss": stats["loss_first_epoch"],
            "epochs": stats["epochs"],
            "rows": stats["rows"],
            "seconds": stats["seconds"],
        }

    def predict(self, data: RankerData) -> np.ndarray:
        self._require_fitted()
        self._check_schema(data)
        self._validate(data, train=False)
        if len(data) == 0:
            return np.zeros(0, dtype=np.float64)
        with tempfile.TemporaryDirectory(prefix="tfra-io-") as io:
            out = Path(io) / "probs.npz"
            self._run(
                "predict",
                "--data",
                str(self._data_file(data, Path(io), train=False)),
                "--out",
                str(out),
            )
            with np.load(out) as f:
                return f["probs"].astype(np.float64)

    def export_id_embeddings(self, kind: IdKind) -> IdEmbeddings:
        if kind not in _KINDS:
            raise UnknownNameError("id kind", kind, _KINDS)
        self._require_fitted()
        with tempfile.TemporaryDirectory(prefix="tfra-io-") as io:
            out = Path(io) / "table.npz"
            self._run("export", "--kind", kind, "--out", str(out))
            with np.load(out) as f:
                keys, values = f["keys"], f["values"]
        registry = self._registry[kind]
        unknown = [k for k in keys.tolist() if k not in registry]
        if unknown:
            raise DataError(
                f"TfraRanker {kind} table", f"{len(unknown)} keys are not in the id registry"
            )
        # Registry order (first seen first), like the torch backend's vocabulary order.
        row_of = {k: r for r, k in enumerate(keys.tolist())}
        order = [(id_, row_of[k]) for k, id_ in registry.items() if k in row_of]
        ids = np.array([id_ for id_, _ in order], dtype=object)
        rows = np.array([r for _, r in order], dtype=np.int64)
        return IdEmbeddings(kind=kind, ids=ids, matrix=values[rows].astype(np.float32))

    def load_id_embeddings(self, table: IdEmbeddings) -> None:
        self._require_fitted()
        if table.kind not in _KINDS:
            raise UnknownNameError("id kind", table.kind, _KINDS)
        name = f"TfraRanker.load_id_embeddings({table.kind})"
        matrix = np.asarray(table.matrix, dtype=np.float32)
        if matrix.shape[1] != self.config.id_dim:
            raise RankerInputError(
                name, f"dim {matrix.shape[1]} != model id_dim {self.config.id_dim}", field="matrix"
            )
        bad = np.argwhere(~np.isfinite(matrix))
        if len(bad):
            raise RankerInputError(
                name, "value is not finite", record=str(table.ids[bad[0][0]]), field="matrix"
            )
        keys = self._register(table.kind, table.ids)
        self._write_meta()
        with tempfile.TemporaryDirectory(prefix="tfra-io-") as io:
            path = Path(io) / "table.npz"
            np.savez(path, keys=keys, values=matrix)
            self._run("upsert", "--kind", table.kind, "--table", str(path))

    def save(self, path: Path) -> None:
        self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self._dir, path, dirs_exist_ok=True)

    @classmethod
    def load(cls, path: Path, *, python: str | None = None) -> TfraRanker:
        """Read a model folder written by :meth:`save` (a private copy; the folder is not
        modified). ``python`` overrides where the TFRA environment is (not saved)."""
        path = Path(path)
        meta = json.loads((path / "ranker.json").read_text(encoding="utf-8"))
        self = cls(TfraRankerConfig(**meta["config"], python=python))
        shutil.copytree(path, self._dir, dirs_exist_ok=True)
        self.dense_names = list(meta["dense_names"])
        self.uses_tokens = bool(meta["uses_tokens"])
        self._fits = int(meta["fits"])
        with np.load(path / "standardize.npz") as f:
            self._mean, self._std = f["mean"], f["std"]
        for kind in _KINDS:
            with np.load(path / f"ids_{kind}.npz") as f:
                self._registry[kind] = dict(zip(f["keys"].tolist(), f["ids"].tolist(), strict=True))
        return self


__all__ = ["PYTHON_ENV_VAR", "TfraRanker", "TfraRankerConfig", "id_keys"]
