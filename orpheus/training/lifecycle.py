"""A whole `orpheus train`, callable from Python: check the request, create or resume the run,
check the records, build the datasets and the model, train, export, register in the manifest.

    request = TrainRequest(run_name="first", epochs=2)
    check(request)                         # no TensorFlow yet: bad options fail instantly
    plan = prepare(ws, request)            # TensorFlow from here on
    outcome = train(ws, plan)              # a TrainResult, the run registered as run/first

`prepare` stops before anything is written, so `--summary` and `--find-lr` share it.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orpheus import config as config_mod
from orpheus import runs
from orpheus.errors import OrpheusError
from orpheus.features import FRONTENDS, Recipe
from orpheus.training.options import PRECISIONS, SCHEDULES, TrainOptions, TrainResult
from orpheus.training.progress import PrintReporter, Reporter
from orpheus.workspace import Workspace

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TRANSFER_METHODS = ("head", "fine-tune")  # a run's train.method when not trained from scratch


@dataclass
class TrainRequest:
    """What the user asked for; None means "the config's value" (or the resumed run's)."""

    frontend: str | None = None
    epochs: int | None = None
    gpus: list[int] | None = None
    steps_per_epoch: int | None = None
    schedule: str | None = None
    custom: bool = False
    resume: str | None = None
    run_name: str | None = None
    worker_hosts: list[str] | None = None
    worker_index: int | None = None
    precision: str | None = None
    jit: bool = False
    cache: bool = False
    find_lr: bool = False  # an LR range test only: the run folder gets no model
    summary: bool = False  # build the model and stop: nothing is written


@dataclass
class Plan:
    """A prepared run: everything `train` needs, nothing written yet."""

    run_id: str
    runs_dir: Path
    frontend: str
    labels: list[str]
    recipe: Recipe
    options: TrainOptions
    effective: dict  # the run's config.json
    datasets: dict
    model_fn: Callable[[], Any]
    strategy: Any
    chief: bool
    where: str  # the strategy, in words
    records_dir: Path
    records_index: dict  # the records' index.json (to name a damaged shard)
    resume_state: dict | None = None
    params: dict = field(default_factory=dict)  # the manifest's params for run/<id>

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_id

    def describe(self) -> str:
        from orpheus.training.strategy import dtype_policy

        o = self.options
        return (
            f"run {self.run_id}: {self.frontend}, {len(self.labels)} tags, {o.epochs} epochs, "
            f"{o.schedule} LR, {dtype_policy(o.precision)}{' with XLA' if o.jit else ''}"
        )


def check_schedule(schedule: str) -> None:
    """Refuse a schedule `--schedule` or `model-training.schedule` names that does not exist."""
    if schedule not in SCHEDULES:
        raise OrpheusError(f"unknown schedule '{schedule}'", hint=f"choose {', '.join(SCHEDULES)}")


def check(req: TrainRequest) -> None:
    """Refuse bad options before anything loads."""
    if req.frontend is not None and req.frontend not in FRONTENDS:
        raise OrpheusError(f"unknown frontend '{req.frontend}'", hint="choose waveform or log-mel")
    if req.schedule is not None:
        check_schedule(req.schedule)
    if req.precision is not None and req.precision not in PRECISIONS:
        raise OrpheusError(f"unknown precision '{req.precision}'", hint="choose float32 or mixed")
    for flag, value in (("--epochs", req.epochs), ("--steps-per-epoch", req.steps_per_epoch)):
        if value is not None and value < 1:
            raise OrpheusError(f"{flag} must be at least 1, got {value}")
    name = req.run_name or req.resume
    if name is not None and not RUN_NAME.match(name):
        raise OrpheusError(
            f"bad run name {name!r}", hint="use letters, digits, '.', '_' and '-' only"
        )
    if req.worker_hosts and req.worker_index is None:
        raise OrpheusError("--worker-hosts needs --worker-index (this machine's position)")
    if req.worker_hosts and not name:
        raise OrpheusError("multi-worker training needs the same --run-name on every worker")


def prepare(ws: Workspace, req: TrainRequest, *, message: Callable[[str], None] = print) -> Plan:
    """Resolve the run (new or resumed), check the records, set up the strategy, the datasets
    and the model; `message` gets the lines worth showing (the strategy chosen)."""
    check(req)
    runs_dir = runs.runs_dir(ws)
    state, train = None, {}
    if req.resume:
        run = runs.find(ws, req.resume).require_config()
        if kind := transfer_method(run):
            raise OrpheusError(
                f"run {run.id} is a {kind} run: `finetune.resume` continues it",
                hint=f"`orpheus train --resume {run.id}` picks the right one",
            )
        cfg, frontend, train = run.config, run.frontend, run.train_options
        if req.frontend is not None and req.frontend != frontend:
            raise OrpheusError(f"run {run.id} trains {frontend}, not {req.frontend}")
        state, run_id, runs_dir = run.state(), run.id, run.dir.parent
    else:
        cfg = ws.config
        frontend = req.frontend or ws.settings.tfrecords.format
        run_id = req.run_name or f"{frontend}-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
        # only the chief creates the run: a worker that starts after it must not refuse to join
        chief_to_be = not req.worker_hosts or req.worker_index == 0
        if chief_to_be and (runs_dir / run_id).exists() and not (req.find_lr or req.summary):
            raise OrpheusError(
                f"run {run_id} already exists",
                hint=f"pick another --run-name, or continue it with `--resume {run_id}`",
            )
    records_dir = ws.require(f"tfrecords/{frontend}")
    index = check_records(records_dir, cfg)
    settings = config_mod.settings(cfg)
    mt = settings.model_training

    from orpheus import dataset  # TensorFlow from here on
    from orpheus.models import build_model
    from orpheus.records import spec_of
    from orpheus.training.strategy import is_chief, make_strategy

    strategy, where = make_strategy(
        req.gpus, worker_hosts=req.worker_hosts, worker_index=req.worker_index
    )
    message(where)
    spec = spec_of(index)
    recipe = runs.recipe_for(frontend, spec.params, mt.window_length)
    if req.resume and run.recipe != recipe:
        raise OrpheusError(
            f"run {run_id} was trained on other features than the TFRecords now hold",
            hint="the TFRecords were rebuilt since; start a new run",
        )
    steps_per_epoch = req.steps_per_epoch or train.get("steps_per_epoch")
    splits = ("train", "valid") if index["counts"].get("valid") else ("train",)
    fixed_steps = (steps_per_epoch or mt.iterations) is not None
    if not fixed_steps and index["counts"].get("train", 0) < mt.batch_size:
        raise OrpheusError(
            f"the train split has {index['counts'].get('train', 0)} tracks, fewer than one batch"
            f" of {mt.batch_size}",
            hint="lower model-training.batch_size, or set model-training.iterations"
            " (steps per epoch) so the split is repeated",
        )
    dsets, labels = dataset.datasets(
        records_dir, cfg, splits, seed=mt.seed, repeat=fixed_steps, cache=req.cache
    )
    if req.resume and _labels_or_none(run) != labels:
        raise OrpheusError(
            f"run {run_id} was trained on other labels than the TFRecords now give",
            hint="the TFRecords or tags config changed since; start a new run",
        )
    model_kwargs = dict(
        n_filters=settings.model.n_filters,
        n_dense_units=settings.model.n_dense_units,
        backend_filters=settings.model.n_backend_filters,
        input_length=int(dsets["train"].element_spec[0].shape[1]),
        n_mels=spec.params.n_mels,
    )

    def model_fn():
        return build_model(frontend, len(labels), **model_kwargs)

    try:
        model_fn()
    except ValueError as exc:
        raise OrpheusError(str(exc), hint="raise model-training.window_length") from None
    # a resumed run keeps its own schedule
    schedule = train.get("schedule") or req.schedule or settings.model_training.schedule
    check_schedule(schedule)
    custom = req.custom or bool(train.get("custom"))
    precision = req.precision or train.get("precision", PRECISIONS[0])
    opts = TrainOptions.from_config(
        cfg,
        epochs=req.epochs or train.get("epochs"),
        steps_per_epoch=steps_per_epoch,
        schedule=schedule,
        custom=custom,
        precision=precision,
        jit=req.jit,
    )
    from orpheus.training.schedules import make_optimizer

    make_optimizer(opts.optimizer, schedule)  # a bad optimizer config fails here
    effective = {
        **cfg,
        # the features the records hold, not the workspace's current settings
        "tfrecords": {**cfg["tfrecords"], **spec.params.to_dict(), "format": frontend},
        "frontend": frontend,
        "train": {
            "epochs": opts.epochs,
            "schedule": schedule,
            "custom": custom,
            "steps_per_epoch": steps_per_epoch,
            "precision": precision,
        },
    }
    params = {
        "frontend": frontend,
        "labels": len(labels),
        "schedule": schedule,
        "precision": precision,
        "epochs": opts.epochs,
    }
    return Plan(
        run_id=run_id,
        runs_dir=runs_dir,
        frontend=frontend,
        labels=labels,
        recipe=recipe,
        options=opts,
        effective=effective,
        datasets=dsets,
        model_fn=model_fn,
        strategy=strategy,
        chief=is_chief(strategy),
        where=where,
        records_dir=records_dir,
        records_index=index,
        resume_state=state,
        params=params,
    )


def train(ws: Workspace, plan: Plan, *, reporter: Reporter | None = None) -> TrainResult:
    """Create the run (the chief, unless resuming), train it, export model.keras and register
    run/<id>. SIGTERM stops it like Ctrl-C: the run keeps a NOTE and can be resumed. A damaged
    shard is a one-line error naming it."""
    from orpheus.training.trainer import Trainer

    run_dir: Path | None = plan.run_dir
    if plan.resume_state is None and plan.chief:
        runs.create_run(
            plan.runs_dir,
            plan.run_id,
            config=plan.effective,
            labels=plan.labels,
            recipe=plan.recipe,
        )
    elif plan.resume_state is None:
        run_dir = None  # a worker: the chief writes the run
    trainer = Trainer(
        plan.model_fn,
        len(plan.labels),
        run_dir,
        plan.options,
        strategy=plan.strategy,
        reporter=reporter or PrintReporter(),
    )
    train_ds, valid_ds = plan.datasets["train"], plan.datasets.get("valid")
    records = (plan.records_dir, plan.records_index)
    result = fit(trainer, train_ds, valid_ds, plan.resume_state, records=records)
    if plan.chief:
        ws.register(
            f"{runs.PREFIX}{plan.run_id}",
            plan.run_dir,
            params={**plan.params, "loop": "custom" if trainer.custom else "fit"},
            inputs={"tfrecords": f"tfrecords/{plan.frontend}"},
            summary={
                "epochs": result.epochs_done,
                "status": result.status,
                f"best {result.monitor}": runs.rounded(result.best),
            },
        )
    return result


def fit(
    trainer, train_ds, valid_ds, state: dict | None, *, records: tuple[Path, dict] | None = None
) -> TrainResult:
    """`trainer.fit`, resumed from `state` when given; SIGTERM stops it like Ctrl-C (the run
    keeps a NOTE and can be resumed), as for every run. With `records` (the folder and index
    the datasets read), a damaged shard is a one-line error naming it, which the run's NOTE
    repeats instead of TensorFlow's op trace."""
    from orpheus.records import DamagedShard, naming_damaged_shards

    try:
        named = naming_damaged_shards(*records) if records else nullcontext()
        with stop_on_sigterm(), named:
            return trainer.fit(train_ds, valid_ds, resume_state=state)
    except DamagedShard as exc:
        run_dir = trainer.run_dir
        if run_dir is not None and (run_dir / runs.NOTE_FILE).is_file():
            runs.write_note(
                run_dir,
                f"failed: {exc.message}; once the TFRecords are rebuilt, continue with "
                f"`orpheus train --resume {run_dir.name}`",
            )
        raise


def find_lr(plan: Plan) -> tuple[Path, dict]:
    """The LR range test in a run folder of its own (plot, JSON, a NOTE; no model)."""
    from orpheus.records import naming_damaged_shards
    from orpheus.training.lr_find import find_lr as range_test

    run_dir = runs.create_run(
        plan.runs_dir, plan.run_id, config=plan.effective, labels=plan.labels, recipe=plan.recipe
    )
    with naming_damaged_shards(plan.records_dir, plan.records_index, "train"):
        result = range_test(
            plan.model_fn,
            len(plan.labels),
            plan.datasets["train"],
            run_dir,
            optimizer=plan.options.optimizer,
            strategy=plan.strategy,
            seed=plan.options.seed,
        )
    runs.write_note(
        run_dir,
        f"LR range test only (no model); suggested learning rate {result['suggestion']:.3g}",
    )
    return run_dir, result


def check_records(records_dir: Path, cfg: dict) -> dict:
    """The TFRecords' index; refuses a tag selection larger than their vocabulary."""
    from orpheus.records import read_index

    index = read_index(records_dir)
    top, have = config_mod.settings(cfg).tags.top, len(index["vocabulary"])
    if top is not None and top > have:
        raise OrpheusError(
            f"the config asks for the top {top} tags, but the TFRecords have only {have}",
            hint=f"`orpheus config set tags.top {have}` (or null for all of them)",
        )
    if not index["counts"].get("train"):
        raise OrpheusError(f"the TFRecords in {records_dir} have no training tracks")
    return index


def transfer_method(run: runs.Run) -> str | None:
    """ "head" or "fine-tune" for a run learnt from a pretrained model (`orpheus.heads`,
    `orpheus.finetune`, which resume it), None for one trained here from scratch."""
    if not run.config_path.is_file():
        return None
    method = run.train_options.get("method")
    return method if method in TRANSFER_METHODS else None


def _labels_or_none(run: runs.Run) -> list[str] | None:
    try:
        return run.labels
    except OrpheusError:
        return None


class stop_on_sigterm:  # noqa: N801 - used as a `with` statement
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
