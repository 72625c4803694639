"""Heads: small classifiers trained on a model's cached embeddings, then grafted onto it.

A head is a linear layer, or an MLP (one hidden ReLU layer with dropout), from the embedding
(`orpheus.embeddings`) to the workspace's labels, ending in the sigmoid layer named `output`.
It learns from window-level embeddings (each window carries its track's labels) or song-level
ones (the mean over a track's windows), in seconds on a CPU, because the costly model never runs
during training: its vectors come from the cache.

The run's `model.keras` is the composed model: the source model up to its penultimate layer with
the head on top (`compose`), so it eats the source's windows and recipe, and `test`, `predict
--model RUN`, `record` and `--embeddings` use it like any run (its embeddings are the input of
the head's `output` layer: musicnn's for a linear head, the hidden layer's for an MLP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from orpheus import embeddings, finetune
from orpheus.errors import OrpheusError
from orpheus.training.lifecycle import fit
from orpheus.workspace import Workspace

HEADS = ("linear", "mlp")
LEVELS = ("window", "song")
MLP_UNITS = 256
DROPOUT = 0.5
EPOCHS = 30
LEARNING_RATE = 1e-3
BATCH = {"window": 64, "song": 16}  # a song-level set is ~10x smaller than a window-level one


def build_head(kind: str, dim: int, n_labels: int) -> keras.Model:
    """The head alone: (batch, dim) embeddings -> (batch, n_labels) probabilities."""
    if kind not in HEADS:
        raise OrpheusError(f"unknown head {kind!r}", hint=" or ".join(HEADS))
    inputs = keras.Input((dim,), name="embedding")
    x = inputs
    if kind == "mlp":
        x = keras.layers.Dense(MLP_UNITS, activation="relu", name="head_hidden")(x)
        x = keras.layers.Dropout(DROPOUT, name="head_dropout")(x)
    outputs = keras.layers.Dense(n_labels, activation="sigmoid", name="output")(x)
    return keras.Model(inputs, outputs, name=f"{kind}_head")


def compose(source: keras.Model, head: keras.Model) -> keras.Model:
    """`source` up to the input of its `output` layer, then `head`'s layers (weights shared)."""
    x = source.get_layer("output").input
    for layer in head.layers[1:]:
        x = layer(x)
    return keras.Model(source.input, x, name=f"{source.name}_{head.name}")


@dataclass
class HeadData:
    """Inputs and 0/1 targets of one split, at window or song level."""

    x: np.ndarray
    y: np.ndarray


def head_data(
    emb: embeddings.Embeddings, groups: list[list[int]], split: str, level: str
) -> HeadData:
    """One split's (embedding, labels) pairs; tracks with none of the labels are left out,
    as the TFRecords pipeline leaves them out."""
    if level not in LEVELS:
        raise OrpheusError(f"unknown head level {level!r}", hint=" or ".join(LEVELS))
    select = np.zeros((emb.tags.shape[1], len(groups)), np.float32)
    for j, members in enumerate(groups):
        select[members, j] = 1.0
    y = np.minimum(emb.tags.astype(np.float32) @ select, 1.0)
    keep = (emb.splits == split) & (y.max(axis=1) > 0)
    if level == "song":
        return HeadData(emb.song_vectors()[keep], y[keep])
    windows = keep[emb.track]
    return HeadData(emb.vectors[windows], y[emb.track[windows]])


def _batches(data: HeadData, batch: int) -> tf.data.Dataset:
    """The validation split's batches, in order."""
    return tf.data.Dataset.from_tensor_slices((data.x, data.y)).batch(batch)


def _epochs(data: HeadData, batch: int, seed: int, first: int, epochs: int) -> tf.data.Dataset:
    """Epochs `first` .. `epochs - 1` of shuffled batches, made as they are drawn, each epoch in
    an order that depends on (seed, epoch) alone (a stateless draw): a resumed run's epoch is the
    one an uninterrupted run would have had."""
    x, y, n = tf.constant(data.x), tf.constant(data.y), len(data.x)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        key = tf.stack([tf.constant(seed, tf.int64), e])
        order = tf.argsort(tf.random.stateless_uniform([n], seed=key))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch)

    picked = tf.data.Dataset.range(first, max(epochs, first + 1)).flat_map(epoch)
    return picked.map(lambda i: (tf.gather(x, i), tf.gather(y, i))).prefetch(tf.data.AUTOTUNE)


def train_head(
    ws: Workspace,
    source_name: str,
    *,
    kind: str = "linear",
    level: str = "window",
    run_id: str,
    epochs: int | None = None,
    seed: int | None = None,
    reporter=None,
    resume: bool = False,
) -> finetune.Outcome:
    """Train a head on `source_name`'s cached embeddings into `runs/<run_id>` and register it;
    with `resume`, continue that run from its last checkpoint (`finetune.reopen` checks it).

    The cache is computed first if it is missing or stale (`embeddings.cached`).
    """
    from orpheus.training import Trainer, TrainOptions

    if kind not in HEADS:
        raise OrpheusError(f"unknown head {kind!r}", hint=" or ".join(HEADS))
    if level not in LEVELS:
        raise OrpheusError(f"unknown head level {level!r}", hint=" or ".join(LEVELS))
    source = embeddings.open_source(ws, source_name)
    emb, reused = embeddings.cached(ws, source)
    labels, groups, index = finetune.workspace_labels(ws)
    train, valid = (head_data(emb, groups, s, level) for s in ("train", "valid"))
    if not len(train.x):
        raise OrpheusError("the train split has no track with one of the selected tags")
    seed = ws.settings.model_training.seed if seed is None else seed
    batch = BATCH[level]
    opts = TrainOptions(
        epochs=epochs or EPOCHS,
        steps_per_epoch=math.ceil(len(train.x) / batch),  # one pass, the last batch short
        optimizer={"name": "Adam", "learning_rate": LEARNING_RATE},
        seed=seed,
    )
    method = {
        "method": "head",
        "head": kind,
        "level": level,
        "embeddings": source.name,
        "epochs": opts.epochs,
        "seed": seed,
    }
    run_dir, state = finetune.start(ws, run_id, source.recipe, index, labels, method, resume)

    def model_fn() -> keras.Model:
        return build_head(kind, emb.dim, len(labels))

    def export_as(head: keras.Model) -> keras.Model:
        return compose(source.model, head)  # model.keras tags audio, like every run's

    trainer = Trainer(model_fn, len(labels), run_dir, opts, reporter=reporter, export_as=export_as)
    done = int((state or {}).get("epoch", 0))
    result = fit(
        trainer,
        _epochs(train, batch, seed, done, opts.epochs),
        _batches(valid, batch) if len(valid.x) else None,
        state,
    )
    finetune.register(
        ws,
        run_id,
        run_dir,
        method,
        result,
        inputs={"embeddings": embeddings.artifact_name(source.name)},
    )
    return finetune.Outcome(run_dir, result, reused)
