"""Training: strategies, Keras-fit and custom loops, LR schedules, callbacks, checkpoints, resume.

Both loops minimise the same loss: binary cross-entropy averaged over the tags of an example,
then over the *global* batch (the original scaled its two loops differently, seed-inventory §7.6).
Both share one epoch-end routine, so TensorBoard scalars, checkpoints, the best-by-validation-
PR-AUC weights, early stopping and reduce-LR-on-plateau behave identically whichever loop runs.

A run folder holds everything needed to continue after a crash, even a SIGKILL:
`checkpoints/epoch-NNNN.npz` (model and optimizer variables, written atomically every epoch),
`state.json` (epochs done, optimizer step, the callbacks' counters and best value, history),
written after the checkpoint it points to. Resuming restores the model and every optimizer
variable (its step, its moments), so every schedule (constant, cyclic, one-cycle) continues where
it stopped; an epoch interrupted midway is run again from its start. The input pipeline starts
over from its seed, so a resumed epoch's batches are not those an uninterrupted run would draw.

Checkpoints are plain NumPy archives read with `allow_pickle=False` (no pickle on user files).

Precision. `mixed` computes in float16 on a GPU and bfloat16 on the CPU, with float32 variables
and a float32 output layer, and wraps the optimizer in Keras's LossScaleOptimizer in both loops
(bfloat16 does not need loss scaling, but one layout keeps a run's checkpoints the same on either
device). The scaler's variables are checkpointed with the optimizer's, so a run records its
precision and cannot be resumed in another one. `jit` compiles the training step with XLA (in the
custom loop, the forward and backward pass; the gradients' all-reduce and update stay outside).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from orpheus.errors import OrpheusError
from orpheus.io import write_atomic, write_atomic_via

SCHEDULES = ("constant", "cyclic", "one-cycle")
PRECISIONS = ("float32", "mixed")
STATE_FILE = "state.json"
NOTE_FILE = "NOTE"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
BEST_WEIGHTS = "best.npz"
ONE_CYCLE_WARMUP = 0.4  # the original's one-cycle: 40 % warm-up, then cosine to 0
ONE_CYCLE_DIV = 25.0
ONE_CYCLE_MOMENTA = (0.95, 0.85)


class TrainingError(OrpheusError):
    """Training cannot start or continue (bad option, unusable checkpoint, no device)."""


# -- strategies -----------------------------------------------------------------------------------


def make_strategy(
    gpus: list[int] | None = None,
    *,
    worker_hosts: list[str] | None = None,
    worker_index: int | None = None,
) -> tuple[tf.distribute.Strategy, str]:
    """The distribution strategy for the requested devices, and a sentence saying what it is.

    `worker_hosts` (or a TF_CONFIG already in the environment) selects MultiWorkerMirrored
    across machines; otherwise MirroredStrategy over the named GPUs (all GPUs when none is named),
    or the CPU when the machine has no GPU. Call this before any other TensorFlow work: it turns
    on memory growth for every GPU, so Orpheus takes GPU memory as it needs it and can share a GPU
    (TF_FORCE_GPU_ALLOW_GROWTH=false in the environment keeps TensorFlow's take-it-all default).
    """
    if os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH", "").lower() != "false":
        for gpu in tf.config.list_physical_devices("GPU"):
            with contextlib.suppress(RuntimeError):  # this process already set its GPUs up
                tf.config.experimental.set_memory_growth(gpu, True)
    if worker_hosts:
        if worker_index is None or not 0 <= worker_index < len(worker_hosts):
            raise TrainingError(
                f"--worker-index must be 0..{len(worker_hosts) - 1} with {len(worker_hosts)} hosts"
            )
        os.environ["TF_CONFIG"] = json.dumps(
            {
                "cluster": {"worker": list(worker_hosts)},
                "task": {"type": "worker", "index": worker_index},
            }
        )
    if os.environ.get("TF_CONFIG"):
        try:
            tf_config = json.loads(os.environ["TF_CONFIG"])
            n_workers = len(tf_config["cluster"]["worker"])
            index = tf_config["task"]["index"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"TF_CONFIG is not a valid cluster description ({exc})") from None
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        return strategy, f"MultiWorkerMirroredStrategy: worker {index} of {n_workers}"
    physical = tf.config.list_physical_devices("GPU")
    if gpus:
        missing = [i for i in gpus if not 0 <= i < len(physical)]
        if missing:
            have = f"GPUs 0..{len(physical) - 1}" if physical else "no GPU"
            raise TrainingError(
                f"no GPU {missing[0]}: this machine has {have}",
                hint="list the GPUs with `nvidia-smi -L`, or leave out --gpus to train on the CPU",
            )
        devices = [f"/gpu:{i}" for i in gpus]
        return tf.distribute.MirroredStrategy(
            devices
        ), f"MirroredStrategy over {', '.join(devices)}"
    if physical:
        strategy = tf.distribute.MirroredStrategy()
        return strategy, f"MirroredStrategy over all {len(physical)} GPU(s)"
    return tf.distribute.get_strategy(), "no GPU found: training on the CPU"


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Only the chief (worker 0) writes the run folder; the others compute."""
    if not is_multi_worker(strategy):
        return True
    return strategy.cluster_resolver.task_id == 0


def dtype_policy(precision: str) -> str:
    """The Keras dtype policy for `precision`: mixed_float16 where a GPU is visible, else
    mixed_bfloat16 (CPUs emulate float16 slowly; bfloat16 keeps float32's range)."""
    if precision not in PRECISIONS:
        raise TrainingError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if precision == "float32":
        return "float32"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def policy_scope(name: str):
    """Build layers under the dtype policy `name`, then restore the process's global policy."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# -- schedules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Learning rate (and SGD momentum) as a function of the optimizer step.

    constant: `max_lr` throughout. cyclic: triangular between max_lr/4 and max_lr with a
    half-cycle of two epochs (the original's Experiment 2). one-cycle: linear warm-up from
    max_lr/25 to max_lr over 40 % of the steps, then cosine annealing to 0; momentum mirrors it
    (0.95 -> 0.85 -> 0.95).
    """

    kind: str
    max_lr: float
    steps_per_epoch: int = 1
    epochs: int = 1

    def lr(self, step: int) -> float:
        if self.kind == "constant":
            return self.max_lr
        if self.kind == "cyclic":
            low, stepsize = self.max_lr / 4.0, 2 * self.steps_per_epoch
            cycle = math.floor(1 + step / (2 * stepsize))
            x = abs(step / stepsize - 2 * cycle + 1)
            return low + (self.max_lr - low) * max(0.0, 1.0 - x)
        phase, warm = self._one_cycle_phase(step)
        if warm:
            low = self.max_lr / ONE_CYCLE_DIV
            return low + (self.max_lr - low) * phase
        return self.max_lr * (1.0 + math.cos(math.pi * phase)) / 2.0

    def momentum(self, step: int) -> float | None:
        if self.kind != "one-cycle":
            return None
        high, low = ONE_CYCLE_MOMENTA
        phase, warm = self._one_cycle_phase(step)
        if warm:
            return high - (high - low) * phase
        return low + (high - low) * (1.0 - math.cos(math.pi * phase)) / 2.0

    def _one_cycle_phase(self, step: int) -> tuple[float, bool]:
        total = max(1, self.steps_per_epoch * self.epochs)
        warm_steps = max(1, round(ONE_CYCLE_WARMUP * total))
        if step < warm_steps:
            return step / warm_steps, True
        return min(1.0, (step - warm_steps) / max(1, total - warm_steps)), False


# -- options, state -------------------------------------------------------------------------------


@dataclass
class TrainOptions:
    """What a run needs beyond data and model; `from_config` reads config.json's sections."""

    epochs: int = 10
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    schedule: str = "constant"
    custom: bool = False
    optimizer: dict = field(default_factory=lambda: {"name": "Adam", "learning_rate": 0.001})
    early_stop_patience: int | None = None
    early_stop_min_delta: float | None = None
    reduce_lr_patience: int | None = None
    reduce_lr_min_delta: float | None = None
    reduce_lr_factor: float | None = None
    reduce_lr_min_lr: float | None = None
    seed: int = 0
    keep_checkpoints: int = 3
    precision: str = "float32"
    jit: bool = False

    @classmethod
    def from_config(cls, cfg: dict, **overrides: Any) -> TrainOptions:
        mt = cfg["model-training"]
        values = dict(
            epochs=mt["epochs"],
            steps_per_epoch=mt.get("iterations"),
            optimizer=dict(mt["optimizer"]),
            early_stop_patience=mt.get("early_stop_patience"),
            early_stop_min_delta=mt.get("early_stop_min_delta"),
            reduce_lr_patience=mt.get("reduceLRoP_patience"),
            reduce_lr_min_delta=mt.get("reduceLRoP_min_delta"),
            reduce_lr_factor=mt.get("reduceLRoP_factor"),
            reduce_lr_min_lr=mt.get("reduceLRoP_min_lr"),
            seed=mt.get("seed", 0),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def max_lr(self) -> float:
        opt = self.optimizer
        return float(opt.get("max_learning_rate", opt.get("learning_rate", 0.001)))


@dataclass
class Tracker:
    """Best validation PR-AUC and the early-stopping / reduce-LR counters; saved in state.json."""

    best: float | None = None
    best_epoch: int | None = None
    early_stop_best: float | None = None
    early_stop_wait: int = 0
    reduce_lr_best: float | None = None
    reduce_lr_wait: int = 0
    lr_scale: float = 1.0

    def update(self, value: float, epoch: int, opts: TrainOptions) -> tuple[bool, bool, bool]:
        """Record one epoch's monitored value: (new best, stop now, LR reduced)."""
        improved = self.best is None or value > self.best
        if improved:
            self.best, self.best_epoch = value, epoch
        stop = reduced = False
        if opts.early_stop_patience is not None:
            delta = opts.early_stop_min_delta or 0.0
            if self.early_stop_best is None or value > self.early_stop_best + delta:
                self.early_stop_best, self.early_stop_wait = value, 0
            else:
                self.early_stop_wait += 1
                stop = self.early_stop_wait >= opts.early_stop_patience
        if opts.reduce_lr_patience is not None:
            delta = opts.reduce_lr_min_delta or 0.0
            if self.reduce_lr_best is None or value > self.reduce_lr_best + delta:
                self.reduce_lr_best, self.reduce_lr_wait = value, 0
            else:
                self.reduce_lr_wait += 1
                if self.reduce_lr_wait >= opts.reduce_lr_patience:
                    self.lr_scale *= opts.reduce_lr_factor or 0.5
                    self.reduce_lr_wait, reduced = 0, True
        return improved, stop, reduced


@dataclass
class TrainResult:
    status: str
    epochs_done: int
    best: float | None
    best_epoch: int | None
    monitor: str
    history: list[dict]
    model_path: Path | None


class Reporter(Protocol):
    """Where progress goes: the CLI shows a rich bar with ETA, the library prints lines."""

    def message(self, text: str) -> None: ...
    def epoch_begin(self, epoch: int, epochs: int, steps: int | None) -> None: ...
    def step(self, step: int, logs: dict[str, float]) -> None: ...
    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...


class PrintReporter:
    """One line per epoch on stdout."""

    def message(self, text: str) -> None:
        print(text, flush=True)

    def epoch_begin(self, epoch: int, epochs: int, steps: int | None) -> None:
        self._start, self._epochs = time.monotonic(), epochs

    def step(self, step: int, logs: dict[str, float]) -> None:
        pass

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        shown = " ".join(f"{k} {v:.4g}" for k, v in logs.items() if k != "epoch")
        took = time.monotonic() - self._start
        print(f"epoch {epoch + 1}/{self._epochs} ({took:.1f}s): {shown}", flush=True)


# -- run folder -----------------------------------------------------------------------------------


def create_run(runs_dir: Path, run_id: str, *, config: dict, labels: list[str]) -> Path:
    """Make `runs_dir/run_id` with the effective config, the labels and a NOTE until it finishes."""
    run_dir = Path(runs_dir) / run_id
    if run_dir.exists():
        raise TrainingError(
            f"run {run_id} already exists in {runs_dir}",
            hint=f"pick another --run-name, or continue it with `--resume {run_id}`",
        )
    run_dir.mkdir(parents=True)
    write_note(run_dir, "created; training has not finished (resume with --resume if it died)")
    _write_json(run_dir / "config.json", config)
    _write_json(run_dir / "labels.json", list(labels))
    (run_dir / "checkpoints").mkdir()
    (run_dir / "logs").mkdir()
    return run_dir


def read_state(run_dir: Path) -> dict | None:
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TrainingError(f"{path} is corrupt ({exc})") from None


def write_note(run_dir: Path, text: str) -> None:
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _write_text(Path(run_dir) / NOTE_FILE, f"{stamp} {text}\n")


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text)


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


# -- checkpoints ----------------------------------------------------------------------------------


def save_checkpoint(path: Path, variables: dict[str, list]) -> None:
    """Write groups of variables (e.g. model, optimizer) to one .npz, atomically."""
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, list[str]] = {}
    for group, group_vars in variables.items():
        names[group] = [getattr(v, "path", v.name) for v in group_vars]
        for i, v in enumerate(group_vars):
            arrays[f"{group}/{i:05d}"] = np.asarray(v.numpy())
    arrays["__names__"] = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
    write_atomic_via(Path(path), lambda fh: np.savez(fh, **arrays))


