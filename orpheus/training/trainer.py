"""The Trainer: one run's model and optimizer under a strategy, either loop, checkpoints, resume.

Both loops share one epoch-end routine, so TensorBoard scalars, checkpoints, the best-by-
validation-PR-AUC weights, early stopping and reduce-LR-on-plateau behave identically whichever
loop runs.

A run folder holds everything needed to continue after a crash, even a SIGKILL:
`checkpoints/epoch-NNNN.npz` (model and optimizer variables and the dropout generators' states,
written atomically every epoch), `state.json` (epochs done, optimizer step, the callbacks'
counters and best value, history), written after the checkpoint it points to. Resuming restores
the model and every optimizer variable (its step, its moments), so every schedule (constant,
cyclic, one-cycle) continues where it stopped; an epoch interrupted midway is run again from its
start. The input pipeline is the caller's: `lifecycle`'s starts over from its seed, so a resumed
epoch's batches are not those an uninterrupted run would draw; head and fine-tuning runs pick up
their data where the saved epochs left it (`orpheus.finetune`), and so continue exactly.

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
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from orpheus import runs
from orpheus.io import write_json_atomic
from orpheus.training.checkpoints import (
    epoch_checkpoint,
    export_model,
    load_checkpoint,
    save_checkpoint,
)
from orpheus.training.loops import custom_loop, keras_fit
from orpheus.training.options import (
    SCHEDULES,
    Tracker,
    TrainingError,
    TrainOptions,
    TrainResult,
)
from orpheus.training.progress import PrintReporter, Reporter
from orpheus.training.schedules import Schedule, ScheduledMomentumSGD, make_optimizer
from orpheus.training.steps import count_batches, make_metrics
from orpheus.training.strategy import (
    dtype_policy,
    is_chief,
    is_multi_worker,
    peer_lost,
    policy_scope,
)

STOPPED_EARLY = "stopped-early"  # a state status: the run is done, short of its epochs


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
        export_as: Callable[[keras.Model], keras.Model] | None = None,
    ):
        """`export_as` makes the trained model into the one model.keras holds (default: itself)."""
        self.model_fn, self.n_labels, self.opts = model_fn, n_labels, options
        self.export_as = export_as
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
        self._written: dict | None = None  # the state last written to state.json
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
                    metrics=list(make_metrics(self.n_labels).values())[1:],
                    jit_compile=self.opts.jit,
                )
            self.updater.build(self.model.trainable_variables)

    def _variables(self) -> dict[str, list]:
        """A checkpoint's groups: the model's weights, the optimizer's variables, and the states
        of the model's random generators (dropout), so a resumed run draws what an uninterrupted
        one would."""
        weights = {id(w) for w in self.model.weights}
        rng = [v for v in self.model.variables if id(v) not in weights]
        return {"model": self.model.weights, "optimizer": self.updater.variables, "rng": rng}

    def _restore(self, state: dict) -> None:
        self.start_epoch = int(state.get("epoch", 0))
        self.tracker = Tracker(**state.get("tracker", {}))
        self.history = list(state.get("history", []))
        self.checkpoint = state.get("checkpoint")
        if self.checkpoint:
            with self.strategy.scope():
                # a checkpoint written before they held "rng" leaves the generators as built
                load_checkpoint(
                    self.run_dir / self.checkpoint, self._variables(), optional=("rng",)
                )
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
                runs.write_note(self.run_dir, f"could not start or resume: {exc}")
            raise
        self.schedule = Schedule(
            self.opts.schedule, self.opts.max_lr, self.opts.steps_per_epoch or 1, self.opts.epochs
        )
        if (resume_state or {}).get("status") == STOPPED_EARLY:
            self.reporter.message(f"the run stopped early after epoch {self.start_epoch} already")
            return self._finish(STOPPED_EARLY)
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
            stopped = (custom_loop if self.custom else keras_fit)(self, train_ds, valid_ds)
        except KeyboardInterrupt:
            self._fail("interrupted", "interrupted by the user")
            raise
        except BaseException as exc:
            lost = peer_lost(exc) if self.multi_worker else None
            self._fail("failed", lost or f"failed: {type(exc).__name__}: {exc}")
            if lost is None:
                raise
        else:
            return self._finish(stopped or "completed")
        # raised out of the handler, so the failed collective's frames go now (the thread pool
        # TensorFlow's all-reduce left in them would otherwise print a traceback at exit)
        run = self.run_dir.name if self.run_dir is not None else "RUN"
        raise TrainingError(lost, hint=f"restart every worker with --resume {run}")

    def _check_precision(self, state: dict) -> None:
        """A run's checkpoints hold a loss scaler's variables only under mixed precision."""
        saved = state.get("precision", "float32")
        if state.get("checkpoint") and saved != self.opts.precision:
            where = f"{self.run_dir / runs.STATE_FILE}" if self.run_dir is not None else "its state"
            raise TrainingError(
                f"the run was trained in {saved} precision ({where}), not {self.opts.precision}",
                hint=f"resume it with --precision {saved}, or start a new run",
            )

    def _current_lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))

    def apply_schedule(self, step: int) -> float:
        lr = self.schedule.lr(step) * self.tracker.lr_scale
        if self.tracker.lr_scale < 1.0 and self.opts.reduce_lr_min_lr:
            lr = max(lr, self.opts.reduce_lr_min_lr)
        self.optimizer.learning_rate = lr
        momentum = self.schedule.momentum(step)
        if momentum is not None and isinstance(self.optimizer, ScheduledMomentumSGD):
            self.optimizer.momentum_var.assign(momentum)
        return lr

    # -- shared callbacks --

    def _writer(self, name: str):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.run_dir / "logs" / name))
        return self._writers[name]

    def log_step(self, batch: int, logs: dict[str, float]) -> None:
        logs = {k: float(v) for k, v in logs.items() if k in ("loss", "roc_auc", "pr_auc")}
        self.reporter.step(batch, logs)
        if self.run_dir is None or not self.chief:
            return
        step = self.step
        with self._writer("train").as_default(step=step):
            for key, value in logs.items():
                tf.summary.scalar(f"batch_{key}", value)
            tf.summary.scalar("batch_learning_rate", self._current_lr())

    def end_epoch(self, epoch: int, logs: dict[str, float]) -> str | None:
        """TensorBoard, tracker, checkpoints and state after each epoch; returns why to stop."""
        logs = {k: float(v) for k, v in logs.items() if k != "learning_rate"}
        logs["learning_rate"] = self._current_lr()
        if not math.isfinite(logs.get("loss", 0.0)):
            return "failed: the loss became NaN"  # keep the last good checkpoint
        value = logs.get(self.monitor, float("nan"))
        _, stop, reduced = (
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
            checkpoint = epoch_checkpoint(epoch + 1)
            save_checkpoint(self.run_dir / checkpoint, self._variables())
            self.checkpoint = checkpoint
        self.start_epoch = epoch + 1
        self.reporter.epoch_end(epoch, logs)
        if reduced:
            self.reporter.message(
                f"{self.monitor} has not improved for {self.opts.reduce_lr_patience} epoch(s): "
                f"learning rate x{self.tracker.lr_scale:g}"
            )
        stop_reason = STOPPED_EARLY if stop else None
        self.status = stop_reason or "running"
        self._write_state()
        self._prune()
        return stop_reason

    def _write_state(self) -> None:
        if self.run_dir is None or not self.chief:
            return
        state = self._state()
        write_json_atomic(self.run_dir / runs.STATE_FILE, state)
        self._written = state

    def _state(self) -> dict:
        return {
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
            "history": list(self.history),
            "updated": _now(),
        }

    def _prune(self) -> None:
        """Delete all but the last `keep_checkpoints` epochs' checkpoints, keeping the best
        epoch's: model.keras takes its weights (`export_model`)."""
        if self.run_dir is None or not self.chief:
            return
        ckpts = sorted((self.run_dir / "checkpoints").glob("epoch-*.npz"))
        keep = {self.checkpoint, epoch_checkpoint(self.tracker.best_epoch)}
        for old in ckpts[: -self.opts.keep_checkpoints]:
            if f"checkpoints/{old.name}" not in keep:
                old.unlink()

    def _fail(self, status: str, note: str) -> None:
        """Mark the run stopped at the last state written, and leave a NOTE on resuming it.

        Not at this trainer's fields: a Ctrl-C or SIGTERM can land midway through an epoch's
        end, with the tracker and history moved on and the checkpoint written but the state not
        yet. The run then stands, whole, at the epoch before, and `--resume` redoes that one. A
        run that had stopped early keeps saying so, and `--resume` only saves its model.
        """
        self.status = status
        if self.run_dir is None or not self.chief:
            return
        written = self._written or self._state()
        if written["status"] != STOPPED_EARLY:
            written = {**written, "status": status}
        state = {**written, "updated": _now()}
        with contextlib.suppress(Exception):
            write_json_atomic(self.run_dir / runs.STATE_FILE, state)
        runs.write_note(
            self.run_dir,
            f"{note}; {state['epoch']} epoch(s) saved. Continue with "
            f"`orpheus train --resume {self.run_dir.name}`",
        )

    def _finish(self, status: str) -> TrainResult:
        """Save model.keras (best-epoch weights when known) and metrics.json; clear the NOTE.

        In that order, so that a run interrupted on the way keeps its NOTE and a state that
        `--resume` finishes, never a state that vouches for a model.keras not yet written.
        """
        self.status = status
        model_path = None
        if self.run_dir is not None and self.chief:
            model_path = self.run_dir / runs.MODEL_FILE
            export_model(self.model_fn, self.run_dir, model_path, self.export_as)
            self._write_state()
            metrics = {
                "status": status,
                "epochs_done": self.start_epoch,
                "monitor": self.monitor,
                "best": self.tracker.best,
                "best_epoch": self.tracker.best_epoch,
                "model_weights": "best epoch" if self.tracker.best_epoch else "last epoch",
                "history": self.history,
            }
            runs.merge_metrics(self.run_dir, "training", metrics)
            if status.startswith("failed"):
                runs.write_note(self.run_dir, status)
            else:
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / runs.NOTE_FILE).unlink()
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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
