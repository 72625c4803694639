"""Training under tf.distribute on the CPU: MirroredStrategy over two logical CPUs,
MultiWorkerMirroredStrategy over two local processes, and XLA with mixed precision under a
strategy. Each runs in a child process, because a strategy's device setup is per process."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time

import numpy as np
import pytest
from process_helpers import ENV, PY, ROOT, free_ports, run_script

MIRRORED = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from orpheus import training
from orpheus.models import build_model
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 24, 96)).astype(np.float32)
y = (rng.random((32, 4)) < 0.4).astype(np.float32)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True)
model_fn = lambda: build_model("log-mel", 4, n_filters=2, n_dense_units=8, input_length=24,
                               dropout=0.0)
out = {}
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one per process, as in a run
for custom in (False, True):
    out["replicas"] = strategy.num_replicas_in_sync
    opts = training.TrainOptions(epochs=2, custom=custom)
    trainer = training.Trainer(model_fn, 4, None, opts, strategy=strategy)
    out[f"losses_{custom}"] = [h["loss"] for h in trainer.fit(ds, ds).history]
    out[f"step_{custom}"] = trainer.step
print(json.dumps(out))
"""


def test_mirrored_strategy_on_two_logical_cpus_trains_with_both_loops():
    done = run_script(MIRRORED)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    # the same loss, same steps, same numbers from Keras fit and the custom loop
    np.testing.assert_allclose(out["losses_False"], out["losses_True"], rtol=1e-4)
    assert out["losses_True"][1] < out["losses_True"][0]
    assert out["step_False"] == out["step_True"] == 8  # 2 epochs x 4 global batches


WORKER = """
import sys, numpy as np
from pathlib import Path
from orpheus import training
hosts, index, out = sys.argv[1].split(","), int(sys.argv[2]), Path(sys.argv[3])
strategy, _ = training.make_strategy(worker_hosts=hosts, worker_index=index)
import tensorflow as tf
from orpheus.models import build_model
rng = np.random.default_rng(0)
x = rng.normal(size=(48, 24, 96)).astype(np.float32)
y = (rng.random((48, 4)) < 0.4).astype(np.float32)
ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(48, seed=1).batch(8, drop_remainder=True)
model_fn = lambda: build_model("log-mel", 4, n_filters=2, n_dense_units=8, input_length=24)
run_dir = training.create_run(out, "mw", config={}, labels=list("abcd")) if index == 0 else None
trainer = training.Trainer(model_fn, 4, run_dir, training.TrainOptions(epochs=2),
                           strategy=strategy)
result = trainer.fit(ds, ds.take(2))
np.savez(out / f"weights{index}.npz", *[w.numpy() for w in trainer.model.trainable_weights])
print(result.status, trainer.step, trainer.custom)
"""


def test_multi_worker_mirrored_two_local_workers_end_with_identical_weights(tmp_path):
    hosts = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    procs = [
        subprocess.Popen(
            [PY, "-c", textwrap.dedent(WORKER), hosts, str(i), str(tmp_path)],
            env=ENV,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        deadline = time.monotonic() + 300
        for p in procs:
            outputs.append(p.communicate(timeout=max(1, deadline - time.monotonic())))
    finally:
        for p in procs:  # a worker waiting for its peer ignores SIGTERM
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
        # the custom loop is used (Keras fit is broken across workers); 2 epochs x 6 batches
        assert out.split()[-3:] == ["completed", "12", "True"], out
    # every trainable weight is identical (BatchNorm's moving statistics are each worker's own,
    # as with any non-synchronised BatchNorm; the chief's are the ones saved)
    w0, w1 = (np.load(tmp_path / f"weights{i}.npz") for i in range(2))
    assert len(w0.files) == len(w1.files) > 10
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    state = json.loads((tmp_path / "mw/state.json").read_text())
    assert state["epoch"] == 2 and state["loop"] == "custom"
    assert (tmp_path / "mw/model.keras").is_file()


# -- the commands -----------------------------------------------------------------------------


MIRRORED_JIT = """
import json, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from orpheus import training
from orpheus.models import build_model
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 24, 96)).astype(np.float32)
y = (rng.random((32, 4)) < 0.4).astype(np.float32)
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True)
model_fn = lambda: build_model("log-mel", 4, n_filters=2, n_dense_units=8, input_length=24,
                               backend_filters=8, dropout=0.0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
opts = training.TrainOptions(epochs=2, steps_per_epoch=2, precision="mixed", jit=True)
trainer = training.Trainer(model_fn, 4, None, opts, strategy=strategy)
losses = [h["loss"] for h in trainer.fit(ds).history]
print(json.dumps({"custom": trainer.custom, "losses": losses, "step": trainer.step,
                  "scaled_steps": int(trainer.updater.step_counter.numpy())}))
"""


@pytest.mark.slow
def test_jit_with_mixed_precision_under_mirrored_strategy_trains_in_the_custom_loop():
    """On a GPU machine the strategy is MirroredStrategy, under which Keras fit's XLA step
    fails: --jit then trains in the custom loop, whose XLA forward/backward pass sits between
    the strategy's all-reduce and the loss scaler's update."""
    done = run_script(MIRRORED_JIT, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "XLA cannot compile Keras fit's step under MirroredStrategy" in done.stdout
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["custom"] is True
    assert out["step"] == out["scaled_steps"] == 4  # 2 epochs x 2 global batches, all applied
    assert all(np.isfinite(out["losses"])) and out["losses"][1] < out["losses"][0]
