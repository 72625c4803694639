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

`resume` continues a head or fine-tuning run (`orpheus train --resume RUN`) through the Trainer's
one resume mechanism, with the method, source, settings and seed the run recorded. A fine-tuning
run draws a fixed number of steps per epoch from one stream seeded by the run's seed, and a
resumed one skips what the saved epochs drew (reading, not training: a fraction of their time);
a head run's epochs are ordered by (seed, epoch) alone. With the dropout state the checkpoints
hold, a run stopped after any epoch and resumed ends with the weights an uninterrupted run
reaches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from orpheus import embeddings, pretrained, runs
from orpheus.errors import OrpheusError
from orpheus.training.lifecycle import fit, transfer_method
from orpheus.workspace import Workspace

FREEZE = ("frontend", "all-but-head", "none")
EPOCHS = 3
LEARNING_RATE = 1e-4  # a tenth of Adam's default: large steps would undo the pretraining
# what makes a run the run it is: a resumed one must agree (epochs may be raised, as for any run)
METHOD_KEYS = ("method", "head", "level", "embeddings", "init", "freeze", "seed")
FLAGS = {
    "head": "--head",
    "level": "--head-level",
    "embeddings": "--embeddings",
    "init": "--init",
    "freeze": "--freeze",
    "steps_per_epoch": "--steps-per-epoch",
}


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


def reopen(
    ws: Workspace, run_id: str, recipe, labels: list[str], method: dict
) -> tuple[Path, dict]:
    """An existing run to continue, and its state: refused unless it was made by `method` (its
    METHOD_KEYS) from the same features and labels."""
    run = runs.find(ws, run_id).require_config()
    recorded = {k: run.train_options.get(k) for k in METHOD_KEYS}
    wanted = {k: method.get(k) for k in METHOD_KEYS}
    if recorded != wanted:
        differ = "; ".join(
            f"{k} {recorded[k]}, not {wanted[k]}" for k in wanted if recorded[k] != wanted[k]
        )
        raise OrpheusError(
            f"run {run.id} was trained with {differ}",
            hint="resume it with its own settings, or start a new run",
        )
    if run.recipe != recipe:
        raise OrpheusError(
            f"run {run.id} was trained on other features than its source model eats now",
            hint="start a new run",
        )
    if run.labels != labels:
        raise OrpheusError(
            f"run {run.id} was trained on other labels than the TFRecords now give",
            hint="the TFRecords or tags config changed since; start a new run",
        )
    return run.dir, run.state()


def start(
    ws: Workspace, run_id: str, recipe, index: dict, labels: list[str], method: dict, resume: bool
) -> tuple[Path, dict | None]:
    """The run folder, new (`create`) or to continue (`reopen`), and the state to resume from."""
    if resume:
        return reopen(ws, run_id, recipe, labels, method)
    return create(ws, run_id, recipe, index, labels, method), None


def resume(
    ws: Workspace,
    run_id: str,
    *,
    epochs: int | None = None,
    reporter=None,
    **given: str | int | None,
) -> Outcome:
    """Continue a head or fine-tuning run from its last checkpoint with the method, source,
    settings and seed it recorded; `epochs` raises its target, as for any run. `given` holds the
    flags a user repeated (head, level, embeddings, init, freeze, steps_per_epoch): each must
    agree with the run, else a one-line error naming the flag."""
    from orpheus import heads

    run = runs.find(ws, run_id).require_config()
    method, kind = run.train_options, transfer_method(run)
    for key, value in given.items():
        if value is None:
            continue
        flag = FLAGS[key]
        if kind is None:
            raise OrpheusError(
                f"run {run.id} was trained from scratch: {flag} does not apply",
                hint=f"`orpheus train --resume {run.id}`",
            )
        if key in ("embeddings", "init"):
            value = _source_name(str(value))
        if method.get(key) is None:
            raise OrpheusError(f"run {run.id} is a {_describe(method)}: {flag} does not apply")
        if value != method[key]:
            raise OrpheusError(
                f"run {run.id} was trained with {flag} {method[key]}, not {value}",
                hint=f"drop {flag}: --resume continues a run with its own settings",
            )
    if kind == "head":
        return heads.train_head(
            ws,
            method["embeddings"],
            kind=method["head"],
            level=method["level"],
            run_id=run.id,
            epochs=epochs or method["epochs"],
            seed=method["seed"],
            reporter=reporter,
            resume=True,
        )
    if kind == "fine-tune":
        return finetune(
            ws,
            method["init"],
            freeze=method["freeze"],
            run_id=run.id,
            epochs=epochs or method["epochs"],
            steps_per_epoch=method.get("steps_per_epoch"),
            seed=method["seed"],
            reporter=reporter,
            resume=True,
        )
    raise OrpheusError(
        f"run {run.id} was trained from scratch, not from a pretrained model",
        hint=f"`orpheus train --resume {run.id}`",
    )