def load_checkpoint(path: Path, variables: dict[str, list]) -> None:
    """Assign the arrays of a checkpoint to `variables`; any mismatch is a TrainingError."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise TrainingError(f"checkpoint {path} is missing") from None
    except (OSError, ValueError, EOFError) as exc:
        raise TrainingError(f"checkpoint {path} is corrupt ({type(exc).__name__})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise TrainingError(f"checkpoint {path} is corrupt ({type(exc).__name__})") from None
    for group, group_vars in variables.items():
        count = sum(1 for k in stored if k.startswith(f"{group}/"))
        if count != len(group_vars):
            raise TrainingError(
                f"checkpoint {path} does not fit this model ({group}: {count} arrays stored, "
                f"{len(group_vars)} expected)"
            )
        for i, v in enumerate(group_vars):
            value = stored[f"{group}/{i:05d}"]
            if tuple(value.shape) != tuple(v.shape):
                raise TrainingError(
                    f"checkpoint {path} does not fit this model ({v.name}: {value.shape} stored, "
                    f"{tuple(v.shape)} expected)"
                )
            v.assign(value)


def load_weights(path: Path, model: keras.Model) -> None:
    """Load model weights only (e.g. the best-epoch weights) from a checkpoint file."""
    load_checkpoint(path, {"model": model.weights})


# -- optimizers -----------------------------------------------------------------------------------


class ScheduledMomentumSGD(keras.optimizers.SGD):
    """SGD whose momentum is a variable, so one-cycle can change it every step in compiled code."""

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentum_var = self.add_variable(
            (), initializer=keras.initializers.Constant(self.momentum), name="momentum_value"
        )

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        momentum = ops.cast(self.momentum_var, variable.dtype)
        self.assign(
            m, ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate))
        )
        if self.nesterov:
            step = ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate))
            self.assign_add(variable, step)
        else:
            self.assign_add(variable, m)


def make_optimizer(spec: dict, schedule: str) -> keras.optimizers.Optimizer:
    """A Keras optimizer from config's `optimizer` dict (name, Keras kwargs, max_learning_rate)."""
    kwargs = {k: v for k, v in spec.items() if k not in ("name", "max_learning_rate")}
    name = str(spec.get("name", "Adam"))
    try:
        if schedule == "one-cycle" and name.lower() == "sgd":
            kwargs["momentum"] = ONE_CYCLE_MOMENTA[0]
            return ScheduledMomentumSGD(**kwargs)
        return keras.optimizers.get({"class_name": name, "config": kwargs})
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"cannot make optimizer {name} with {kwargs}: {exc}") from None


