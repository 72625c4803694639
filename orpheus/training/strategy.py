"""Where training runs: the distribution strategy, chief or worker, and the dtype policy."""

from __future__ import annotations

import contextlib
import json
import os
import re

import keras
import tensorflow as tf

from orpheus.training.options import PRECISIONS, TrainingError


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


def peer_lost(exc: BaseException) -> str | None:
    """One line when a multi-worker step failed because a peer worker is gone (killed, crashed,
    unreachable), else None. The collective ops then fail with Unavailable (connection reset,
    socket closed) or, after TensorFlow's own health checks, Aborted or DeadlineExceeded; the
    message names the peer as e.g. "remote target /job:worker/replica:0/task:1"."""
    lost = (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError)
    if not isinstance(exc, lost):
        return None
    found = re.search(
        r"(?:remote target |check alive failed, )/job:\w+/replica:\d+/task:(\d+)", str(exc)
    )
    who = f"worker {found.group(1)}" if found else "a peer worker"
    return f"{who} of the run is gone: a multi-worker run cannot go on without it"


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
