"""`orpheus wrangle` on MSD-scale metadata (1,000,000 summary rows): wall time and peak memory.

Goal: <= 60 s. The summary (real MSD schema) and the Last.fm db (~505k tagged tracks, ~8.6M
(track, tag) rows) come from `orpheus.example.build_scale_corpus`; this script adds MSD-sized
errata (~50k duplicate groups over 15% of tracks, ~19k mismatches) and a scan table holding
95% of the summary's 7digital IDs plus 0.5% unknown ones. Baseline: the original
`wrangler.py` steps (§2.4: three fields, per-line errata loops, per-group duplicate loop) on the
same files, in its own process. Both are timed as separate processes (wall, peak RSS).

Data is cached in $ORPHEUS_BENCH_DATA (default /tmp/orpheus-bench) and reused.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = int(os.environ.get("ORPHEUS_BENCH_WRANGLE_ROWS", 1_000_000))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))


def generate(dest: Path, rows: int = ROWS, seed: int = 0) -> dict[str, Path]:
    """The MSD-scale inputs in dest, built once (the summary and Last.fm db by the example
    package's `build_scale_corpus`; the errata and a scan table here)."""
    import h5py

    from orpheus.example import build_scale_corpus

    files = {
        "msd_summary": dest / "scale" / "msd_summary_file.h5",
        "lastfm_db": dest / "scale" / "lastfm_tags.db",
        "duplicates": dest / "msd_duplicates.txt",
        "mismatches": dest / "sid_mismatches.txt",
        "scan": dest / "scan.parquet",
        "done": dest / f"complete-{rows}",
    }
    if files["done"].exists():
        return files
    if (dest / "scale").exists():
        import shutil

        shutil.rmtree(dest / "scale")
    dest.mkdir(parents=True, exist_ok=True)
    build_scale_corpus(
        dest / "scale",
        tracks=rows,
        lastfm_tracks=rows * 505 // 1000,
        tags=max(1000, rows * 522 // 1000),
        rows=rows * 86 // 10,
        seed=seed,
    )
    with h5py.File(files["msd_summary"], "r") as h5:
        ids7 = h5["metadata/songs"].fields("track_7digitalid")[:]
        tids = h5["analysis/songs"].fields("track_id")[:]
    rng = np.random.default_rng(seed)
    _errata(files, tids, rng)
    _scan(files["scan"], ids7, rng)
    files["done"].touch()
    return files


def _errata(files: dict[str, Path], tids: np.ndarray, rng) -> None:
    members = rng.choice(len(tids), size=len(tids) * 15 // 100, replace=False)
    lines = ["# MSD duplicates", "# synthetic, MSD-sized", *["#"] * 5]
    pos = 0
    group = 0
    while pos < len(members):
        size = int(rng.integers(2, 5))
        group += 1
        lines.append(f"%{group} Artist - Title")
        lines += [t.decode() for t in tids[members[pos : pos + size]]]
        pos += size
    files["duplicates"].write_text("\n".join(lines) + "\n")
    bad = rng.choice(len(tids), size=len(tids) * 19 // 1000, replace=False)
    files["mismatches"].write_text(
        "".join(
            f"ERROR: <SO{i:016X} {tids[i].decode()}> Artist - Title  !=  Other - Song\n"
            for i in bad
        )
    )


def _scan(path: Path, ids7: np.ndarray, rng) -> None:
    import pandas as pd

    from orpheus.msd import audio_relpath

    unique = np.unique(ids7)
    present = unique[rng.random(len(unique)) < 0.95]
    extra = rng.integers(30 * len(ids7), 31 * len(ids7), size=len(ids7) // 200)
    ids = np.concatenate([present, extra]).astype("int64")
    pd.DataFrame(
        {
            "track_7digitalid": ids,
            "file_path": [audio_relpath(i) for i in ids.tolist()],
            "file_size": np.full(len(ids), 480_000, dtype="int64"),
            "mtime_ns": np.zeros(len(ids), dtype="int64"),
            "clip_length": np.full(len(ids), 30.0),
            "channels": np.full(len(ids), 2, dtype="int64"),
            "sample_rate": np.full(len(ids), 44100, dtype="int64"),
        }
    ).to_parquet(path, index=False)


def _workspace(files: dict[str, Path]) -> Path:
    """A workspace whose scan artifact is the synthetic scan table."""
    import shutil

    import pandas as pd

    from orpheus.scan import REJECT_COLUMNS
    from orpheus.workspace import Workspace

    root = files["scan"].parent / "ws"
    shutil.rmtree(root, ignore_errors=True)
    ws = Workspace.create(root)
    ws.path("data").mkdir(exist_ok=True)
    shutil.copy(files["scan"], ws.path("data/scan.parquet"))
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in REJECT_COLUMNS.items()})
    empty.to_parquet(ws.path("data/scan_rejects.parquet"), index=False)
    audio = root / "audio"
    audio.mkdir()
    ws.register("scan", "data/scan.parquet", params={"audio_root": str(audio)}, inputs={})
    return root


def _timed(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of a child process."""
    code = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "dt = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([dt, rss, p.returncode, p.stdout[-2000:], p.stderr[-2000:]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    dt, rss, rc, stdout, stderr = json.loads(out.stdout)
    if rc != 0:
        raise RuntimeError(f"{argv[:4]} failed ({rc}): {stderr}")
    return dt, rss, stdout


def baseline(files: dict[str, Path]) -> int:
    """The original wrangler.py steps (§2.4) on the same inputs; returns the kept count."""
    import h5py
    import pandas as pd

    with h5py.File(files["msd_summary"], "r") as h5:
        ids = h5["metadata"]["songs"]["track_7digitalid"]
        tids = [t.decode("utf-8") for t in h5["analysis"]["songs"]["track_id"]]
        year = h5["musicbrainz"]["songs"]["year"]
    summary = pd.DataFrame({"track_7digitalid": ids, "track_id": tids, "year": year})
    df = pd.read_parquet(files["scan"]).merge(summary, on="track_7digitalid")
    df = df[~df["track_7digitalid"].duplicated(keep=False)]
    df = df[~df["track_id"].duplicated(keep=False)]
    pattern = re.compile(r"T[A-Z0-9]{17}")
    with open(files["mismatches"]) as fh:
        bad = [pattern.findall(line)[0] for line in fh]
    df = df[~df["track_id"].isin(bad)]
    df = df[df["file_size"] > 0]
    df = df[df["clip_length"].notna()]
    con = sqlite3.connect(files["lastfm_db"])
    tagged = [r[0] for r in con.execute("SELECT tid FROM tids WHERE tid IS NOT NULL")]
    df = df.merge(pd.DataFrame({"track_id": tagged}), on="track_id")
    groups, current = [], []
    with open(files["duplicates"]) as fh:
        for line in fh.readlines()[7:]:
            if line.startswith("%"):
                groups.append(current)
                current = []
            else:
                current.append(pattern.findall(line)[0])
    groups.append(current)
    present = set(df["track_id"])
    np.random.seed(42)
    drop = []
    for group in groups:
        group = [t for t in group if t in present]
        if len(group) > 1:
            keep = np.random.choice(group)
            drop += [t for t in group if t != keep]
        else:
            drop += group  # the original's bug: lone members are dropped too
    return len(df[~df["track_id"].isin(drop)])


def main() -> list[dict]:
    started = time.perf_counter()
    files = generate(DATA / "wrangle", ROWS)
    print(f"corpus ready in {time.perf_counter() - started:.0f} s: {DATA}", file=sys.stderr)
    ws = _workspace(files)
    argv = [sys.executable, "-m", "orpheus", "-w", str(ws), "-q", "wrangle"]
    for key in ("msd_summary", "lastfm_db", "duplicates", "mismatches"):
        argv += ["--" + key.replace("_", "-"), str(files[key])]
    ours, ours_rss, table = _timed(argv)
    base, base_rss, kept = _timed([sys.executable, __file__, "baseline"])
    print(table, file=sys.stderr)
    return [
        {
            "figure": f"wrangle {ROWS:,} summary rows, wall s",
            "orpheus": ours,
            "baseline": base,
            "baseline_is": f"original wrangler.py steps (kept {kept.strip()})",
            "ratio": base / ours,
            "goal": "<= 60 s",
        },
        {
            "figure": "wrangle peak RSS, MiB",
            "orpheus": ours_rss,
            "baseline": base_rss,
            "baseline_is": "original wrangler.py steps",
            "ratio": base_rss / ours_rss,
            "goal": "reported",
        },
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["baseline"]:
        print(baseline(generate(DATA / "wrangle", ROWS)))
    else:
        for row in main():
            print(row)