# -- loss and steps -------------------------------------------------------------------------------


def per_example_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy averaged over the tags: one value per example."""
    return keras.losses.binary_crossentropy(y_true, y_pred)


def global_batch_size(x: tf.Tensor) -> tf.Tensor:
    """The number of examples in the *global* batch, from one replica's share `x` (float32)."""
    local = tf.cast(tf.shape(x)[0], tf.float32)
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)


def global_batch_mean(per_example: tf.Tensor, total: tf.Tensor) -> tf.Tensor:
    """Sum of this replica's losses divided by the number of examples in the global batch."""
    return tf.math.divide_no_nan(tf.reduce_sum(per_example), tf.cast(total, per_example.dtype))


def _make_metrics(n_labels: int, prefix: str = "") -> dict[str, keras.metrics.Metric]:
    """Loss mean and macro (per-tag, then averaged) ROC-AUC / PR-AUC over windows."""
    return {
        "loss": keras.metrics.Mean(name=f"{prefix}loss"),
        "roc_auc": keras.metrics.AUC(
            curve="ROC", multi_label=True, num_labels=n_labels, name=f"{prefix}roc_auc"
        ),
        "pr_auc": keras.metrics.AUC(
            curve="PR", multi_label=True, num_labels=n_labels, name=f"{prefix}pr_auc"
        ),
    }


