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

sys.path.insert(0, str(Path(__file__).parent))
from _clips import SECONDS, previews  # noqa: E402

TRACKS = int(os.environ.get("ORPHEUS_BENCH_SILENCE_TRACKS", 120))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))


def build(root: Path, tracks: int = TRACKS) -> list[str]:
    """Relative paths of `tracks` previews (hard links to a few rendered clips)."""
    return [p.name for p in previews(root, tracks, distinct=12, seed=1)]


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