def _source_name(model: str) -> str:
    """A model as runs record their source: a bundled name, or `run/<id>`."""
    return model if model in pretrained.NAMES else runs.PREFIX + model.removeprefix(runs.PREFIX)


def _describe(method: dict) -> str:
    if method.get("method") == "head":
        return f"head run (--head {method['head']} --embeddings {method['embeddings']})"
    return f"fine-tuning run (--init {method['init']} --freeze {method['freeze']})"


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
    resume: bool = False,
) -> Outcome:
    """Fine-tune `init` (a bundled model or a run) on the workspace's records into runs/<run_id>;
    with `resume`, continue that run from its last checkpoint (`reopen` checks it agrees)."""
    import tensorflow as tf

    from orpheus import dataset
    from orpheus.records import read_index
    from orpheus.training import Trainer, TrainOptions
    from orpheus.training.steps import count_batches

    if freeze not in FREEZE:
        raise OrpheusError(f"unknown --freeze {freeze!r}", hint=", ".join(FREEZE))

    source = embeddings.open_source(ws, init)
    records_dir = ws.require(embeddings.RECORDS)
    index = read_index(records_dir)
    embeddings.check(index, source.recipe, records_dir, source.name)
    mt = ws.settings.model_training
    seed = mt.seed if seed is None else seed

    splits = ("train", "valid") if index["counts"].get("valid") else ("train",)
    tf.random.set_seed(seed)  # the stream's order then depends on the run's seed alone
    dsets, labels = dataset.datasets(
        records_dir, ws.config, splits, seed=seed, repeat=True, recipe=source.recipe
    )
    steps = steps_per_epoch or mt.iterations
    if steps is None:  # as many batches per epoch as one pass over the train split gives
        one_pass, _ = dataset.datasets(
            records_dir, ws.config, ("train",), seed=seed, recipe=source.recipe
        )
        steps = count_batches(one_pass["train"])
    method = {
        "method": "fine-tune",
        "init": source.name,
        "freeze": freeze,
        "epochs": epochs or EPOCHS,
        "steps_per_epoch": steps,
        "seed": seed,
    }
    run_dir, state = start(ws, run_id, source.recipe, index, labels, method, resume)
    opts = TrainOptions(
        epochs=method["epochs"],
        steps_per_epoch=steps,
        optimizer={"name": "Adam", "learning_rate": LEARNING_RATE},
        seed=seed,
    )
    # a resumed run goes on from the batch its saved epochs stopped at
    train = dsets["train"].skip(int((state or {}).get("epoch", 0)) * steps)

    def model_fn() -> keras.Model:
        return with_new_output(source.build(), len(labels), freeze)

    trainer = Trainer(model_fn, len(labels), run_dir, opts, reporter=reporter)
    result = fit(trainer, train, dsets.get("valid"), state, records=(records_dir, index))
    register(ws, run_id, run_dir, method, result, inputs=dict(source.inputs))
    return Outcome(run_dir, result)
