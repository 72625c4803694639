"""The demo, stage by stage: wall time and peak memory (RSS) of each `orpheus` command.

Each stage of `orpheus demo` runs as its own process on a fresh workspace, so `wait4` gives
that stage's own peak memory. Goal: the whole demo <= 10 minutes on this 2-core machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orpheus.commands.demo import pipeline_stages

TRACKS = int(os.environ.get("ORPHEUS_BENCH_DEMO_TRACKS", 200))
EPOCHS = int(os.environ.get("ORPHEUS_BENCH_DEMO_EPOCHS", 6))


def _run(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `orpheus` process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orpheus", "-q", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"orpheus {' '.join(args)} exited {code}: {proc.stderr.read()[-500:]!r}")
    proc.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def main() -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="orpheus-bench-demo-"))
    try:
        rows, total = [], 0.0
        for stage in pipeline_stages(workdir / "ws", tracks=TRACKS, epochs=EPOCHS, seed=0):
            seconds, peak = _run(stage.args)
            total += seconds
            rows.append(
                {
                    "figure": f"demo stage {stage.name}: wall s",
                    "orpheus": seconds,
                    "baseline": None,
                    "ratio": None,
                    "goal": None,
                }
            )
            rows.append(
                {
                    "figure": f"demo stage {stage.name}: peak RSS MiB",
                    "orpheus": peak,
                    "baseline": None,
                    "ratio": None,
                    "goal": None,
                }
            )
        rows.append(
            {
                "figure": f"demo total ({TRACKS} tracks, {EPOCHS} epochs), wall s",
                "orpheus": total,
                "baseline": 600.0,
                "ratio": total / 600.0,
                "goal": "<= 600 s",
            }
        )
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    for row in main():
        print(row)
