"""`orpheus train`: train the Pons et al. 2018 tagger on the TFRecords, into runs/<id>."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from orpheus.commands._common import console, err_console, info, options, progress, workspace
from orpheus.errors import EXIT_PARTIAL, OrpheusError

FRONTENDS = ("waveform", "log-mel")
SCHEDULES = ("constant", "cyclic", "one-cycle")
PRECISIONS = ("float32", "mixed")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def command(
    ctx: typer.Context,
    frontend: Annotated[
        str | None,
        typer.Option(help="waveform or log-mel (default: tfrecords.format in config.json)."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs (default: model-training.epochs).")
    ] = None,
    gpus: Annotated[
        list[str] | None,
        typer.Option(help="GPU indices for MirroredStrategy, e.g. --gpus 0 1 (default: all)."),
    ] = None,
    steps_per_epoch: Annotated[
        int | None, typer.Option(help="Steps per epoch (default: one pass over the train split).")
    ] = None,
    schedule: Annotated[
        str, typer.Option(help="Learning rate: constant, cyclic or one-cycle.")
    ] = "constant",
    find_lr: Annotated[
        bool, typer.Option("--find-lr", help="Run an LR range test (plot + suggestion) only.")
    ] = False,
    custom: Annotated[
        bool, typer.Option("--custom", help="Use the custom training loop instead of Keras fit.")
    ] = False,
    resume: Annotated[
        str | None, typer.Option(help="Continue the run with this id where it stopped.")
    ] = None,
    run_name: Annotated[
        str | None, typer.Option(help="Run id (default: <frontend>-<UTC time>).")
    ] = None,
    worker_hosts: Annotated[
        list[str] | None,
        typer.Option(help="host:port of every worker, for MultiWorkerMirroredStrategy."),
    ] = None,
    worker_index: Annotated[
        int | None, typer.Option(help="This machine's position in --worker-hosts.")
    ] = None,
    summary: Annotated[
        bool, typer.Option("--summary", help="Print the model's layers and parameters, and stop.")
    ] = False,
    precision: Annotated[
        str | None,
        typer.Option(
            help="float32, or mixed: float16 on a GPU, bfloat16 on the CPU, float32 weights and"
            " output (default: float32, or the run's own with --resume)."
        ),
    ] = None,
    jit: Annotated[bool, typer.Option("--jit", help="Compile the training step with XLA.")] = False,
    cache: Annotated[
        bool,
        typer.Option("--cache", help="Keep the parsed TFRecords in memory after the first epoch."),
    ] = False,
    extra: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
) -> None:
    """Train the tagger (waveform or log-mel front end); each run gets a folder runs/<id>."""
    gpu_ids, hosts = _spread_lists(gpus, worker_hosts, extra)
    _check_options(
        frontend, epochs, steps_per_epoch, schedule, run_name or resume, hosts, worker_index
    )
    if precision is not None and precision not in PRECISIONS:
        raise OrpheusError(f"unknown precision '{precision}'", hint="choose float32 or mixed")
    ws = workspace(ctx)
    runs_dir = ws.path(ws.config["model-training"]["log_dir"])
    state = None
    if resume:
        run_dir = runs_dir / resume
        cfg, frontend, saved = _load_run(run_dir, frontend)
        state = _read_state(run_dir)
        epochs = epochs or saved.get("epochs")
        schedule = saved.get("schedule", schedule)
        custom = custom or bool(saved.get("custom"))
        steps_per_epoch = steps_per_epoch or saved.get("steps_per_epoch")
        precision = precision or saved.get("precision", "float32")
        run_id = resume
    else:
        cfg = ws.config
        precision = precision or "float32"
        frontend = frontend or cfg["tfrecords"]["format"]
        run_id = run_name or f"{frontend}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        # only the chief creates the run: a worker that starts after it must not refuse to join
        chief_to_be = not hosts or worker_index == 0
        if chief_to_be and (runs_dir / run_id).exists() and not find_lr and not summary:
            raise OrpheusError(
                f"run {run_id} already exists",
                hint=f"pick another --run-name, or continue it with `--resume {run_id}`",
            )
    records_dir = ws.require(f"tfrecords/{frontend}")
    index = _check_records(records_dir, cfg)

    from orpheus import dataset, training  # TensorFlow from here on
    from orpheus.models import build_model
    from orpheus.records import spec_of

    strategy, where = training.make_strategy(gpu_ids, worker_hosts=hosts, worker_index=worker_index)
    chief = training.is_chief(strategy)
    info(ctx, where)
    mt = cfg["model-training"]
    splits = ("train", "valid") if index["counts"].get("valid") else ("train",)
    fixed_steps = (steps_per_epoch or mt["iterations"]) is not None
    if not fixed_steps and index["counts"].get("train", 0) < mt["batch_size"]:
        raise OrpheusError(
            f"the train split has {index['counts'].get('train', 0)} tracks, fewer than one batch"
            f" of {mt['batch_size']}",
            hint="lower model-training.batch_size, or set model-training.iterations"
            " (steps per epoch) so the split is repeated",
        )
    dsets, labels = dataset.datasets(
        records_dir, cfg, splits, seed=mt["seed"], repeat=fixed_steps, cache=cache
    )
    if resume and _run_labels(runs_dir / run_id) != labels:
        raise OrpheusError(
            f"run {run_id} was trained on other labels than the TFRecords now give",
            hint="the TFRecords or tags config changed since; start a new run",
        )
    shape = dsets["train"].element_spec[0].shape
    model_kwargs = dict(
        n_filters=cfg["model"]["n_filters"],
        n_dense_units=cfg["model"]["n_dense_units"],
        backend_filters=cfg["model"]["n_backend_filters"],
        input_length=int(shape[1]),
        n_mels=spec_of(index).params.n_mels,
    )

    def model_fn():
        return build_model(frontend, len(labels), **model_kwargs)

    try:
        model = model_fn()
    except ValueError as exc:
        raise OrpheusError(str(exc), hint="raise model-training.window_length") from None
    if summary:
        _print_summary(model, frontend, labels)
        return
    del model
    opts = training.TrainOptions.from_config(
        cfg,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        schedule=schedule,
        custom=custom,
        precision=precision,
        jit=jit,
    )
    training.make_optimizer(opts.optimizer, schedule)  # a bad optimizer config fails here
    effective = {
        **cfg,
        # the features the records hold, not the workspace's current settings: predict reads them
        "tfrecords": {**cfg["tfrecords"], **spec_of(index).params.to_dict(), "format": frontend},
        "frontend": frontend,
        "train": {
            "epochs": opts.epochs,
            "schedule": schedule,
            "custom": custom,
            "steps_per_epoch": steps_per_epoch,
            "precision": precision,
        },
    }
    if find_lr:
        _find_lr(
            ctx,
            training,
            model_fn,
            labels,
            dsets["train"],
            runs_dir,
            run_id,
            effective,
            opts,
            strategy,
        )
        return
    run_dir = runs_dir / run_id
    if not resume and chief:
        run_dir = training.create_run(runs_dir, run_id, config=effective, labels=labels)
    elif not resume:
        run_dir = None
    info(
        ctx,
        f"run {run_id}: {frontend}, {len(labels)} tags, {opts.epochs} epochs, {schedule} LR, "
        f"{training.dtype_policy(precision)}{' with XLA' if jit else ''}",
    )
    with _stop_on_sigterm(), progress(ctx) as bar:
        reporter = _Reporter(ctx, bar)
        trainer = training.Trainer(
            model_fn, len(labels), run_dir, opts, strategy=strategy, reporter=reporter
        )
        result = trainer.fit(dsets["train"], dsets.get("valid"), resume_state=state)
    if not chief:
        return
    ws.register(
        f"run/{run_id}",
        run_dir,
        params={
            "frontend": frontend,
            "labels": len(labels),
            "schedule": schedule,
            "loop": "custom" if trainer.custom else "fit",
            "precision": precision,
            "epochs": opts.epochs,
        },
        inputs={"tfrecords": f"tfrecords/{frontend}"},
        summary={
            "epochs": result.epochs_done,
            "status": result.status,
            f"best {result.monitor}": _round(result.best),
        },
    )
    best = (
        f"best {result.monitor} {result.best:.4f} (epoch {result.best_epoch})"
        if result.best
        else ""
    )
    console.print(f"run {run_id}: {result.status} after {result.epochs_done} epochs; {best}")
    console.print(f"model: {result.model_path}")
    if result.status.startswith("failed"):
        raise OrpheusError(
            f"training {result.status}",
            hint=f"lower the learning rate; the run can go on with `--resume {run_id}`",
            exit_code=EXIT_PARTIAL,
        )


# -- option handling ------------------------------------------------------------------------------


def _spread_lists(
    gpus: list[str] | None, hosts: list[str] | None, extra: list[str] | None
) -> tuple[list[int] | None, list[str] | None]:
    """Accept `--gpus 0 1` and `--worker-hosts a:1 b:2` (click reads only the first value of each:
    the rest arrive as extra arguments, told apart by their shape), and comma-separated lists."""
    gpu_tokens = [t for g in gpus or [] for t in re.split(r"[,\s]+", g) if t]
    host_tokens = [t for h in hosts or [] for t in re.split(r"[,\s]+", h) if t]
    for token in extra or []:
        if gpus and token.isdigit():
            gpu_tokens.append(token)
        elif hosts and ":" in token:
            host_tokens.append(token)
        else:
            raise OrpheusError(f"unexpected argument {token!r}", hint="see `orpheus train --help`")
    try:
        gpu_ids = [int(t) for t in gpu_tokens]
    except ValueError:
        raise OrpheusError(f"--gpus takes GPU indices, got {' '.join(gpu_tokens)}") from None
    return gpu_ids or None, host_tokens or None


def _check_options(frontend, epochs, steps, schedule, run_name, hosts, worker_index) -> None:
    if frontend is not None and frontend not in FRONTENDS:
        raise OrpheusError(f"unknown frontend '{frontend}'", hint="choose waveform or log-mel")
    if schedule not in SCHEDULES:
        raise OrpheusError(f"unknown schedule '{schedule}'", hint=f"choose {', '.join(SCHEDULES)}")
    for flag, value in (("--epochs", epochs), ("--steps-per-epoch", steps)):
        if value is not None and value < 1:
            raise OrpheusError(f"{flag} must be at least 1, got {value}")
    if run_name is not None and not RUN_NAME.match(run_name):
        raise OrpheusError(
            f"bad run name {run_name!r}", hint="use letters, digits, '.', '_' and '-' only"
        )
    if hosts and worker_index is None:
        raise OrpheusError("--worker-hosts needs --worker-index (this machine's position)")
    if hosts and not run_name:
        raise OrpheusError("multi-worker training needs the same --run-name on every worker")


def _load_run(run_dir: Path, frontend: str | None) -> tuple[dict, str, dict]:
    """The config, front end and training options a run was started with."""
    from orpheus import config as config_mod

    path = run_dir / "config.json"
    if not path.is_file():
        raise OrpheusError(f"no run {run_dir.name} in {run_dir.parent} (no config.json)")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        run_frontend = saved.pop("frontend")
        train = saved.pop("train", {})
    except (ValueError, KeyError) as exc:
        raise OrpheusError(f"{path} is corrupt ({exc})") from None
    cfg = config_mod.validate(saved, source=str(path))
    if frontend is not None and frontend != run_frontend:
        raise OrpheusError(f"run {run_dir.name} trains {run_frontend}, not {frontend}")
    return cfg, run_frontend, train


def _run_labels(run_dir: Path) -> list[str] | None:
    try:
        return json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_state(run_dir: Path) -> dict:
    from orpheus.training import read_state

    return read_state(run_dir) or {}


def _check_records(records_dir: Path, cfg: dict) -> dict:
    """The TFRecords' index; refuses a tag selection larger than their vocabulary."""
    from orpheus.records import read_index

    index = read_index(records_dir)
    top, have = cfg["tags"]["top"], len(index["vocabulary"])
    if top is not None and top > have:
        raise OrpheusError(
            f"the config asks for the top {top} tags, but the TFRecords have only {have}",
            hint=f"`orpheus config set tags.top {have}` (or null for all of them)",
        )
    if not index["counts"].get("train"):
        raise OrpheusError(f"the TFRecords in {records_dir} have no training tracks")
    return index


