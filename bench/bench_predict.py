"""`orpheus predict` vs the original musicnn 0.1.0 extractor: tracks/s and taggram agreement.

Both tag the same folder of 30 s, 44.1 kHz stereo MP3 clips (rendered by the example-corpus
composer, cycling through its styles) with MSD_musicnn, in the same run:
- baseline: `musicnn.extractor.extractor(path, model="MSD_musicnn", extract_features=False)` per
  file, in its own virtual environment (musicnn 0.1.0 no longer installs next to Orpheus):
  `python -m venv $ORPHEUS_MUSICNN_VENV` (default /tmp/musicnn-venv), then
  `pip install --no-deps musicnn==0.1.0` and `tensorflow==2.21.* tf-keras==2.21.* "numpy<2"
  librosa`, run with TF_USE_LEGACY_KERAS=1. The script creates that venv when it is missing
  (about 2.6 GB, a few minutes) and says so.
- Orpheus: `Tagger.pretrained("msd-musicnn").tag_files(...)` in-process, and the whole
  `orpheus predict DIR --format json` command.

Figures: tracks/s in a warm process (model imports done; musicnn's extractor builds a graph and a
session per call, as it always does), the same from the first tagged track to the last (what a
large folder tends to: both sides' first track pays librosa's lazy imports, about 1 s, and
Orpheus's first also traces the model), the same per CPU-second (steadier than wall time on a
shared machine), tracks/s for the whole command including Python and TensorFlow start-up, and
the largest absolute difference between the two mean taggrams over all clips and labels (they
differ by the float16 cast musicnn applies before the log, and by window placement: musicnn
takes 10 patches from frame 0 and drops the last 6 frames, Orpheus spreads 10 windows evenly
so the last one ends with the track), also measured on musicnn's own patch positions to
separate the two, and how often the top-1 tag is musicnn's, with either window placement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLIPS = int(os.environ.get("ORPHEUS_BENCH_PREDICT_CLIPS", 24))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))
VENV = Path(os.environ.get("ORPHEUS_MUSICNN_VENV", "/tmp/musicnn-venv"))
REPO = Path(__file__).resolve().parents[1]
STYLES = ("rock", "electronic", "jazz", "classical", "metal", "hip-hop", "folk", "ambient")

BASELINE = r"""
import json, sys, time
import numpy as np
from musicnn.extractor import extractor
paths = sys.argv[1:]
start, cpu = time.perf_counter(), time.process_time()
means, done = [], []
for p in paths:
    means.append(extractor(p, model="MSD_musicnn", extract_features=False)[0].mean(axis=0).tolist())
    done.append(time.perf_counter())
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                  "after_first": done[-1] - done[0], "means": means}))
"""


def build_clips(folder: Path, n: int = CLIPS) -> list[Path]:
    """n 30 s clips (cached: rebuilt only if the count differs)."""
    import soundfile as sf

    from orpheus.example.music import compose, render

    marker = folder / f".complete-{n}"
    paths = [folder / f"clip-{i:03d}-{STYLES[i % len(STYLES)]}.mp3" for i in range(n)]
    if marker.exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        song = compose(STYLES[i % len(STYLES)], "00s", "instrumental", 30.0, [i])
        sf.write(str(path), render(song, 30.0, 44100), 44100, format="MP3")
    marker.touch()
    return paths


def ensure_venv(venv: Path = VENV) -> Path:
    """The baseline's Python, creating its venv if missing (raises with pip's reason)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import musicnn, tf_keras, numpy; assert numpy.__version__ < '2'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating the musicnn 0.1.0 baseline venv in {venv} (a few minutes, ~2.6 GB)")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "musicnn==0.1.0"],
        [str(python), "-m", "pip", "install", "-q", "tensorflow==2.21.*", "tf-keras==2.21.*",
         "numpy<2", "librosa"],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"cannot build the baseline venv: {' '.join(step)}\n{done.stderr}")
    return python


def _env(**extra: str) -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", ORPHEUS_WORKSPACE="", **extra)


def baseline(python: Path, paths: list[Path]) -> tuple[float, float, float, float, np.ndarray]:
    """(wall and CPU seconds in-process, seconds after the first track, seconds for the whole
    process, mean taggrams)."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), "-c", BASELINE, *map(str, paths)],
        capture_output=True, text=True, env=_env(TF_USE_LEGACY_KERAS="1"), check=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["seconds"], out["cpu"], out["after_first"], wall, np.array(out["means"])


def orpheus_in_process(paths: list[Path]) -> tuple[float, float, float]:
    """Wall and CPU seconds to load the model and tag every clip, TensorFlow already imported,
    and the wall seconds from the first result to the last."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  (imported before the clock starts, as for the baseline)

    from orpheus.tagger import Tagger

    start, cpu = time.perf_counter(), time.process_time()
    tagger = Tagger.pretrained("msd-musicnn")
    done = []
    for _, result in tagger.tag_files(paths):
        assert hasattr(result, "taggram"), result
        done.append(time.perf_counter())
    return time.perf_counter() - start, time.process_time() - cpu, done[-1] - done[0]


