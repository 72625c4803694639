"""Wall time and CPU time of a stage run as a command runs it: the 1 -> 2 worker figures.

Each run is a fresh interpreter, so both sides pay their own imports, and the pool its start-up.
CPU time is that process's and its descendants': pool workers are children of multiprocessing's
fork server, which `orpheus.pool` stops and waits for at exit, so their CPU reaches this process
through it. The machine is shared, so wall-clock speed-ups are noisy; work per CPU-second is the
figure that holds, and the load average says how busy the machine was.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time


def run_fresh(code: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of Python `code` in a fresh interpreter, workers included."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def load() -> str:
    """The 1-minute load average against the core count, for the figures' context."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