# -- rendering ------------------------------------------------------------------------------------


def _print_summary(model, frontend: str, labels: list[str]) -> None:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line), line_length=100)
    console.print("\n".join(lines), markup=False)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    console.print(
        f"{frontend} model, {len(labels)} tags, input {tuple(model.input_shape[1:])}: "
        f"{trainable:,} trainable parameters"
    )


class TrainingEta:
    """Seconds left in the whole run, not just the epoch (rich's own ETA), from what it measured.

    The rate comes from the latest steps, leaving out the run's first one (it traces the graph),
    and each epoch's end (validation, checkpoints) is timed on its own and counted once per epoch
    still to end, so neither skews the other. Until an epoch has ended its cost is unknown: the
    first epoch's estimate counts the steps only.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, window: int = 20):
        self.clock, self.window = clock, window
        self.durations: list[float] = []
        self.epoch_cost: float | None = None
        self.last = 0.0  # when the last step ended (or the epoch began)
        self.ended: float | None = None  # when the last epoch's last step ended
        self.first = True

    def epoch_begin(self, epoch: int, epochs: int, steps: int | None) -> None:
        now = self.clock()
        if self.ended is not None:
            self.epoch_cost = now - self.ended
        self.epochs_left, self.steps, self.done, self.last = epochs - epoch, steps, 0, now

    def step(self) -> None:
        now = self.clock()
        if not self.first:
            self.durations = [*self.durations[1 - self.window :], now - self.last]
        self.first, self.last, self.done = False, now, self.done + 1

    def epoch_end(self) -> None:
        """Called after validation: the epoch's cost is counted from its last step."""
        self.ended, self.steps = self.last, self.steps or self.done

    def seconds_left(self) -> float | None:
        """None until two steps have run, or while the epoch's length is unknown."""
        if not self.durations or not self.steps:
            return None
        steps_left = self.steps * self.epochs_left - self.done
        return steps_left * sum(self.durations) / len(self.durations) + self.epochs_left * (
            self.epoch_cost or 0.0
        )


