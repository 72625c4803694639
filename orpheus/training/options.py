"""What a run is asked to do and what it tracks: options, the monitored-value tracker, the
result. No TensorFlow here: the CLI checks options with these before TensorFlow loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orpheus import config as config_mod
from orpheus.errors import OrpheusError

SCHEDULES = ("constant", "cyclic", "one-cycle")
PRECISIONS = ("float32", "mixed")
_MT = config_mod.settings().model_training  # the config's defaults, from its one SCHEMA
DEFAULT_LR = 0.001  # Keras's default for an optimizer config that names none


class TrainingError(OrpheusError):
    """Training cannot start or continue (bad option, unusable checkpoint, no device)."""


@dataclass
class TrainOptions:
    """What a run needs beyond data and model; `from_config` reads config.json's sections."""

    epochs: int = _MT.epochs
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    schedule: str = _MT.schedule
    custom: bool = False
    optimizer: dict = field(default_factory=lambda: dict(_MT.optimizer))
    early_stop_patience: int | None = None
    early_stop_min_delta: float | None = None
    reduce_lr_patience: int | None = None
    reduce_lr_min_delta: float | None = None
    reduce_lr_factor: float | None = None
    reduce_lr_min_lr: float | None = None
    seed: int = _MT.seed
    keep_checkpoints: int = 3
    precision: str = "float32"
    jit: bool = False

    @classmethod
    def from_config(cls, cfg: dict, **overrides: Any) -> TrainOptions:
        mt = config_mod.settings(cfg).model_training
        values = dict(
            epochs=mt.epochs,
            steps_per_epoch=mt.iterations,
            schedule=mt.schedule,
            optimizer=dict(mt.optimizer),
            early_stop_patience=mt.early_stop_patience,
            early_stop_min_delta=mt.early_stop_min_delta,
            reduce_lr_patience=mt.reduceLRoP_patience,
            reduce_lr_min_delta=mt.reduceLRoP_min_delta,
            reduce_lr_factor=mt.reduceLRoP_factor,
            reduce_lr_min_lr=mt.reduceLRoP_min_lr,
            seed=mt.seed,
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def max_lr(self) -> float:
        opt = self.optimizer
        return float(opt.get("max_learning_rate", opt.get("learning_rate", DEFAULT_LR)))


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
