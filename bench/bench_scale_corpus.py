"""Build time and size of the scale corpus (1M-row MSD summary + Last.fm-scale tags db).

Goal: <= 180 s here. Baseline, measured in the same run: writing the same number of `tid_tag`
rows into an empty SQLite table straight from Python lists, which is the floor for the db half.
"""

from __future__ import annotations

import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from orpheus.example import build_scale_corpus

GOAL_S = 180.0


def _sqlite_floor(rows: int, folder: Path) -> float:
    con = sqlite3.connect(folder / "floor.db")
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE t (tid INT, tag INT, val FLOAT)")
    start = time.perf_counter()
    for s in range(0, rows, 500_000):
        k = min(500_000, rows - s)
        con.executemany(
            "INSERT INTO t VALUES (?, ?, ?)", zip(range(k), range(k), [1.0] * k, strict=True)
        )
    con.commit()
    con.close()
    return time.perf_counter() - start


def main() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="orpheus-scale-") as tmp:
        info = build_scale_corpus(Path(tmp) / "scale")
        floor = _sqlite_floor(info["rows"], Path(tmp))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return [
        {
            "figure": "scale corpus build, wall s (1M summary rows, "
            f"{info['lastfm_tracks']} tids, {info['tags']} tags, {info['rows']} rows)",
            "orpheus": info["seconds"],
            "baseline": floor,
            "baseline_is": "bare SQLite insert of the same tid_tag rows",
            "ratio": info["seconds"] / floor,
            "goal": f"<= {GOAL_S:.0f} s",
        },
        {
            "figure": "scale corpus: summary h5 s / lastfm db s",
            "orpheus": info["summary_seconds"],
            "baseline": info["lastfm_seconds"],
            "baseline_is": "lastfm db part",
            "ratio": info["summary_seconds"] / max(info["lastfm_seconds"], 1e-9),
            "goal": "-",
        },
        {
            "figure": "scale corpus sizes, MB (summary h5, lastfm db)",
            "orpheus": info["summary_bytes"] / 1e6,
            "baseline": info["lastfm_bytes"] / 1e6,
            "baseline_is": "lastfm db MB",
            "ratio": None,
            "goal": "-",
        },
        {
            "figure": "scale corpus build, peak RSS GB",
            "orpheus": peak_gb,
            "baseline": None,
            "baseline_is": "-",
            "ratio": None,
            "goal": "-",
        },
    ]


if __name__ == "__main__":
    for row in main():
        print(row)