class _Reporter:
    """Training progress as a rich bar (count, rate, the epoch's ETA) plus the whole run's ETA
    and one line per epoch."""

    def __init__(self, ctx: typer.Context, bar):
        self.ctx, self.bar, self.task = ctx, bar, None
        self.steps_seen: int | None = None  # an epoch's length, once one epoch has run
        self.eta = TrainingEta()

    def message(self, text: str) -> None:
        info(self.ctx, text)

    def epoch_begin(self, epoch: int, epochs: int, steps: int | None) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.epochs = epochs
        self.label = f"epoch {epoch + 1}/{epochs}"
        self.task = self.bar.add_task(self.label, total=steps or self.steps_seen)
        self.eta.epoch_begin(epoch, epochs, steps or self.steps_seen)

    def step(self, step: int, logs: dict[str, float]) -> None:
        self.eta.step()
        loss = logs.get("loss")
        text = f"{self.label} loss {loss:.4f}" if loss is not None else self.label
        left = self.eta.seconds_left()
        if left is not None:
            text += f", run ends in {int(left) // 60}:{int(left) % 60:02d}"
        self.bar.update(self.task, completed=step + 1, description=text)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.eta.epoch_end()
        self.steps_seen = int(self.bar.tasks[-1].completed) if self.bar.tasks else None
        if options(self.ctx).quiet:
            return
        keys = ("loss", "roc_auc", "pr_auc", "val_loss", "val_roc_auc", "val_pr_auc")
        shown = "  ".join(f"{k} {logs[k]:.4f}" for k in keys if k in logs)
        err_console.print(
            f"epoch {epoch + 1}/{self.epochs}: {shown}  lr {logs['learning_rate']:.3g}"
        )


