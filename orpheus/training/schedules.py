"""Learning-rate schedules (constant, cyclic, one-cycle) and the optimizer that follows them.

`Schedule` is plain arithmetic on the optimizer step; the trainer sets the optimizer's learning
rate (and, for one-cycle SGD, its momentum) from it before every step, so a resumed run, whose
optimizer step is restored, continues on the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from orpheus.training.options import TrainingError

ONE_CYCLE_WARMUP = 0.4  # the original's one-cycle: 40 % warm-up, then cosine to 0
ONE_CYCLE_DIV = 25.0
ONE_CYCLE_MOMENTA = (0.95, 0.85)


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
