"""`orpheus tags clean` at Last.fm scale (~505k tracks, ~522k tags, ~8.6M rows): time, memory.

Goals: <= 120 s wall and <= 4 GB peak RSS. The db is `orpheus.example.build_scale_corpus`'s
(Last.fm's shape: heavy-tailed tag popularity with the real list tags on top). Baseline, same
run and same db: SQLite's own `GROUP BY` popularity query alone, the original's first step
(§2.5). `tags clean` runs as a separate process (wall, peak RSS from wait4), started from a bench
process kept small (the corpus is built in yet another process).

Data is cached in $ORPHEUS_BENCH_DATA (default /tmp/orpheus-bench) and reused.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))


def corpus() -> Path:
    """The example package's Last.fm-scale db (built once, cached)."""
    from orpheus.example import build_scale_corpus

    dest = DATA / "scale"
    if not (dest / "lastfm_tags.db").exists():
        build_scale_corpus(dest)
    return dest / "lastfm_tags.db"


def _timed(argv: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (GB) and output of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out}")
    return wall, usage.ru_maxrss / 1024**2, out


def baseline(db: Path) -> float:
    """The original's first step alone: popularity by SQL GROUP BY over every row."""
    start = time.perf_counter()
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    con.execute(
        "SELECT tag, COUNT(tag) FROM tid_tag GROUP BY tag ORDER BY COUNT(tag) DESC"
    ).fetchall()
    con.close()
    return time.perf_counter() - start


def main() -> list[dict]:
    # Built in its own process: a forked child inherits (and Linux's maxrss counts) the
    # parent's memory, so the generator's peak must not live in this process.
    db = Path(
        subprocess.run(
            [sys.executable, __file__, "--corpus"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    exe = str(Path(sys.executable).parent / "orpheus")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        subprocess.run([exe, "init", str(ws)], check=True, capture_output=True)
        argv = [exe, "-q", "-w", str(ws), "tags", "clean", "--lastfm-db", str(db), "--json"]
        wall, rss, out = _timed(argv, ws)
        print(out[-2000:], file=sys.stderr)
    base = baseline(db)
    return [
        {
            "figure": "tags clean, Last.fm scale, wall s",
            "orpheus": wall,
            "baseline": base,
            "baseline_is": "SQLite GROUP BY popularity query alone",
            "ratio": wall / base,
            "goal": "<= 120 s",
        },
        {
            "figure": "tags clean, Last.fm scale, peak RSS GB",
            "orpheus": rss,
            "baseline": None,
            "ratio": None,
            "goal": "<= 4 GB",
        },
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["--corpus"]:
        print(corpus())
    else:
        for row in main():
            print(row)