class _Steps:
    """The compiled train and eval steps of the custom loop, for any strategy.

    The loss is scaled before the gradients are taken (`scale_loss`: the identity unless the
    optimizer is a LossScaleOptimizer, which unscales them again in `apply_gradients` and skips a
    step whose gradients overflowed). With `jit`, the forward and backward pass run as one XLA
    computation per replica.
    """

    def __init__(self, strategy, model, optimizer, n_labels: int, *, jit: bool = False):
        self.strategy, self.model, self.optimizer = strategy, model, optimizer
        with strategy.scope():
            self.train_metrics = _make_metrics(n_labels)
            self.valid_metrics = _make_metrics(n_labels, "val_")

        def gradients(x, y, total):
            with tf.GradientTape() as tape:
                p = model(x, training=True)
                per_ex = per_example_loss(y, p)
                loss = global_batch_mean(per_ex, total)
                scaled = optimizer.scale_loss(loss)
            return loss, tape.gradient(scaled, model.trainable_variables), p, per_ex

        if jit:
            gradients = tf.function(gradients, jit_compile=True)

        def train_replica(x, y):
            loss, grads, p, per_ex = gradients(x, y, global_batch_size(x))
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            self._update(self.train_metrics, y, p, per_ex)
            return loss

        def eval_replica(x, y):
            p = model(x, training=False)
            self._update(self.valid_metrics, y, p, per_example_loss(y, p))

        @tf.function
        def train_step(batch):
            losses = strategy.run(train_replica, args=batch)
            return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

        @tf.function
        def eval_step(batch):
            strategy.run(eval_replica, args=batch)

        self.train_step, self.eval_step = train_step, eval_step

    @staticmethod
    def _update(metrics, y, p, per_ex):
        metrics["loss"].update_state(per_ex)
        metrics["roc_auc"].update_state(y, p)
        metrics["pr_auc"].update_state(y, p)

    @staticmethod
    def results(metrics: dict) -> dict[str, float]:
        return {m.name: float(m.result()) for m in metrics.values()}

    @staticmethod
    def reset(metrics: dict) -> None:
        for m in metrics.values():
            m.reset_state()


