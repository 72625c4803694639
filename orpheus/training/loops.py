"""The two training loops, Keras fit and the custom loop, driving the same Trainer hooks
(`apply_schedule` before each step, `log_step` after it, `end_epoch` after validation)."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import keras

from orpheus.training.steps import Steps

if TYPE_CHECKING:
    from orpheus.training.trainer import Trainer


def keras_fit(trainer: Trainer, train_ds, valid_ds) -> str | None:
    """Keras fit, with the trainer's hooks as a callback; returns why it stopped early."""
    outcome: dict[str, str | None] = {"stopped": None}

    class Hooks(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            trainer._step = trainer.step
            trainer.reporter.epoch_begin(epoch, trainer.opts.epochs, trainer.opts.steps_per_epoch)

        def on_train_batch_begin(self, batch, logs=None):
            trainer.apply_schedule(trainer._step)

        def on_train_batch_end(self, batch, logs=None):
            trainer._step += 1
            trainer.log_step(batch, dict(logs or {}))

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            stop = trainer.end_epoch(epoch, logs)
            if stop:
                outcome["stopped"] = stop
                self.model.stop_training = True

    with warnings.catch_warnings():  # Keras learns an epoch's length by running out: fine
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        trainer.model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=trainer.opts.epochs,
            initial_epoch=trainer.start_epoch,
            steps_per_epoch=trainer.opts.steps_per_epoch,
            validation_steps=trainer.opts.validation_steps,
            callbacks=[keras.callbacks.TerminateOnNaN(), Hooks()],
            shuffle=False,  # the input pipeline shuffles
            verbose=0,
        )
    return outcome["stopped"]


def custom_loop(trainer: Trainer, train_ds, valid_ds) -> str | None:
    """The custom loop (any strategy, multi-worker, XLA); returns why it stopped early."""
    self = trainer
    steps = Steps(self.strategy, self.model, self.updater, self.n_labels, jit=self.opts.jit)
    dist_train = self.strategy.experimental_distribute_dataset(train_ds)
    dist_valid = (
        self.strategy.experimental_distribute_dataset(valid_ds) if valid_ds is not None else None
    )
    train_iter = iter(dist_train) if self.opts.steps_per_epoch else None
    valid_iter = iter(dist_valid) if dist_valid is not None and self.opts.validation_steps else None
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
            self.apply_schedule(step)
            loss = float(steps.train_step(batch))
            step += 1
            if not math.isfinite(loss):
                return "failed: the loss became NaN"
            self.log_step(i, steps.results(steps.train_metrics))
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
        stop = self.end_epoch(epoch, logs)
        if stop:
            return stop
    return None
