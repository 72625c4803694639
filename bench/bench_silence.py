"""`orpheus silence` statistics: x realtime, and 1 -> 2 workers at two sizes (speed-up, CPU use).

N 30-second 44.1 kHz stereo previews (music-like: tones with gaps and noise), decoded and split
by `orpheus.silence.compute_stats`, each run in a fresh process as a command is (imports, and
with 2 workers the pool's start-up, included). Baseline: the original `mp3_to_numpy.savez`
analysis (librosa.load at the native rate with all channels, then split on the mono mix),
serially, on some of the files.
Figures are per CPU-second (parent and workers), which the load of a shared machine does not
change; the wall-clock speed-up is reported with the load average it ran under.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _clips import SECONDS, previews  # noqa: E402
from _workers import load, run_fresh  # noqa: E402

TRACKS = int(os.environ.get("ORPHEUS_BENCH_SILENCE_TRACKS", 600))  # the larger size
SMALL = 120
BASELINE_TRACKS = 24
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))


def build(root: Path, tracks: int = TRACKS) -> list[str]:
    """Relative paths of `tracks` previews (hard links to a few rendered clips)."""
    return [p.name for p in previews(root, tracks, distinct=12, seed=1)]


def baseline(root: Path, names: list[str]) -> float:
    """CPU seconds of the original analysis of `names`, librosa's imports left out."""
    import librosa
    from threadpoolctl import threadpool_limits

    librosa.effects.split(librosa.load(root / names[0], sr=None)[0])  # imports, numba caches
    start = _cpu()
    with threadpool_limits(1, user_api="blas"):  # as Orpheus runs: one BLAS thread a core
        for name in names:
            array, sr = librosa.load(root / name, sr=None, mono=False)
            librosa.effects.split(librosa.to_mono(array))
    return _cpu() - start


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(root: Path, names: list[str], workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the statistics of `names`, in a fresh process like a command."""
    code = (
        "import pandas as pd\n"
        "from orpheus.silence import compute_stats\n"
        f"names = {names!r}\n"
        f"tracks = pd.DataFrame({{'file_path': names}})\n"
        f"r = compute_stats({str(root)!r}, tracks, workers={workers})\n"
        "assert r.computed == len(names) and r.stats['error'].isna().all()\n"
    )
    return run_fresh(code)


def main() -> list[dict]:
    root = DATA / "silence"
    names = build(root)
    base = baseline(root, names[:BASELINE_TRACKS]) / BASELINE_TRACKS  # CPU s per track
    rows = []
    for n in (SMALL, TRACKS):
        audio = n * SECONDS
        (one, cpu_one), (two, cpu_two) = _run(root, names[:n], 1), _run(root, names[:n], 2)
        rows += [
            {
                "figure": f"silence audio s per CPU-s, 1 worker, whole command ({n} x 30 s)",
                "orpheus": audio / cpu_one,
                "baseline": SECONDS / base,
                "baseline_is": "original: librosa.load(sr=None, mono=False) + split, warm",
                "ratio": base * n / cpu_one,
                "goal": "reported",
            },
            {
                "figure": f"silence 1 -> 2 workers, wall speed-up ({n} x 30 s; {load()})",
                "orpheus": one / two,
                "baseline": 1.0,
                "baseline_is": "1 worker",
                "ratio": one / two,
                "goal": ">= 1.7 at 600 tracks on 2 free cores",
            },
            {
                "figure": f"silence audio s per CPU-s, 2 workers vs 1 ({n} x 30 s)",
                "orpheus": audio / cpu_two,
                "baseline": audio / cpu_one,
                "baseline_is": "1 worker",
                "ratio": cpu_one / cpu_two,
                "goal": "close to 1 (the pool wastes little CPU)",
            },
        ]
    return rows


if __name__ == "__main__":
    for row in main():
        print(row, file=sys.stdout)