# -- the trainer ----------------------------------------------------------------------------------


class Trainer:
    """One run: builds model and optimizer under the strategy, restores, trains, checkpoints."""

    def __init__(
        self,
        model_fn: Callable[[], keras.Model],
        n_labels: int,
        run_dir: Path | None,
        options: TrainOptions,
        *,
        strategy: tf.distribute.Strategy | None = None,
        reporter: Reporter | None = None,
    ):
        self.model_fn, self.n_labels, self.opts = model_fn, n_labels, options
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.strategy = strategy or tf.distribute.get_strategy()
        self.reporter = reporter or PrintReporter()
        self.chief = is_chief(self.strategy)
        self.multi_worker = is_multi_worker(self.strategy)
        if options.schedule not in SCHEDULES:
            raise TrainingError(
                f"unknown schedule {options.schedule!r}: choose {', '.join(SCHEDULES)}"
            )
        # Keras fit's XLA step fails under a distribution strategy (its optimizer update calls
        # merge_call inside the compiled function); the custom loop compiles around it
        self.jit_needs_custom = options.jit and self.strategy is not tf.distribute.get_strategy()
        self.custom = options.custom or self.multi_worker or self.jit_needs_custom
        self.policy = dtype_policy(options.precision)
        self.tracker = Tracker()
        self.history: list[dict] = []
        self.start_epoch = 0
        self.checkpoint: str | None = None
        self.schedule: Schedule | None = None
        self._writers: dict[str, Any] = {}

    # -- setup --

    def _build(self) -> None:
        keras.utils.set_random_seed(self.opts.seed)
        with self.strategy.scope(), policy_scope(self.policy):
            self.model = self.model_fn()
            # `optimizer` follows the schedule; `updater` applies the gradients (the same one, or
            # a LossScaleOptimizer around it under mixed precision)
            self.optimizer = make_optimizer(self.opts.optimizer, self.opts.schedule)
            self.updater = self.optimizer
            if self.opts.precision == "mixed":
                self.updater = keras.optimizers.LossScaleOptimizer(self.optimizer)
            if not self.custom:
                self.model.compile(
                    optimizer=self.updater,
                    loss=keras.losses.BinaryCrossentropy(),
                    metrics=list(_make_metrics(self.n_labels).values())[1:],
                    jit_compile=self.opts.jit,
                )
            self.updater.build(self.model.trainable_variables)

    def _variables(self) -> dict[str, list]:
        return {"model": self.model.weights, "optimizer": self.updater.variables}

    def _restore(self, state: dict) -> None:
        self.start_epoch = int(state.get("epoch", 0))
        self.tracker = Tracker(**state.get("tracker", {}))
        self.history = list(state.get("history", []))
        self.checkpoint = state.get("checkpoint")
        if self.checkpoint:
            with self.strategy.scope():
                load_checkpoint(self.run_dir / self.checkpoint, self._variables())
            self.reporter.message(
                f"resuming after epoch {self.start_epoch} of {self.opts.epochs} from "
                f"{self.checkpoint} (optimizer step {self.step}); an epoch cut short runs again"
            )
        else:
            self.reporter.message("no epoch had finished: training starts from the beginning")

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def _prepare_data(self, train_ds, valid_ds):
        if self.multi_worker:  # every worker must run the same number of steps
            shard = tf.data.Options()
            shard.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.DATA
            )
            train_ds = train_ds.with_options(shard)
            if valid_ds is not None:
                valid_ds = valid_ds.with_options(shard)
                if self.opts.validation_steps is None:
                    self.opts.validation_steps = count_batches(valid_ds)
            if self.opts.steps_per_epoch is None:
                self.opts.steps_per_epoch = count_batches(train_ds)
        if self.opts.schedule != "constant" and self.opts.steps_per_epoch is None:
            self.opts.steps_per_epoch = count_batches(train_ds)
        if self.opts.steps_per_epoch is not None:
            train_ds = train_ds.repeat()
        if valid_ds is not None and self.opts.validation_steps is not None:
            valid_ds = valid_ds.repeat()
        return train_ds, valid_ds

    # -- running --

    def fit(self, train_ds, valid_ds=None, *, resume_state: dict | None = None) -> TrainResult:
        """Train from scratch, or from `resume_state` (the run's state.json)."""
        if resume_state is not None:
            self._check_precision(resume_state)
            self.opts.steps_per_epoch = resume_state.get(
                "steps_per_epoch", self.opts.steps_per_epoch
            )
            self.opts.validation_steps = resume_state.get(
                "validation_steps", self.opts.validation_steps
            )
        train_ds, valid_ds = self._prepare_data(train_ds, valid_ds)
        self.monitor = "val_pr_auc" if valid_ds is not None else "pr_auc"
        try:
            self._build()
            if resume_state is not None:
                self._restore(resume_state)
        except Exception as exc:  # the run folder keeps its state; the NOTE says what failed
            if self.run_dir is not None and self.chief:
                write_note(self.run_dir, f"could not start or resume: {exc}")
            raise
        self.schedule = Schedule(
            self.opts.schedule, self.opts.max_lr, self.opts.steps_per_epoch or 1, self.opts.epochs
        )
        if self.start_epoch >= self.opts.epochs:
            self.reporter.message(f"all {self.opts.epochs} epochs are done already")
            return self._finish("completed")
        if valid_ds is None:
            self.reporter.message("no validation split: monitoring the training PR-AUC")
        if self.multi_worker and not self.opts.custom:
            self.reporter.message(
                "Keras fit does not work across workers (keras#20585): using the custom loop"
            )
        elif self.jit_needs_custom and not self.opts.custom:
            self.reporter.message(
                f"XLA cannot compile Keras fit's step under {type(self.strategy).__name__}: "
                "using the custom loop"
            )
        self.status = "running"
        self._write_state()
        try:
            stopped = (self._custom_loop if self.custom else self._keras_fit)(train_ds, valid_ds)
        except KeyboardInterrupt:
            self._fail("interrupted", "interrupted by the user")
            raise
        except BaseException as exc:
            self._fail("failed", f"failed: {type(exc).__name__}: {exc}")
            raise
        return self._finish(stopped or "completed")

    def _check_precision(self, state: dict) -> None:
        """A run's checkpoints hold a loss scaler's variables only under mixed precision."""
        saved = state.get("precision", "float32")
        if state.get("checkpoint") and saved != self.opts.precision:
            where = f"{self.run_dir / STATE_FILE}" if self.run_dir is not None else "its state"
            raise TrainingError(
                f"the run was trained in {saved} precision ({where}), not {self.opts.precision}",
                hint=f"resume it with --precision {saved}, or start a new run",
            )

    def _current_lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def _apply_schedule(self, step: int) -> float:
        lr = self.schedule.lr(step) * self.tracker.lr_scale
        if self.tracker.lr_scale < 1.0 and self.opts.reduce_lr_min_lr:
            lr = max(lr, self.opts.reduce_lr_min_lr)
        self.optimizer.learning_rate = lr
        momentum = self.schedule.momentum(step)
        if momentum is not None and isinstance(self.optimizer, ScheduledMomentumSGD):
            self.optimizer.momentum_var.assign(momentum)
        return lr

    def _keras_fit(self, train_ds, valid_ds) -> str | None:
        trainer = self
        outcome: dict[str, str | None] = {"stopped": None}

        class Hooks(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                trainer._step = trainer.step
                trainer.reporter.epoch_begin(
                    epoch, trainer.opts.epochs, trainer.opts.steps_per_epoch
                )

            def on_train_batch_begin(self, batch, logs=None):
                trainer._apply_schedule(trainer._step)

            def on_train_batch_end(self, batch, logs=None):
                trainer._step += 1
                trainer._log_step(batch, dict(logs or {}))

            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items()}
                stop = trainer._end_epoch(epoch, logs)
                if stop:
                    outcome["stopped"] = stop
                    self.model.stop_training = True

        with warnings.catch_warnings():  # Keras learns an epoch's length by running out: fine
            warnings.filterwarnings("ignore", message="Your input ran out of data")
            self._run_fit(train_ds, valid_ds, Hooks())
        return outcome["stopped"]

    def _run_fit(self, train_ds, valid_ds, hooks: keras.callbacks.Callback) -> None:
        self.model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=self.opts.epochs,
            initial_epoch=self.start_epoch,
            steps_per_epoch=self.opts.steps_per_epoch,
            validation_steps=self.opts.validation_steps,
            callbacks=[keras.callbacks.TerminateOnNaN(), hooks],
            shuffle=False,  # the input pipeline shuffles
            verbose=0,
        )

    def _custom_loop(self, train_ds, valid_ds) -> str | None:
        steps = _Steps(self.strategy, self.model, self.updater, self.n_labels, jit=self.opts.jit)
        dist_train = self.strategy.experimental_distribute_dataset(train_ds)
        dist_valid = (
            self.strategy.experimental_distribute_dataset(valid_ds)
            if valid_ds is not None
            else None
        )
        train_iter = iter(dist_train) if self.opts.steps_per_epoch else None
        valid_iter = (
            iter(dist_valid) if dist_valid is not None and self.opts.validation_steps else None
        )
        for epoch in range(self.start_epoch, self.opts.epochs):
            self.reporter.epoch_begin(epoch, self.opts.epochs, self.opts.steps_per_epoch)
            steps.reset(steps.train_metrics)
            steps.reset(steps.valid_metrics)
            step = self.step
            batches = (
                (next(train_iter) for _ in range(self.opts.steps_per_epoch))
                if train_iter is not None
                else dist_train
            )
            for i, batch in enumerate(batches):
                self._apply_schedule(step)
                loss = float(steps.train_step(batch))
                step += 1
                if not math.isfinite(loss):
                    return "failed: the loss became NaN"
                self._log_step(i, steps.results(steps.train_metrics))
            logs = steps.results(steps.train_metrics)
            if dist_valid is not None:
                vbatches = (
                    (next(valid_iter) for _ in range(self.opts.validation_steps))
                    if valid_iter is not None
                    else dist_valid
                )
                for batch in vbatches:
                    steps.eval_step(batch)
                logs.update(steps.results(steps.valid_metrics))
            stop = self._end_epoch(epoch, logs)
            if stop:
                return stop
        return None

    # -- shared callbacks --

    def _writer(self, name: str):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.run_dir / "logs" / name))
        return self._writers[name]

    def _log_step(self, batch: int, logs: dict[str, float]) -> None:
        logs = {k: float(v) for k, v in logs.items() if k in ("loss", "roc_auc", "pr_auc")}
        self.reporter.step(batch, logs)
        if self.run_dir is None or not self.chief:
            return
        step = self.step
        with self._writer("train").as_default(step=step):
            for key, value in logs.items():
                tf.summary.scalar(f"batch_{key}", value)
            tf.summary.scalar("batch_learning_rate", self._current_lr())

    def _end_epoch(self, epoch: int, logs: dict[str, float]) -> str | None:
        """TensorBoard, tracker, checkpoints and state after each epoch; returns why to stop."""
        logs = {k: float(v) for k, v in logs.items() if k != "learning_rate"}
        logs["learning_rate"] = self._current_lr()
        if not math.isfinite(logs.get("loss", 0.0)):
            return "failed: the loss became NaN"  # keep the last good checkpoint
        value = logs.get(self.monitor, float("nan"))
        improved, stop, reduced = (
            self.tracker.update(value, epoch + 1, self.opts)
            if math.isfinite(value)
            else (False, False, False)
        )
        self.history.append({"epoch": epoch + 1, **logs})
        if self.run_dir is not None and self.chief:
            for split, prefix in (("train", ""), ("validation", "val_")):
                with self._writer(split).as_default(step=epoch + 1):
                    for key in ("loss", "roc_auc", "pr_auc"):
                        if prefix + key in logs:
                            tf.summary.scalar(f"epoch_{key}", logs[prefix + key])
            with self._writer("train").as_default(step=epoch + 1):
                tf.summary.scalar("epoch_learning_rate", logs["learning_rate"])
            for writer in self._writers.values():
                writer.flush()
            ckpt_dir = self.run_dir / "checkpoints"
            name = f"epoch-{epoch + 1:04d}.npz"
            save_checkpoint(ckpt_dir / name, self._variables())
            if improved:
                save_checkpoint(ckpt_dir / BEST_WEIGHTS, {"model": self.model.weights})
            self.checkpoint = f"checkpoints/{name}"
        self.start_epoch = epoch + 1
        self.reporter.epoch_end(epoch, logs)
        if reduced:
            self.reporter.message(
                f"{self.monitor} has not improved for {self.opts.reduce_lr_patience} epoch(s): "
                f"learning rate x{self.tracker.lr_scale:g}"
            )
        stop_reason = "stopped-early" if stop else None
        self.status = stop_reason or "running"
        self._write_state()
        self._prune()
        return stop_reason

    def _write_state(self) -> None:
        if self.run_dir is None or not self.chief:
            return
        state = {
            "status": self.status,
            "epoch": self.start_epoch,
            "epochs": self.opts.epochs,
            "step": self.step,
            "steps_per_epoch": self.opts.steps_per_epoch,
            "validation_steps": self.opts.validation_steps,
            "schedule": self.opts.schedule,
            "loop": "custom" if self.custom else "fit",
            "precision": self.opts.precision,
            "dtype_policy": self.policy,
            "jit": self.opts.jit,
            "monitor": self.monitor,
            "checkpoint": self.checkpoint,
            "tracker": asdict(self.tracker),
            "history": self.history,
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        _write_json(self.run_dir / STATE_FILE, state)

    def _prune(self) -> None:
        if self.run_dir is None or not self.chief:
            return
        ckpts = sorted((self.run_dir / "checkpoints").glob("epoch-*.npz"))
        for old in ckpts[: -self.opts.keep_checkpoints]:
            if f"checkpoints/{old.name}" != self.checkpoint:
                old.unlink()

    def _fail(self, status: str, note: str) -> None:
        self.status = status
        if self.run_dir is None or not self.chief:
            return
        with contextlib.suppress(Exception):
            self._write_state()
        write_note(
            self.run_dir,
            f"{note}; {self.start_epoch} epoch(s) saved. Continue with "
            f"`orpheus train --resume {self.run_dir.name}`",
        )

    def _finish(self, status: str) -> TrainResult:
        """Save model.keras (best-epoch weights when known) and metrics.json; clear the NOTE."""
        self.status = status
        model_path = None
        if self.run_dir is not None and self.chief:
            self._write_state()
            model_path = self.run_dir / MODEL_FILE
            export_model(self.model_fn, self.run_dir, model_path)
            metrics = {
                "status": status,
                "epochs_done": self.start_epoch,
                "monitor": self.monitor,
                "best": self.tracker.best,
                "best_epoch": self.tracker.best_epoch,
                "model_weights": "best epoch" if self.tracker.best_epoch else "last epoch",
                "history": self.history,
            }
            previous = _read_json(self.run_dir / METRICS_FILE) or {}
            _write_json(self.run_dir / METRICS_FILE, {**previous, "training": metrics})
            if status.startswith("failed"):
                write_note(self.run_dir, status)
            else:
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / NOTE_FILE).unlink()
        for writer in self._writers.values():
            writer.close()
        return TrainResult(
            status=status,
            epochs_done=self.start_epoch,
            best=self.tracker.best,
            best_epoch=self.tracker.best_epoch,
            monitor=self.monitor,
            history=self.history,
            model_path=model_path,
        )


