"""`orpheus silence` statistics throughput: x realtime per core, and scaling from 1 to 2 workers.

N 30-second 44.1 kHz stereo previews (music-like: tones with gaps and noise), decoded and split
by `orpheus.silence.compute_stats` (process pool start-up included). Baseline: the original
`mp3_to_numpy.savez` analysis (librosa.load at the native rate with all channels, then split on
the mono mix), serially, on the same files.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRACKS = int(os.environ.get("ORPHEUS_BENCH_SILENCE_TRACKS", 120))
SECONDS = 30.0
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))


def build(root: Path, tracks: int = TRACKS, distinct: int = 12) -> list[str]:
    """Relative paths of `tracks` previews (hard links to `distinct` rendered clips)."""
    import soundfile as sf

    sr = 44100
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(distinct):
        path = root / f"src-{k}.mp3"
        if path.exists():
            continue
        t = np.arange(int(SECONDS * sr)) / sr
        y = 0.3 * np.sin(2 * np.pi * (110 + 40 * k) * t) * (np.sin(2 * np.pi * 0.5 * t) > -0.8)
        y = y + 0.01 * rng.standard_normal(len(t))
        sf.write(path, np.stack([y, y[::-1]], axis=1).astype(np.float32), sr, format="MP3")
    names = []
    for i in range(tracks):
        name = f"t{i:05d}.clip.mp3"
        if not (root / name).exists():
            os.link(root / f"src-{i % distinct}.mp3", root / name)
        names.append(name)
    return names


def baseline(root: Path, names: list[str]) -> float:
    import librosa

    start = time.perf_counter()
    for name in names:
        array, sr = librosa.load(root / name, sr=None, mono=False)
        librosa.effects.split(librosa.to_mono(array))
    return time.perf_counter() - start


def _timed(root: Path, names: list[str], workers: int) -> float:
    import pandas as pd

    from orpheus.silence import compute_stats

    tracks = pd.DataFrame({"file_path": names})
    start = time.perf_counter()
    result = compute_stats(root, tracks, workers=workers)
    assert result.computed == len(names) and result.stats["error"].isna().all()
    return time.perf_counter() - start


def main() -> list[dict]:
    root = DATA / "silence"
    names = build(root)
    audio = len(names) * SECONDS
    base = baseline(root, names[: max(8, len(names) // 4)]) * len(names) / max(8, len(names) // 4)
    one = _timed(root, names, 1)
    two = _timed(root, names, 2)
    return [
        {
            "figure": f"silence stats x realtime per core, 1 worker ({len(names)} x 30 s)",
            "orpheus": audio / one,
            "baseline": audio / base,
            "baseline_is": "original: librosa.load(sr=None, mono=False) + split, serial",
            "ratio": base / one,
            "goal": "reported",
        },
        {
            "figure": "silence stats x realtime per core, 2 workers",
            "orpheus": audio / two / 2,
            "baseline": audio / one,
            "baseline_is": "orpheus, 1 worker",
            "ratio": audio / two / 2 / (audio / one),
            "goal": "reported",
        },
        {
            "figure": "silence scaling 1 -> 2 workers (speed-up)",
            "orpheus": one / two,
            "baseline": 1.0,
            "baseline_is": "1 worker",
            "ratio": one / two,
            "goal": "close to 2 on 2 free cores",
        },
    ]


if __name__ == "__main__":
    for row in main():
        print(row, file=sys.stdout)