def _find_lr(
    ctx, training, model_fn, labels, train_ds, runs_dir, run_id, effective, opts, strategy
) -> None:
    run_dir = training.create_run(runs_dir, run_id, config=effective, labels=labels)
    info(ctx, "LR range test: learning rate from 1e-7 up, one step each, until the loss diverges")
    result = training.find_lr(
        model_fn,
        len(labels),
        train_ds,
        run_dir,
        optimizer=opts.optimizer,
        strategy=strategy,
        seed=opts.seed,
    )
    training.write_note(
        run_dir,
        f"LR range test only (no model); suggested learning rate {result['suggestion']:.3g}",
    )
    console.print(
        f"suggested learning rate: {result['suggestion']:.3g} "
        f"(loss lowest at {result['min_loss_lr']:.3g}); plot: {run_dir / 'lr_find.png'}"
    )
    console.print(
        f"use it with `orpheus config set model-training.optimizer "
        f'\'{{"name": "{opts.optimizer.get("name", "Adam")}", '
        f'"learning_rate": {result["suggestion"]:.3g}}}\'`'
    )


class _stop_on_sigterm:
    """SIGTERM becomes KeyboardInterrupt, so the run folder gets its NOTE before exiting."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt


def _round(value):
    return None if value is None else round(float(value), 4)