def orpheus_on_musicnn_patches(paths: list[Path]) -> np.ndarray:
    """Mean taggrams of Orpheus on musicnn's own patches (`windows="musicnn"`: non-overlapping
    187-frame patches from frame 0, the trailing partial patch dropped, the edge frames
    zero-padded as musicnn's librosa >= 0.10 computes them), to tell the rebuild's fidelity
    apart from the window placement."""
    from orpheus.tagger import Tagger

    tagger = Tagger.pretrained("msd-musicnn")
    results = [result for _, result in tagger.tag_files(paths, windows="musicnn")]
    return np.stack([result.probabilities for result in results])


def orpheus_command(folder: Path) -> tuple[float, dict[str, np.ndarray]]:
    """Seconds for `orpheus predict DIR -f json -t 0` and the mean taggram per file name."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "orpheus", "-q", "predict", str(folder), "-f", "json", "-t", "0"],
        capture_output=True, text=True, env=_env(), cwd=REPO, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    means = {
        Path(r["path"]).name: np.array(list(r["probabilities"].values()))
        for r in json.loads(done.stdout)
    }
    return wall, means


def main() -> list[dict]:
    paths = build_clips(DATA / "predict" / "clips")
    python = ensure_venv()
    base_loop, base_cpu, base_rest, base_wall, base_means = baseline(python, paths)
    orph_loop, orph_cpu, orph_rest = orpheus_in_process(paths)
    orph_wall, orph_means = orpheus_command(paths[0].parent)
    ours = np.stack([orph_means[p.name] for p in paths])
    diff = np.abs(ours - base_means)
    on_patches = orpheus_on_musicnn_patches(paths)
    same_patches = np.abs(on_patches - base_means)
    same_top = float(np.mean(ours.argmax(axis=1) == base_means.argmax(axis=1)))
    same_top_patches = float(np.mean(on_patches.argmax(axis=1) == base_means.argmax(axis=1)))
    n = len(paths)
    rows = [
        {
            "figure": f"predict tracks/s, warm process ({n} x 30 s clips)",
            "orpheus": n / orph_loop,
            "baseline": n / base_loop,
            "ratio": base_loop / orph_loop,
            "goal": ">= 8x",
        },
        {
            "figure": "predict tracks/s after the first (one-time imports and tracing left out)",
            "orpheus": (n - 1) / orph_rest,
            "baseline": (n - 1) / base_rest,
            "ratio": base_rest / orph_rest,
            "goal": "-",
        },
        {
            "figure": "predict tracks per CPU-second, warm process",
            "orpheus": n / orph_cpu,
            "baseline": n / base_cpu,
            "ratio": base_cpu / orph_cpu,
            "goal": ">= 5x",
        },
        {
            "figure": "predict tracks/s, whole command incl. start-up",
            "orpheus": n / orph_wall,
            "baseline": n / base_wall,
            "ratio": base_wall / orph_wall,
            "goal": ">= 5x",
        },
        {
            "figure": "max |mean taggram difference| vs musicnn",
            "orpheus": float(diff.max()),
            "baseline": 0.0,
            "ratio": None,
            "goal": "< 0.05 (float16 cast + window placement)",
        },
        {
            "figure": "max |mean taggram difference| on musicnn's own patches",
            "orpheus": float(same_patches.max()),
            "baseline": 0.0,
            "ratio": None,
            "goal": "< 1e-3 (float16 cast only)",
        },
        {
            "figure": "same top-1 tag as musicnn on its own patches (fraction of clips)",
            "orpheus": same_top_patches,
            "baseline": 1.0,
            "ratio": same_top_patches,
            "goal": "1.0",
        },
        {
            "figure": "same top-1 tag as musicnn, Orpheus's even windows (fraction of clips)",
            "orpheus": same_top,
            "baseline": 1.0,
            "ratio": same_top,
            "goal": "reported (window placement)",
        },
    ]
    for row in rows:
        ratio = "" if row["ratio"] is None else f"  ratio {row['ratio']:.2f}"
        figures = f"orpheus {row['orpheus']:.4g}  baseline {row['baseline']:.4g}{ratio}"
        print(f"{row['figure']}: {figures}  (goal {row['goal']})")
    return rows


if __name__ == "__main__":
    main()
