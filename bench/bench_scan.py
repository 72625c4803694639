"""`orpheus scan`: files per CPU-second, 1 -> 2 workers at two sizes, and a resumed re-scan.

Each tree holds N 30-second 44.1 kHz stereo previews in the 7digital layout (hard links to a few
rendered clips, so the page cache is warm: this measures the scanner, not the disk). Each scan
runs in a fresh process as a command does (imports, and with 2 workers the pool's start-up,
included). Figures are per CPU-second (parent and workers), which the load of a shared machine
does not change; the wall-clock speed-up is reported with the load average it ran under.
Baseline: the original `fetcher.py` algorithm (os.walk, then mutagen opened twice per file,
serially, imports left out).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _workers import load, run_fresh  # noqa: E402

FILES = int(os.environ.get("ORPHEUS_BENCH_SCAN_FILES", 20000))  # the larger size
SIZES = (4000, FILES)
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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(root: Path, files: int, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of a scan of `root`, in a fresh process like the command."""
    code = (
        "from orpheus.scan import scan\n"
        f"assert len(scan({str(root)!r}, workers={workers}).table) == {files}\n"
    )
    return run_fresh(code)


def main() -> list[dict]:
    from mutagen.mp3 import MP3

    from orpheus.scan import scan

    rows = []
    for n in SIZES:
        root = build_tree(DATA / "scan" / f"7digital-{n}", n)
        MP3(next(root.rglob("*.mp3")))  # the baseline's imports, left out of its time
        start = _cpu()
        assert baseline(root) == n
        base = n / (_cpu() - start)
        (one, cpu_one), (two, cpu_two) = _run(root, n, 1), _run(root, n, 2)
        rows += [
            {
                "figure": f"scan files per CPU-s, 1 worker, whole command ({n} files)",
                "orpheus": n / cpu_one,
                "baseline": base,
                "baseline_is": "original fetcher.py (serial, 2 mutagen opens/file)",
                "ratio": n / cpu_one / base,
                "goal": "reported",
            },
            {
                "figure": f"scan 1 -> 2 workers, wall speed-up ({n} files; {load()})",
                "orpheus": one / two,
                "baseline": 1.0,
                "baseline_is": "1 worker",
                "ratio": one / two,
                "goal": ">= 1 at 20,000 files (no slower)",
            },
            {
                "figure": f"scan files per CPU-s, 2 workers vs 1 ({n} files)",
                "orpheus": n / cpu_two,
                "baseline": n / cpu_one,
                "baseline_is": "1 worker",
                "ratio": cpu_one / cpu_two,
                "goal": "close to 1 (the pool wastes little CPU)",
            },
        ]
    result = scan(root, workers=1)
    start = _cpu()
    assert scan(root, previous=(result.table, result.rejects), workers=1).reused == n
    rate = n / (_cpu() - start)
    rows.append(
        {
            "figure": f"re-scan files per CPU-s, nothing changed (resume) ({n} files)",
            "orpheus": rate,
            "baseline": base,
            "baseline_is": "original fetcher.py (serial, 2 mutagen opens/file)",
            "ratio": rate / base,
            "goal": "reported",
        }
    )
    return rows


if __name__ == "__main__":
    for row in main():
        print(row, file=sys.stdout)
