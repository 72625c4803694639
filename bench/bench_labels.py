"""`orpheus labels import` at scale: a 55,701-track MTG-Jamendo TSV, and the embedded tags of a
100,000-file library. Goal (issue 17): at most 60 s and 2 GB each on 2 cores.

The Jamendo set has the real file's shape (CRLF lines, 195 tags in three categories, 1-8 tags
per track, 3,565 artists) with an empty file per path, since the import only checks that audio
exists. The library is `aNNN/bN/NNNNNN song.mp3`, hard links to ten short MP3s, each with ID3v2.4
genre (two values), mood and artist: the page cache is warm, so this measures tag parsing, not
the disk. Each import runs as a fresh `orpheus` process, the way a user runs it; memory is the
largest resident set of that process or its workers. Run: `python bench/bench_labels.py`.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JAMENDO_TRACKS = int(os.environ.get("ORPHEUS_BENCH_JAMENDO_TRACKS", 55701))
LIBRARY_FILES = int(os.environ.get("ORPHEUS_BENCH_LIBRARY_FILES", 100000))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))
ORPHEUS = [sys.executable, "-m", "orpheus"]
GOAL_S, GOAL_GB = 60.0, 2.0


def jamendo_set(root: Path, n: int = JAMENDO_TRACKS) -> Path:
    """autotagging.tsv and an `audio/NN/ID.mp3` tree of empty files (cached by a marker)."""
    tsv = root / "autotagging.tsv"
    if (root / f".complete-{n}").exists():
        return tsv
    rng = random.Random(0)
    tags = [f"genre---g{i}" for i in range(95)] + [f"instrument---i{i}" for i in range(41)]
    tags += [f"mood/theme---m{i}" for i in range(59)]
    lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
    for i in range(n):
        rel = f"{i % 100:02d}/{i}.mp3"
        (root / "audio" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "audio" / rel).touch()
        row = [f"track_{i:07d}", f"artist_{i % 3565:06d}", f"album_{i % 11000:06d}", rel, "200.0"]
        lines.append("\t".join(row + rng.sample(tags, rng.randint(1, 8))))
    tsv.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    (root / f".complete-{n}").touch()
    return tsv


def library(root: Path, n: int = LIBRARY_FILES) -> Path:
    """`lib/aNNN/bN/NNNNNN song.mp3`: hard links to ten tagged 0.1 s MP3s (cached)."""
    import numpy as np
    import soundfile as sf
    from mutagen.id3 import ID3, TCON, TMOO, TPE1

    lib = root / "lib"
    if (root / f".complete-{n}").exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    sources = []
    for k in range(10):
        path = root / f"source-{k}.mp3"
        sf.write(path, np.zeros(4410, np.float32), 44100, format="MP3")
        tags = ID3()
        tags.add(TCON(encoding=3, text=[f"genre {k}", "rock"]))
        tags.add(TMOO(encoding=3, text=[f"mood {k % 3}"]))
        tags.add(TPE1(encoding=3, text=[f"artist {k}"]))
        tags.save(path, v2_version=4)
        sources.append(path)
    for i in range(n):
        dest = lib / f"a{i // 1000:03d}" / f"b{(i // 100) % 10}" / f"{i:06d} song.mp3"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.link(sources[i % 10], dest)
    (root / f".complete-{n}").touch()
    return lib


def timed_import(ws: Path, *args: str) -> tuple[float, float, str]:
    """(wall seconds, peak GB of the process or a worker, the summary line) of one import."""
    subprocess.run([*ORPHEUS, "init", str(ws), "--force"], check=True, capture_output=True)
    start = time.perf_counter()
    done = subprocess.run(
        [*ORPHEUS, "-w", str(ws), "labels", "import", *args],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"import failed: {done.stderr[-2000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # init's, or the import's
    return wall, peak_kb / 1e6, done.stdout.splitlines()[0]


def one(which: str) -> None:
    """Time one import in this (fresh) process, so that its peak memory is its own."""
    if which == "jamendo":
        jam = jamendo_set(DATA / "labels-jamendo")
        args = ["--from", "jamendo", str(jam), "--audio-root", str(jam.parent / "audio")]
    else:
        args = ["--from", "files", str(library(DATA / "labels-library")), "-j", "2"]
    wall, gb, line = timed_import(DATA / f"ws-{which}", *args)
    verdict = "ok" if wall <= GOAL_S and gb <= GOAL_GB else "OVER GOAL"
    print(f"  {which:8} {wall:6.1f} s  {gb:5.2f} GB peak  {verdict}  ({line})", flush=True)


def main() -> None:
    print(f"labels import on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}):")
    for which in ("jamendo", "files"):
        subprocess.run([sys.executable, __file__, which], check=True)


if __name__ == "__main__":
    one(sys.argv[1]) if len(sys.argv) > 1 else main()
