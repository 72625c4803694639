"""The demo, stage by stage: wall time, CPU time and peak memory (RSS) of each `orpheus` command.

Each stage of `orpheus demo` runs as its own process on a fresh workspace, so `wait4` gives that
stage's own CPU time and peak memory. CPU time (user + system, children included) is reported
beside wall time because a shared machine makes wall time noisy. The demo's up-front estimate
(`orpheus.example.timing`) is taken first, as the demo takes it, and set against the real total.
Goal: the whole demo <= 10 minutes on a 2-core machine, also without AVX-512: run it as
`ONEDNN_MAX_CPU_ISA=AVX2 python bench/run.py demo` to have oneDNN use AVX2 kernels only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orpheus.commands.demo import pipeline_stages
from orpheus.example.build import EXAMPLE_TRAINING_CONFIG

TRACKS = int(os.environ.get("ORPHEUS_BENCH_DEMO_TRACKS", 200))
EPOCHS = int(
    os.environ.get("ORPHEUS_BENCH_DEMO_EPOCHS", EXAMPLE_TRAINING_CONFIG["model-training"]["epochs"])
)
ISA = os.environ.get("ONEDNN_MAX_CPU_ISA", "all")


def _run(args: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds, peak RSS (MiB) and stdout of one `orpheus` process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orpheus", "-q", *args], stdout=out, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            raise RuntimeError(
                f"orpheus {' '.join(args)} exited {code}: {proc.stderr.read()[-500:]!r}"
            )
        proc.stderr.close()
        out.seek(0)
        text = out.read().decode()
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text


def _row(figure: str, value: float | None, **extra) -> dict:
    row = {"figure": figure, "orpheus": value, "baseline": None, "ratio": None, "goal": None}
    return {**row, **extra}


def _estimate() -> dict:
    """The demo's up-front estimate, taken in a process of its own: a child forked from this one
    after it imported TensorFlow would report this process's peak memory as its own."""
    code = (
        "import dataclasses, json, sys\n"
        "from orpheus.config import validate\n"
        "from orpheus.example.build import EXAMPLE_TRAINING_CONFIG as C\n"
        "from orpheus.example.timing import estimate\n"
        "cfg = validate(C)\n"
        "tags = cfg['tags']\n"
        "guess = estimate(tracks=int(sys.argv[1]), epochs=int(sys.argv[2]), model=cfg['model'],"
        " training=cfg['model-training'], n_labels=tags['top'] - len(tags['without']))\n"
        "print(json.dumps({**dataclasses.asdict(guess), 'total': guess.total}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(TRACKS), str(EPOCHS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])


def main() -> list[dict]:
    guess = _estimate()
    workdir = Path(tempfile.mkdtemp(prefix="orpheus-bench-demo-"))
    try:
        rows, total, cpu, metrics = [], 0.0, 0.0, {}
        for stage in pipeline_stages(workdir / "ws", tracks=TRACKS, epochs=EPOCHS, seed=0):
            seconds, cpu_s, peak, out = _run(stage.args)
            total, cpu = total + seconds, cpu + cpu_s
            if stage.name == "test":
                metrics = json.loads(out)
            rows.append(_row(f"demo stage {stage.name}: wall s", seconds))
            rows.append(_row(f"demo stage {stage.name}: CPU s", cpu_s))
            rows.append(_row(f"demo stage {stage.name}: peak RSS MiB", peak))
        what = f"({TRACKS} tracks, {EPOCHS} epochs, oneDNN ISA {ISA})"
        rows.append(
            _row(
                f"demo total {what}, wall s",
                total,
                baseline=600.0,
                ratio=total / 600.0,
                goal="<= 600 s",
            )
        )
        rows.append(_row(f"demo total {what}, CPU s", cpu))
        rows.append(
            _row(
                f"demo estimate before it starts (measured in {guess['measured_in']:.1f} s) vs wall"
                " (the estimate also counts the demo's two predict stages)",
                guess["total"],
                baseline=total,
                ratio=guess["total"] / total,
                goal="within 20%",
            )
        )
        for key, floor in (("roc_auc_macro", 0.9), ("pr_auc_macro", 0.85)):
            rows.append(_row(f"demo {key} {what}", metrics.get(key), goal=f">= {floor}"))
        return rows
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    for row in main():
        print(row)
