"""Training progress: the Reporter protocol the trainer talks to, a plain one, and the run's ETA.

No TensorFlow here: the CLI's rich bar implements `Reporter` and uses `TrainingEta`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


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
