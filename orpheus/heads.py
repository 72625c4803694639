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

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from orpheus import embeddings, finetune
from orpheus.errors import OrpheusError
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


def _dataset(data: HeadData, batch: int, seed: int | None) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((data.x, data.y))
    if seed is not None:
        ds = ds.shuffle(len(data.x), seed=seed)
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


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
) -> finetune.Outcome:
    """Train a head on `source_name`'s cached embeddings into `runs/<run_id>` and register it.

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
    opts = TrainOptions(
        epochs=epochs or EPOCHS,
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
    run_dir = finetune.create(ws, run_id, source.recipe, index, labels, method)

    def model_fn() -> keras.Model:
        return build_head(kind, emb.dim, len(labels))

    trainer = Trainer(model_fn, len(labels), run_dir, opts, reporter=reporter)
    result = trainer.fit(
        _dataset(train, BATCH[level], seed),
        _dataset(valid, BATCH[level], None) if len(valid.x) else None,
    )
    if result.model_path is not None:
        head = keras.models.load_model(result.model_path, safe_mode=True, compile=False)
        finetune.save_model(compose(source.model, head), Path(result.model_path))
    finetune.register(
        ws,
        run_id,
        run_dir,
        method,
        result,
        inputs={"embeddings": embeddings.artifact_name(source.name)},
    )
    return finetune.Outcome(run_dir, result, reused)
