"""The loss, the metrics and the compiled train/eval steps of the custom loop, for any strategy.

Both loops minimise the same loss: binary cross-entropy averaged over the tags of an example,
then over the *global* batch (the original scaled its two loops differently, seed-inventory §7.6).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from orpheus.training.options import TrainingError


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


def make_metrics(n_labels: int, prefix: str = "") -> dict[str, keras.metrics.Metric]:
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


class Steps:
    """The compiled train and eval steps of the custom loop, for any strategy.

    The loss is scaled before the gradients are taken (`scale_loss`: the identity unless the
    optimizer is a LossScaleOptimizer, which unscales them again in `apply_gradients` and skips a
    step whose gradients overflowed). With `jit`, the forward and backward pass run as one XLA
    computation per replica.
    """

    def __init__(self, strategy, model, optimizer, n_labels: int, *, jit: bool = False):
        self.strategy, self.model, self.optimizer = strategy, model, optimizer
        with strategy.scope():
            self.train_metrics = make_metrics(n_labels)
            self.valid_metrics = make_metrics(n_labels, "val_")

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


def count_batches(ds: tf.data.Dataset) -> int:
    """Batches in one pass over a finite dataset (known cardinality, else counted)."""
    n = int(ds.cardinality())
    if n >= 0:
        return n
    if n == int(tf.data.INFINITE_CARDINALITY):
        raise TrainingError("the dataset repeats forever: give --steps-per-epoch")
    return int(ds.reduce(np.int64(0), lambda c, _: c + 1))
