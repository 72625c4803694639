"""Fine-tuning: start from a pretrained tagger's weights, with a new output layer for this
workspace's labels, and train on the workspace's TFRecords. Also the run plumbing heads share.

`--freeze` chooses what stays fixed: `frontend` (musicnn's input BatchNorm and its timbral and
temporal convolutions: everything the `frontend` layer is computed from), `all-but-head`
(everything but the new output layer), or `none`. A frozen BatchNorm runs in inference mode, so
its statistics stay the pretrained ones.

The run takes the source model's recipe (`features.Recipe`), whatever the workspace config says:
for musicnn, 16 kHz log-mel with 96 mels, 187-frame (3 s) windows, no per-window normalisation;
the run records it, so `test` and `predict` feed the model what it was trained on. Records that
cannot give those features are refused with the command that builds matching ones.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from orpheus import embeddings
from orpheus.errors import OrpheusError
from orpheus.workspace import Workspace

FREEZE = ("frontend", "all-but-head", "none")
EPOCHS = 3
LEARNING_RATE = 1e-4  # a tenth of Adam's default: large steps would undo the pretraining


@dataclass
class Outcome:
    """A finished fine-tuning or head run: its folder, the trainer's result, and whether the
    embedding cache was reused (heads only)."""

    run_dir: Path
    result: Any  # training.TrainResult
    reused: bool = False


def workspace_labels(ws: Workspace) -> tuple[list[str], list[list[int]], dict]:
    """The workspace's labels (the `tags` config over the records' vocabulary), their
    vocabulary groups, and the records' index."""
    from orpheus.dataset import select_labels
    from orpheus.records import read_index

    index = read_index(ws.require(embeddings.RECORDS))
    labels, groups = select_labels(index["vocabulary"], index["popularity"], ws.config["tags"])
    return labels, groups, index


def create(
    ws: Workspace, run_id: str, recipe, index: dict, labels: list[str], method: dict
) -> Path:
    """The run folder, its config recording `recipe` (whatever the workspace config says)."""
    from orpheus import runs
    from orpheus.records import spec_of

    cfg = ws.config
    effective = {
        **cfg,
        "tfrecords": {**cfg["tfrecords"], **spec_of(index).params.to_dict()},
        "model-training": {**cfg["model-training"], "window_length": recipe.window_seconds},
        "frontend": recipe.frontend,
        "train": method,
    }
    return runs.create_run(
        runs.runs_dir(ws), run_id, config=effective, labels=labels, recipe=recipe
    )


def save_model(model: keras.Model, path: Path) -> None:
    """Save `model` to `path` (uncompiled, safe-mode loadable) through a temp file and a rename."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".model.") as tmp:
        staged = Path(tmp) / path.name
        model.save(staged)
        os.replace(staged, path)


def register(
    ws: Workspace, run_id: str, run_dir: Path, method: dict, result, inputs: dict[str, str]
) -> None:
    """Record the run in the manifest, from the records and the source it learnt from."""
    ws.register(
        f"run/{run_id}",
        run_dir,
        params={"frontend": "log-mel", **method},
        inputs={"tfrecords": embeddings.RECORDS, **inputs},
        summary={
            "epochs": result.epochs_done,
            "status": result.status,
            f"best {result.monitor}": None if result.best is None else round(result.best, 4),
        },
    )


def with_new_output(source: keras.Model, n_labels: int, freeze: str) -> keras.Model:
    """`source` with a fresh sigmoid `output` layer of `n_labels`, and `freeze` applied."""
    if freeze not in FREEZE:
        raise OrpheusError(f"unknown --freeze {freeze!r}", hint=", ".join(FREEZE))
    x = source.get_layer("output").input
    outputs = keras.layers.Dense(n_labels, activation="sigmoid", name="output")(x)
    model = keras.Model(source.input, outputs, name=source.name)
    if freeze == "all-but-head":
        for layer in model.layers:
            layer.trainable = layer.name == "output"
    elif freeze == "frontend":
        names = {layer.name for layer in model.layers}
        if "frontend" not in names:
            raise OrpheusError(
                f"model {source.name} has no `frontend` layer to freeze",
                hint="--freeze all-but-head or none",
            )
        frozen = keras.Model(model.input, model.get_layer("frontend").output)
        for layer in frozen.layers:
            layer.trainable = False
    return model


def finetune(
    ws: Workspace,
    init: str,
    *,
    freeze: str = "frontend",
    run_id: str,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    seed: int | None = None,
    reporter=None,
) -> Outcome:
    """Fine-tune `init` (a bundled model or a run) on the workspace's records into runs/<run_id>."""
    from orpheus import dataset
    from orpheus.records import read_index
    from orpheus.training import Trainer, TrainOptions

    if freeze not in FREEZE:
        raise OrpheusError(f"unknown --freeze {freeze!r}", hint=", ".join(FREEZE))

    source = embeddings.open_source(ws, init)
    records_dir = ws.require(embeddings.RECORDS)
    index = read_index(records_dir)
    embeddings.check(index, source.recipe, records_dir, source.name)
    mt = ws.settings.model_training
    seed = mt.seed if seed is None else seed
    opts = TrainOptions(
        epochs=epochs or EPOCHS,
        steps_per_epoch=steps_per_epoch or mt.iterations,
        optimizer={"name": "Adam", "learning_rate": LEARNING_RATE},
        seed=seed,
    )
    splits = ("train", "valid") if index["counts"].get("valid") else ("train",)
    dsets, labels = dataset.datasets(
        records_dir,
        ws.config,
        splits,
        seed=seed,
        repeat=opts.steps_per_epoch is not None,
        recipe=source.recipe,
    )
    method = {
        "method": "fine-tune",
        "init": source.name,
        "freeze": freeze,
        "epochs": opts.epochs,
        "steps_per_epoch": opts.steps_per_epoch,
        "seed": seed,
    }
    run_dir = create(ws, run_id, source.recipe, index, labels, method)

    def model_fn() -> keras.Model:
        return with_new_output(source.build(), len(labels), freeze)

    trainer = Trainer(model_fn, len(labels), run_dir, opts, reporter=reporter)
    result = trainer.fit(dsets["train"], dsets.get("valid"))
    register(ws, run_id, run_dir, method, result, inputs=dict(source.inputs))
    return Outcome(run_dir, result)
