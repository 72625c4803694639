"""Input-pipeline throughput (examples/s) against what one training step consumes.

Log-mel TFRecords of N 30-second previews (the bench_tfrecords corpus), read by
`orpheus.dataset.datasets` with the default config (batch 64, 15 s random windows, shuffle,
interleave, normalise, repeat). Baseline: the examples per second a training step of the Pons
log-mel model (16 filters, 500 dense units, 50 labels) consumes on this machine's CPU, with the
batch held in memory. The pipeline keeps the model fed when the ratio is above 1; on a GPU the
step is far faster, so the same figure on a GPU machine is the one that matters there.

3 s windows (what a GPU trains on, issue 19): the pipeline of this tree against the one before
it was rebuilt (`orpheus/dataset.py` at BEFORE, read from git), in the same process on the same
records, and again with the in-memory cache. This machine is shared, so besides examples per
wall second each row gives examples per CPU-second of the process (all its threads): the figure
per core, which holds when other work steals cores.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRACKS = int(os.environ.get("ORPHEUS_BENCH_PIPELINE_TRACKS", 128))
BATCHES = int(os.environ.get("ORPHEUS_BENCH_PIPELINE_BATCHES", 20))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))
SHORT_BATCHES = int(os.environ.get("ORPHEUS_BENCH_PIPELINE_SHORT_BATCHES", 150))
BEFORE = "6f7c2f67cb2fb3a8648abde327f4c1ce77e01141"  # the last commit of the per-example pipeline
ROOT = Path(__file__).resolve().parents[1]


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


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured_rate(datasets, out: Path, cfg: dict, batches: int, **kwargs) -> tuple[float, float]:
    """(examples per wall second, examples per CPU-second) of `datasets`' train split, after one
    pass over the split (which fills the cache when there is one)."""
    ds, _ = datasets(out, cfg, ("train",), seed=0, repeat=True, **kwargs)
    it = iter(ds["train"])
    for _ in range(TRACKS // cfg["model-training"]["batch_size"] + 2):
        next(it)
    cpu, start = _cpu_seconds(), time.perf_counter()
    n = sum(len(next(it)[0]) for _ in range(batches))
    return n / (time.perf_counter() - start), n / (_cpu_seconds() - cpu)


def pipeline_before():
    """`orpheus.dataset` as it was at BEFORE, loaded from git under another name."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:orpheus/dataset.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "dataset_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("dataset_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # AutoGraph reads the source of its functions from there
    spec.loader.exec_module(module)
    return module


def short_window_rows(out: Path, cfg: dict) -> list[dict]:
    from orpheus import dataset

    cfg = {**cfg, "model-training": {**cfg["model-training"], "window_length": 3}}
    before = measured_rate(pipeline_before().datasets, out, cfg, SHORT_BATCHES)
    now = measured_rate(dataset.datasets, out, cfg, SHORT_BATCHES)
    cached = measured_rate(dataset.datasets, out, cfg, SHORT_BATCHES, cache=True)
    what = "log-mel 3 s windows, batch 64, CPU"
    rows = []
    for name, (wall, per_cpu) in (("", now), (", --cache", cached)):
        rows.append(
            {
                "figure": f"input pipeline examples per CPU-second ({what}{name}) vs before",
                "orpheus": per_cpu,
                "baseline": before[1],
                "baseline_is": f"the pipeline at {BEFORE[:7]}, same run",
                "ratio": per_cpu / before[1],
                "goal": "> 1; 10,000/s needs 10,000 / this many cores",
            }
        )
        rows.append(
            {
                "figure": f"input pipeline examples/s ({what}{name}, {_cores()} cores) vs before",
                "orpheus": wall,
                "baseline": before[0],
                "baseline_is": f"the pipeline at {BEFORE[:7]}, same run",
                "ratio": wall / before[0],
                "goal": ">= 10,000 windows/s",
            }
        )
    return rows


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


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
    from orpheus import config, features

    cfg = config.defaults()
    cfg["tags"]["top"] = 50
    out = records_dir(DATA / "tfrecords")
    rate = pipeline_rate(out, cfg)
    frames = features.window_frames(cfg["model-training"]["window_length"])
    consume = step_rate(cfg, frames)
    return short_window_rows(out, cfg) + [
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
