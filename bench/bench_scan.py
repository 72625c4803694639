"""`orpheus scan` throughput in files/s: 1 worker, all cores, and a resumed re-scan.

The tree holds N 30-second 44.1 kHz stereo previews in the 7digital layout (hard links to a few
rendered clips, so the page cache is warm: this measures the scanner, not the disk). Baseline:
the original `fetcher.py` algorithm (os.walk, then mutagen opened twice per file, serially).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FILES = int(os.environ.get("ORPHEUS_BENCH_SCAN_FILES", 4000))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))


def build_tree(root: Path, files: int = FILES, distinct: int = 8) -> Path:
    """The 7digital layout with `files` previews (cached: rebuilt only if the count differs)."""
    import soundfile as sf

    from orpheus.msd import audio_relpath

    marker = root / f".complete-{files}"
    if marker.exists():
        return root
    rng = np.random.default_rng(0)
    sources = []
    for k in range(distinct):
        path = root.parent / f"{root.name}-source-{k}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        y = (0.2 * rng.standard_normal((44100 * 30, 2))).astype(np.float32)
        sf.write(path, y, 44100, format="MP3")
        sources.append(path)
    for i, ident in enumerate(rng.choice(np.arange(10**6, 10**7), files, replace=False)):
        dest = root / audio_relpath(int(ident))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.link(sources[i % distinct], dest)
    marker.touch()
    return root


def baseline(root: Path) -> int:
    """The original fetcher.py: walk, then size and two mutagen opens per file."""
    from mutagen.mp3 import MP3, HeaderNotFoundError

    rows = []
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".mp3"):
                continue
            path = os.path.join(folder, name)
            try:
                row = (int(name[:-9]), path, os.path.getsize(path))
                row += (MP3(path).info.length, MP3(path).info.channels)
            except HeaderNotFoundError:
                row += ("", "")
            rows.append(row)
    return len(rows)


def _rate(fn) -> float:
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


def main() -> list[dict]:
    from orpheus.scan import scan

    root = build_tree(DATA / "scan" / "7digital")
    cores = os.cpu_count() or 1
    base = _rate(lambda: baseline(root))
    one = _rate(lambda: len(scan(root, workers=1).table))
    result = scan(root, workers=cores)
    every = _rate(lambda: len(scan(root, workers=cores).table))
    resumed = _rate(lambda: len(scan(root, previous=(result.table, result.rejects)).table))
    rows = [
        ("scan files/s, 1 worker", one),
        (f"scan files/s, {cores} workers", every),
        ("re-scan files/s, nothing changed (resume)", resumed),
    ]
    return [
        {
            "figure": f"{figure} ({FILES} files)",
            "orpheus": value,
            "baseline": base,
            "baseline_is": "original fetcher.py (serial, 2 mutagen opens/file)",
            "ratio": value / base,
            "goal": "reported",
        }
        for figure, value in rows
    ]


if __name__ == "__main__":
    for row in main():
        print(row, file=sys.stdout)
