"""Input-pipeline throughput (examples/s) against what one training step consumes.

Log-mel TFRecords of N 30-second previews (the bench_tfrecords corpus), read by
`orpheus.dataset.datasets` with the default config (batch 64, 15 s random windows, shuffle,
interleave, normalise, repeat). Baseline: the examples per second a training step of the Pons
log-mel model (16 filters, 500 dense units, 50 labels) consumes on this machine's CPU, with the
batch held in memory. The pipeline keeps the model fed when the ratio is above 1; on a GPU the
step is far faster, so the same figure on a GPU machine is the one that matters there.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

TRACKS = int(os.environ.get("ORPHEUS_BENCH_PIPELINE_TRACKS", 128))
BATCHES = int(os.environ.get("ORPHEUS_BENCH_PIPELINE_BATCHES", 20))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))


def records_dir(root: Path) -> Path:
    """A log-mel build of TRACKS previews (reused across runs)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_tfrecords as bt

    from orpheus import records

    out = root / "records"
    tracks, tags = bt._tracks(bt.build(root / "audio", TRACKS))
    plan = records.plan(tracks, tags, bt.VOCABULARY, {t: 1 for t in bt.VOCABULARY}, shards=8)
    records.build(out, plan, workers=os.cpu_count() or 1)
    return out


def pipeline_rate(out: Path, cfg: dict) -> float:
    from orpheus import dataset

    ds, _ = dataset.datasets(out, cfg, ("train",), seed=0, repeat=True)
    it = iter(ds["train"])
    next(it)  # warm-up: graph tracing, first shards
    start = time.perf_counter()
    n = sum(len(next(it)[0]) for _ in range(BATCHES))
    return n / (time.perf_counter() - start)


def step_rate(cfg: dict, frames: int) -> float:
    import numpy as np
    import tensorflow as tf

    from orpheus.models.pons import build_model

    batch = cfg["model-training"]["batch_size"]
    model = build_model("log-mel", 50, n_filters=16, n_dense_units=500, input_length=frames)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = tf.constant(np.random.default_rng(0).standard_normal((batch, frames, 96), np.float32))
    y = tf.constant((np.random.default_rng(1).random((batch, 50)) < 0.1).astype(np.float32))
    model.train_on_batch(x, y)
    steps = 3
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps * batch / (time.perf_counter() - start)


def main() -> list[dict]:
    from orpheus import config, dataset

    cfg = config.defaults()
    cfg["tags"]["top"] = 50
    out = records_dir(DATA / "tfrecords")
    rate = pipeline_rate(out, cfg)
    frames = dataset.window_length_frames(cfg["model-training"]["window_length"])
    consume = step_rate(cfg, frames)
    return [
        {
            "figure": "input pipeline examples/s (log-mel, batch 64, 15 s windows, CPU)",
            "orpheus": rate,
            "baseline": consume,
            "baseline_is": "examples/s one Pons log-mel training step consumes (CPU)",
            "ratio": rate / consume,
            "goal": "> 1 (the pipeline is not the bottleneck)",
        }
    ]


if __name__ == "__main__":
    for row in main():
        print(row, file=sys.stdout)
