"""Training: strategies, the Keras-fit and custom loops, LR schedules, checkpoints, resume.

    options      TrainOptions, Tracker, TrainResult, TrainingError (no TensorFlow)
    progress     the Reporter protocol, PrintReporter, TrainingEta (no TensorFlow)
    strategy     make_strategy, is_chief, dtype_policy: where and in what precision it runs
    schedules    Schedule (LR and momentum per step) and make_optimizer
    steps        the loss, the metrics, the custom loop's compiled steps
    loops        Keras fit and the custom loop, driving the Trainer's hooks
    trainer      Trainer: one run's model, optimizer, epochs, checkpoints and state
    checkpoints  save/load variables as .npz, export model.keras
    lr_find      the LR range test
    lifecycle    a whole `orpheus train`: create or resume a run, train, export, register

The run folder itself (create, read state, NOTE) belongs to `orpheus.runs`. Names are exported
lazily, so `from orpheus.training.options import ...` does not load TensorFlow.
"""

# ruff: noqa: F401 (the TYPE_CHECKING imports are re-exports, listed in __all__ at run time)
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ hands out, for readers, type checkers, import scanners
    from orpheus.runs import create_run, read_state, write_note
    from orpheus.training.checkpoints import (
        export_model,
        load_checkpoint,
        load_weights,
        save_checkpoint,
    )
    from orpheus.training.lr_find import find_lr
    from orpheus.training.options import (
        PRECISIONS,
        SCHEDULES,
        Tracker,
        TrainingError,
        TrainOptions,
        TrainResult,
    )
    from orpheus.training.progress import PrintReporter, Reporter, TrainingEta
    from orpheus.training.schedules import Schedule, ScheduledMomentumSGD, make_optimizer
    from orpheus.training.steps import (
        count_batches,
        global_batch_mean,
        global_batch_size,
        per_example_loss,
    )
    from orpheus.training.strategy import (
        dtype_policy,
        is_chief,
        is_multi_worker,
        make_strategy,
        policy_scope,
    )
    from orpheus.training.trainer import Trainer

_EXPORTS = {
    "options": (
        "SCHEDULES",
        "PRECISIONS",
        "TrainOptions",
        "Tracker",
        "TrainResult",
        "TrainingError",
    ),
    "progress": ("Reporter", "PrintReporter", "TrainingEta"),
    "strategy": ("make_strategy", "is_chief", "is_multi_worker", "dtype_policy", "policy_scope"),
    "schedules": ("Schedule", "ScheduledMomentumSGD", "make_optimizer"),
    "steps": ("per_example_loss", "global_batch_size", "global_batch_mean", "count_batches"),
    "trainer": ("Trainer",),
    "checkpoints": ("save_checkpoint", "load_checkpoint", "load_weights", "export_model"),
    "lr_find": ("find_lr",),
}
_RUNS = ("create_run", "read_state", "write_note")  # the run folder's, re-exported
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [*_WHERE, *_RUNS]


def __getattr__(name: str) -> Any:
    if name in _RUNS:
        return getattr(importlib.import_module("orpheus.runs"), name)
    if name in _WHERE:
        return getattr(importlib.import_module(f"orpheus.training.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'orpheus.training' has no attribute {name!r}")