def export_model(model_fn: Callable[[], keras.Model], run_dir: Path, path: Path) -> None:
    """Save the model uncompiled (safe_mode loadable) with the best or else the last weights."""
    model = model_fn()
    best = Path(run_dir) / "checkpoints" / BEST_WEIGHTS
    state = read_state(run_dir) or {}
    if best.exists():
        load_weights(best, model)
    elif state.get("checkpoint"):
        load_checkpoint(Path(run_dir) / state["checkpoint"], {"model": model.weights})
    fd, tmp = tempfile.mkstemp(prefix=".model.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def count_batches(ds: tf.data.Dataset) -> int:
    """Batches in one pass over a finite dataset (known cardinality, else counted)."""
    n = int(ds.cardinality())
    if n >= 0:
        return n
    if n == int(tf.data.INFINITE_CARDINALITY):
        raise TrainingError("the dataset repeats forever: give --steps-per-epoch")
    return int(ds.reduce(np.int64(0), lambda c, _: c + 1))


# -- LR range test --------------------------------------------------------------------------------


def find_lr(
    model_fn: Callable[[], keras.Model],
    n_labels: int,
    train_ds: tf.data.Dataset,
    out_dir: Path,
    *,
    optimizer: dict,
    strategy: tf.distribute.Strategy | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    seed: int = 0,
) -> dict:
    """LR range test: raise the LR exponentially each step, record the loss, plot, suggest.

    Stops early once the smoothed loss exceeds 4x its minimum. The suggestion is the LR at the
    smoothed-loss minimum divided by 10 (a step back from where training starts to diverge).
    Writes `lr_find.png` and `lr_find.json` in `out_dir`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        model = model_fn()
        opt = make_optimizer(optimizer, "constant")
        opt.build(model.trainable_variables)
    steps = _Steps(strategy, model, opt, n_labels)
    batches = iter(strategy.experimental_distribute_dataset(train_ds.repeat()))
    factor = (end_lr / start_lr) ** (1.0 / max(1, num_steps - 1))
    lrs, losses, smoothed = [], [], []
    avg, best = 0.0, math.inf
    for i in range(num_steps):
        lr = start_lr * factor**i
        opt.learning_rate = lr
        loss = float(steps.train_step(next(batches)))
        avg = 0.98 * avg + 0.02 * loss
        smooth = avg / (1 - 0.98 ** (i + 1))
        lrs.append(lr)
        losses.append(loss)
        smoothed.append(smooth)
        best = min(best, smooth)
        if not math.isfinite(smooth) or smooth > 4 * best:
            break
    i_min = int(np.nanargmin(smoothed))
    suggestion = lrs[i_min] / 10.0
    result = {
        "learning_rates": lrs,
        "losses": losses,
        "smoothed_losses": smoothed,
        "min_loss_lr": lrs[i_min],
        "suggestion": suggestion,
    }
    out_dir = Path(out_dir)
    _write_json(out_dir / "lr_find.json", result)
    _plot_lr_find(lrs, smoothed, suggestion, out_dir / "lr_find.png")
    return result


def _plot_lr_find(lrs: Iterable[float], losses: Iterable[float], suggestion: float, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(list(lrs), list(losses))
    ax.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested {suggestion:.2g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.set_title("LR range test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
