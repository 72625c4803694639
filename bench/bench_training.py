"""Training examples/s through the real input pipeline vs the same model fed from memory.

The pipeline is `orpheus.dataset.datasets` over log-mel TFRecords built by `orpheus.records` from
synthetic 10-second previews: interleaved shard reads, parsing, label selection, shuffling,
random windows, normalisation, batching, prefetch. The baseline trains the same model (the
paper's size: 16 filters, 500 dense units) with the same Trainer (Keras fit) on the same batches
held in memory. After one untimed warm-up run, the two alternate three times, each run a
warm-up epoch (tracing) then a timed one, and each keeps its best (other load on a shared
machine varies). Goal: ratio >= 0.9,
i.e. the input pipeline is never the bottleneck. Where a GPU is present, its mean utilisation
during the timed pipeline epoch is reported too (nvidia-smi).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TRACKS = int(os.environ.get("ORPHEUS_BENCH_TRAIN_TRACKS", 64))
STEPS = int(os.environ.get("ORPHEUS_BENCH_TRAIN_STEPS", 12))
BATCH = int(os.environ.get("ORPHEUS_BENCH_TRAIN_BATCH", 16))
ROUNDS = int(os.environ.get("ORPHEUS_BENCH_TRAIN_ROUNDS", 3))
WINDOW = float(os.environ.get("ORPHEUS_BENCH_TRAIN_WINDOW", 3.0))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))
VOCABULARY = [f"tag{i}" for i in range(10)]


def build_records(root: Path, tracks: int = TRACKS) -> Path:
    """Log-mel TFRecords of `tracks` synthetic 10 s previews (cached between runs)."""
    import soundfile as sf

    from orpheus import records

    out = root / "tfrecords"
    marker = root / f".complete-{tracks}"
    if marker.exists():
        return out
    rng = np.random.default_rng(0)
    items, tags = [], {}
    sr = 44100
    t = np.arange(10 * sr) / sr
    for i in range(tracks):
        path = root / "audio" / f"{i}.clip.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        y = 0.3 * np.sin(2 * np.pi * (110 + 30 * (i % 12)) * t) + 0.05 * rng.standard_normal(t.size)
        sf.write(path, y.astype(np.float32), sr, format="MP3")
        tid = f"TRBENCH{i:011d}"
        items.append((tid, str(path)))
        tags[tid] = [VOCABULARY[i % 10], VOCABULARY[(i * 7) % 10]]
    popularity = {v: sum(v in ts for ts in tags.values()) for v in VOCABULARY}
    plan = records.plan(items, tags, VOCABULARY, popularity, shards=8)
    records.build(out, plan, workers=os.cpu_count() or 1)
    marker.touch()
    return out


def _config() -> dict:
    from orpheus import config

    cfg = config.defaults()
    cfg["model-training"].update(window_length=WINDOW, batch_size=BATCH, shuffle_buffer_size=256)
    cfg["tags"]["top"] = len(VOCABULARY)
    return cfg


class _Timer:
    """A Reporter that remembers when each epoch started and ended."""

    def __init__(self):
        self.times: dict[int, list[float]] = {}

    def message(self, text: str) -> None:
        pass

    def epoch_begin(self, epoch: int, epochs: int, steps: int | None) -> None:
        self.times[epoch] = [time.perf_counter()]

    def step(self, step: int, logs: dict) -> None:
        pass

    def epoch_end(self, epoch: int, logs: dict) -> None:
        self.times[epoch].append(time.perf_counter())


def _train_rate(train_ds, n_labels: int, input_length: int) -> float:
    """Examples/s of the second (timed) epoch of STEPS steps."""
    from orpheus import training
    from orpheus.models import build_model

    def model_fn():
        return build_model(
            "log-mel", n_labels, n_filters=16, n_dense_units=500, input_length=input_length
        )

    timer = _Timer()
    opts = training.TrainOptions(epochs=2, steps_per_epoch=STEPS)
    training.Trainer(model_fn, n_labels, None, opts, reporter=timer).fit(train_ds)
    start, end = timer.times[1]
    return STEPS * BATCH / (end - start)


def _gpu_sampler():
    """Mean GPU utilisation (%) sampled while the returned stop() is not called; None: no GPU."""
    try:
        subprocess.run(["nvidia-smi", "-L"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    samples: list[float] = []
    done = threading.Event()

    def loop():
        while not done.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            ).stdout.split()
            samples.extend(float(v) for v in out if v.strip())
            done.wait(0.5)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def stop() -> float | None:
        done.set()
        thread.join()
        return float(np.mean(samples)) if samples else None

    return stop


def main() -> list[dict]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from orpheus import dataset

    records_dir = build_records(DATA / "training")
    cfg = _config()
    dsets, labels = dataset.datasets(records_dir, cfg, ("train",), repeat=True)
    pipeline = dsets["train"]
    frames = int(pipeline.element_spec[0].shape[1])
    batches = list(pipeline.take(STEPS).as_numpy_iterator())
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    memory = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH, drop_remainder=True)
    memory = memory.cache().repeat().prefetch(tf.data.AUTOTUNE)

    _train_rate(memory, len(labels), frames)  # the first run in a process is slow: warm up
    piped, in_memory, utilisation = 0.0, 0.0, None
    for _ in range(ROUNDS):  # alternate, keep each one's best: other load on the machine varies
        stop = _gpu_sampler()
        piped = max(piped, _train_rate(pipeline, len(labels), frames))
        utilisation = stop() if stop else None
        in_memory = max(in_memory, _train_rate(memory, len(labels), frames))
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    rows = [
        {
            "figure": f"training examples/s, log-mel {WINDOW:g} s windows, batch {BATCH}, "
            f"{device}, pipeline vs in-memory",
            "orpheus": piped,
            "baseline": in_memory,
            "baseline_is": "same model and Trainer fed the same batches from memory",
            "ratio": piped / in_memory,
            "goal": ">= 0.9",
        }
    ]
    if utilisation is not None:
        rows.append(
            {
                "figure": "GPU utilisation during pipeline training (%)",
                "orpheus": utilisation,
                "baseline": None,
                "baseline_is": "n/a",
                "ratio": None,
                "goal": "reported",
            }
        )
    return rows


if __name__ == "__main__":
    for row in main():
        print(row, file=sys.stdout)
