"""The LR range test: raise the learning rate exponentially, one step each, plot the loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from orpheus.io import write_json_atomic
from orpheus.training.schedules import make_optimizer
from orpheus.training.steps import Steps


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
    steps = Steps(strategy, model, opt, n_labels)
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
    write_json_atomic(out_dir / "lr_find.json", result)
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
