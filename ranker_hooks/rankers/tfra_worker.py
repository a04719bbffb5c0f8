"""TFRA ranker worker: runs inside the TFRA environment (``.venv-tfra``), driven through files.

TensorFlow Recommenders-Addons 0.8.1 pins tensorflow 2.16.2, numpy<2 and protobuf<5, so it cannot
share a process with the main environment (feast, numpy 2). :mod:`ranker_hooks.rankers.tfra_ranker` runs
this file as a script with the TFRA environment's python; it imports only the standard library,
numpy and tensorflow/TFRA (never ``mspa_features``, which that environment lacks).

The model is a standard CTR ranker: dynamic-embedding (TFRA ``BasicEmbedding``) tables for user
and author keys, an optional mean-pooled dynamic table for hashed tokens (0 = padding), a dense
tower over the injected features, and an MLP head. Key 0 is the OOV key (the driver maps ids it
never registered to it) and token padding: it always reads a zero row, masked in the model, so an
unseen id never gets the initializer's random value. Other keys start from a seeded normal:
all-zero tables would give an IDs-only model zero gradients (relu'(0) = 0), so it never learns.

Model folder (written by the driver and this worker):
    model.json        hyper-parameters and input widths the model is built from (driver-written)
    ckpt/model.*      TF checkpoint: dense weights, the dynamic tables and optimizer state

Commands (all exchange numpy ``.npz`` files):
    fit      --model-dir D --data X.npz --stats S.json [--warm-start]
    predict  --model-dir D --data X.npz --out P.npz
    export   --model-dir D --kind user|author --out E.npz
    upsert   --model-dir D --kind user|author --table E.npz

Data ``.npz``: ``user_keys``/``author_keys`` int64 ``(n,)``, ``dense`` float32 ``(n, d)``,
optional ``tokens`` int64 ``(n, t)``, ``labels`` float32 ``(n,)`` (fit only). Table ``.npz``:
``keys`` int64 ``(k,)``, ``values`` float32 ``(k, dim)``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Before tensorflow is imported: TFRA 0.8.1 builds on Keras 2 (tf-keras), and TF's C++ start-up
# chatter would bury a real error in the driver's report.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

KINDS = ("user", "author")
CKPT = "ckpt/model"


def _setup_tf(cfg: dict):
    """Import tensorflow/TFRA, seed everything and pin the thread pools (shared CPU machines)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    import tensorflow_recommenders_addons.dynamic_embedding as de

    tf.config.threading.set_intra_op_parallelism_threads(cfg["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(cfg["threads"])
    tf.keras.utils.set_random_seed(cfg["seed"])
    return tf, de


def _build(tf, de, cfg: dict):
    """The model and its optimizer, rebuilt from code (keras load_model loses the table API)."""

    def table(name: str, dim: int, offset: int):
        init = tf.keras.initializers.RandomNormal(stddev=0.05, seed=cfg["seed"] * 31 + offset)
        return de.keras.layers.BasicEmbedding(dim, key_dtype=tf.int64, initializer=init, name=name)

    def lookup(layer, keys):
        emb = layer(keys)  # keys.shape + (dim,)
        return emb * tf.cast(tf.not_equal(keys, 0), emb.dtype)[..., None]  # key 0 -> zero row

    class CtrModel(tf.keras.Model):
        def __init__(self) -> None:
            super().__init__(name="tfra_ctr")
            self.user_table = table("user_table", cfg["id_dim"], 1)
            self.author_table = table("author_table", cfg["id_dim"], 2)
            self.token_table = table("token_table", cfg["token_dim"], 3) if cfg["tokens"] else None
            self.dense_tower = (
                tf.keras.layers.Dense(cfg["dense_dim"], activation="relu", name="dense_tower")
                if cfg["n_dense"]
                else None
            )
            self.head = [
                tf.keras.layers.Dense(width, activation="relu", name=f"head_{i}")
                for i, width in enumerate(cfg["hidden"])
            ]
            self.head_out = tf.keras.layers.Dense(1, name="logit")

        def call(self, inputs, training=False):
            parts = [
                lookup(self.user_table, inputs["user"]),
                lookup(self.author_table, inputs["author"]),
            ]
            if self.token_table is not None:
                tok = inputs["tokens"]  # (n, t)
                emb = lookup(self.token_table, tok)  # (n, t, token_dim), padding rows zero
                count = tf.reduce_sum(tf.cast(tf.not_equal(tok, 0), emb.dtype), axis=1)  # (n,)
                parts.append(tf.reduce_sum(emb, axis=1) / tf.maximum(count, 1.0)[:, None])
            if self.dense_tower is not None:
                parts.append(self.dense_tower(inputs["dense"]))  # (n, hidden)
            h = tf.concat(parts, axis=1)  # (n, 2 * id_dim [+ token_dim] [+ dense_dim])
            for layer in self.head:
                h = layer(h)
            return self.head_out(h)[:, 0]  # (n,) logits

    model = CtrModel()
    optimizer = de.DynamicEmbeddingOptimizer(tf.keras.optimizers.Adam(learning_rate=cfg["lr"]))
    return model, optimizer


def _inputs(tf, data, cfg: dict) -> dict:
    n = len(data["user_keys"])
    out = {
        "user": tf.constant(data["user_keys"], tf.int64),
        "author": tf.constant(data["author_keys"], tf.int64),
        "dense": tf.constant(data["dense"].reshape(n, cfg["n_dense"]), tf.float32),
    }
    if cfg["tokens"]:
        out["tokens"] = tf.constant(data["tokens"], tf.int64)
    return out


def _checkpoint(tf, model, optimizer):
    return tf.train.Checkpoint(model=model, optimizer=optimizer)


def _load(model_dir: Path, *, restore: bool = True):
    cfg = json.loads((model_dir / "model.json").read_text())
    tf, de = _setup_tf(cfg)
    model, optimizer = _build(tf, de, cfg)
    # Create every variable before restoring: a checkpoint written while some restorations are
    # still deferred (layers or Adam slots not built yet) silently drops their values, which is
    # what an export/upsert call that never trains would do. Inference lookups insert no keys.
    dummy = {
        "user": tf.zeros([1], tf.int64),
        "author": tf.zeros([1], tf.int64),
        "dense": tf.zeros([1, cfg["n_dense"]], tf.float32),
        "tokens": tf.zeros([1, 1], tf.int64),
    }
    model(dummy, training=False)
    optimizer.build(model.trainable_variables)
    ckpt = _checkpoint(tf, model, optimizer)
    if restore:
        if not (model_dir / (CKPT + ".index")).exists():
            raise SystemExit(f"no checkpoint in {model_dir}: fit the model first")
        # Partial: the tables' per-step lookup buffers (shadow variables) hold no state.
        ckpt.read(str(model_dir / CKPT)).expect_partial()
    return tf, cfg, model, optimizer, ckpt


def _save(ckpt, model_dir: Path) -> None:
    (model_dir / "ckpt").mkdir(exist_ok=True)
    ckpt.write(str(model_dir / CKPT))


def _layer(model, kind: str):
    return {"user": model.user_table, "author": model.author_table}[kind]


def cmd_fit(args) -> None:
    model_dir = Path(args.model_dir)
    tf, cfg, model, optimizer, ckpt = _load(model_dir, restore=args.warm_start)
    data = dict(np.load(args.data))
    inputs = _inputs(tf, data, cfg)
    labels = tf.constant(data["labels"], tf.float32)
    n = len(data["labels"])
    ds = (
        tf.data.Dataset.from_tensor_slices((inputs, labels))
        .shuffle(n, seed=cfg["seed"], reshuffle_each_iteration=True)
        .batch(cfg["batch_size"])
    )
    loss_fn = tf.keras.losses.BinaryCrossentropy(from_logits=True)

    # A plain training step traced without AutoGraph: Keras' fit() runs AutoGraph over TFRA's
    # Python internals, which costs about a minute per trace on a small CPU machine.
    @tf.function(autograph=False, reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        variables = model.trainable_variables  # includes the tables' shadow (TrainableWrapper)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    start = time.perf_counter()
    losses = []
    for _ in range(cfg["epochs"]):
        total = 0.0
        for x, y in ds:
            total += float(train_step(x, y)) * int(y.shape[0])
        losses.append(total / n)  # row-weighted mean loss of the epoch
    seconds = time.perf_counter() - start
    _save(ckpt, model_dir)
    stats = {
        "loss": losses[-1],
        "loss_first_epoch": losses[0],
        "epochs": float(len(losses)),
        "rows": float(n),
        "seconds": seconds,
    }
    Path(args.stats).write_text(json.dumps(stats))


def cmd_predict(args) -> None:
    model_dir = Path(args.model_dir)
    tf, cfg, model, _, _ = _load(model_dir)
    data = dict(np.load(args.data))
    inputs = _inputs(tf, data, cfg)
    n = len(data["user_keys"])
    probs = []
    for lo in range(0, n, cfg["predict_batch_size"]):
        batch = {k: v[lo : lo + cfg["predict_batch_size"]] for k, v in inputs.items()}
        probs.append(tf.sigmoid(model(batch, training=False)).numpy())
    out = np.concatenate(probs) if probs else np.zeros(0, np.float32)
    np.savez(args.out, probs=out.astype(np.float32))


def cmd_export(args) -> None:
    _, _, model, _, _ = _load(Path(args.model_dir))
    keys, values = _layer(model, args.kind).params.export()
    keys, values = keys.numpy(), values.numpy()
    order = np.argsort(keys, kind="stable")  # the table's own order is an implementation detail
    np.savez(args.out, keys=keys[order].astype(np.int64), values=values[order].astype(np.float32))


def cmd_upsert(args) -> None:
    model_dir = Path(args.model_dir)
    tf, cfg, model, _, ckpt = _load(model_dir)
    table = np.load(args.table)
    keys, values = table["keys"].astype(np.int64), table["values"].astype(np.float32)
    if values.ndim != 2 or values.shape[1] != cfg["id_dim"]:
        raise SystemExit(
            f"table values have shape {values.shape}, the model's id_dim is {cfg['id_dim']}"
        )
    # Overwrite exactly these rows (adding new keys); every other row and weight stays as it is.
    _layer(model, args.kind).params.upsert(tf.constant(keys), tf.constant(values))
    _save(ckpt, model_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--warm-start", action="store_true")
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("predict")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_predict)
    for name, func, extra in (("export", cmd_export, "--out"), ("upsert", cmd_upsert, "--table")):
        p = sub.add_parser(name)
        p.add_argument("--model-dir", required=True)
        p.add_argument("--kind", required=True, choices=KINDS)
        p.add_argument(extra, required=True)
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
