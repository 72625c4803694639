"""`orpheus --help` wall time (goal: median <= 0.5 s), against a bare `python -c pass`."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 7


def _median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> list[dict]:
    exe = str(Path(sys.executable).parent / "orpheus")
    help_s = _median_seconds([exe, "--help"])
    bare_s = _median_seconds([sys.executable, "-c", "pass"])
    tf_s = _median_seconds([sys.executable, "-c", "import tensorflow"])
    return [
        {
            "figure": "orpheus --help, median wall s",
            "orpheus": help_s,
            "baseline": bare_s,
            "baseline_is": "python -c pass",
            "ratio": help_s / bare_s,
            "goal": "<= 0.5 s",
        },
        {
            "figure": "import tensorflow, median wall s (what --help avoids)",
            "orpheus": help_s,
            "baseline": tf_s,
            "baseline_is": "python -c 'import tensorflow'",
            "ratio": tf_s / help_s,
            "goal": "--help never imports TF",
        },
    ]


if __name__ == "__main__":
    for row in main():
        print(row)
