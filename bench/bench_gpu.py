"""Training throughput of the Pons models on a GPU: windows/s, step time, GPU utilisation.

Both front ends (log-mel: 3 s windows of 188 frames x 96 mels; waveform: 3 s at 16 kHz) at the
paper's width (16 filters, 500 dense units, a 512-wide back end, 50 tags), at batch 64 and 256,
in float32 and in mixed precision (float16 on a GPU), each with and without XLA. The windows are
random, already in device memory, so only the training step is timed (`train_on_batch`, whose
returned loss waits for the step to finish). GPU utilisation is nvidia-smi's (or pynvml's),
sampled every 100 ms while the timed steps run. The baseline of each row is float32 without
XLA at the same front end and batch.

Plain Keras 3, so it runs under any backend: `KERAS_BACKEND=jax python bench/bench_gpu.py` on a
machine with JAX and no TensorFlow, or with TensorFlow; every row names the backend it measured.
Under JAX "no XLA" means Keras's un-jitted step (each operation dispatched on its own). Without a
GPU it says so and exits 0. `--cpu` (or ORPHEUS_BENCH_GPU_ON_CPU=1) runs the same matrix on the
CPU instead, mixed precision meaning bfloat16 there, to check the script; shrink it with
ORPHEUS_BENCH_GPU_BATCHES=4 ORPHEUS_BENCH_GPU_STEPS=2 ORPHEUS_BENCH_GPU_SECONDS=1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCHES = [int(b) for b in os.environ.get("ORPHEUS_BENCH_GPU_BATCHES", "64,256").split(",")]
STEPS = int(os.environ.get("ORPHEUS_BENCH_GPU_STEPS", 20))
SECONDS = float(os.environ.get("ORPHEUS_BENCH_GPU_SECONDS", 3))
ON_CPU = os.environ.get("ORPHEUS_BENCH_GPU_ON_CPU") == "1" or "--cpu" in sys.argv[1:]
WARMUP = 3  # steps before timing: tracing, XLA compilation, autotuning
N_LABELS = 50


def gpus(backend: str) -> list[str]:
    """The GPUs the Keras backend sees (TensorFlow's with memory growth, as Orpheus sets it)."""
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform in ("gpu", "cuda", "rocm")]
    if backend == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if backend == "tensorflow":
        import tensorflow as tf

        found = tf.config.list_physical_devices("GPU")
        for gpu in found:
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpu, True)
        return [gpu.name for gpu in found]
    return []


class Utilisation:
    """Mean GPU utilisation (%) over a span, sampled every 100 ms; None where nothing can tell."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._read = self._reader()
        self._thread = None

    @staticmethod
    def _reader():
        with contextlib.suppress(Exception):
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return None
        query = [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
        return lambda: float(
            subprocess.run(query, capture_output=True, text=True).stdout.split()[0]
        )

    def __enter__(self):
        if self._read is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.1):
            with contextlib.suppress(Exception):
                self.samples.append(self._read())

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def measure(frontend: str, batch: int, mixed: bool, jit: bool, on_gpu: bool) -> dict:
    """Windows/s, step ms and GPU utilisation of `STEPS` training steps after the warm-up."""
    import keras

    from orpheus.audio import LogMelParams
    from orpheus.models.pons import build_model

    length = LogMelParams().frames(SECONDS) if frontend == "log-mel" else int(SECONDS * 16000)
    policy = ("mixed_float16" if on_gpu else "mixed_bfloat16") if mixed else "float32"
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build_model(
            frontend, N_LABELS, n_filters=16, n_dense_units=500, input_length=length
        )
        model.compile(optimizer="adam", loss="binary_crossentropy", jit_compile=jit)
    finally:
        keras.config.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    shape = (batch, length) if frontend == "waveform" else (batch, length, 96)
    x = keras.ops.convert_to_tensor(rng.standard_normal(shape, dtype=np.float32))
    y = keras.ops.convert_to_tensor((rng.random((batch, N_LABELS)) < 0.1).astype(np.float32))
    for _ in range(WARMUP):
        model.train_on_batch(x, y)
    with Utilisation() as util:
        start = time.perf_counter()
        for _ in range(STEPS):
            loss = model.train_on_batch(x, y)
        took = time.perf_counter() - start
    if not np.isfinite(float(np.asarray(loss))):
        raise RuntimeError(f"{frontend} batch {batch} {policy}: the loss is not finite")
    return {
        "windows_per_s": STEPS * batch / took,
        "step_ms": 1000 * took / STEPS,
        "gpu_util": util.mean if on_gpu else None,
        "policy": policy,
    }


def main() -> list[dict]:
    import keras

    backend = keras.backend.backend()
    found = gpus(backend)
    if not found and not ON_CPU:
        print(f"bench_gpu: no GPU visible to Keras's {backend} backend; nothing measured")
        return [
            {
                "figure": f"GPU training throughput ({backend})",
                "orpheus": None,
                "goal": "not run: no GPU on this machine",
            }
        ]
    device = f"{len(found)} GPU(s): {found[0]}" if found else "CPU"
    rows = []
    for frontend in ("log-mel", "waveform"):
        for batch in BATCHES:
            base = None
            for mixed in (False, True):
                for jit in (False, True):
                    got = measure(frontend, batch, mixed, jit, on_gpu=bool(found))
                    base = base or got["windows_per_s"]
                    util = "-" if got["gpu_util"] is None else f"{got['gpu_util']:.0f} %"
                    label = (
                        f"train windows/s, {frontend} {SECONDS:g} s, batch {batch}, {got['policy']}"
                        f"{', XLA' if jit else ''} [{backend}, {device}]: "
                        f"step {got['step_ms']:.1f} ms, GPU util {util}"
                    )
                    rows.append(
                        {
                            "figure": label,
                            "orpheus": got["windows_per_s"],
                            "baseline": base,
                            "baseline_is": "float32 without XLA, same front end and batch",
                            "ratio": got["windows_per_s"] / base,
                            "goal": "reported",
                            **got,
                        }
                    )
                    print(label, f"{got['windows_per_s']:.0f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
