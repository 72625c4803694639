"""Run every `bench/bench_*.py` and print one table; write bench/results.json.

Each script's `main()` returns rows {figure, orpheus, baseline, ratio, goal}. Comparisons are
measured inside the same run, because this machine is shared and noisy: ratios are what count.
Run one with `python bench/run.py cli silence`.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def main(selected: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if selected:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in selected]
    rows, failures = [], []
    for script in scripts:
        start = time.perf_counter()
        try:
            for row in _load(script).main():
                rows.append({"bench": script.stem, **row})
        except Exception:  # one broken bench must not hide the others' figures
            failures.append(script.stem)
            traceback.print_exc()
        print(f"{script.stem}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    table = Table(title="Orpheus benchmarks")
    for col in ("bench", "figure", "orpheus", "baseline", "ratio", "goal"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(
            *(_fmt(row.get(c)) for c in ("bench", "figure", "orpheus", "baseline", "ratio", "goal"))
        )
    Console().print(table)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": __import__("os").cpu_count(),
    }
    (HERE / "results.json").write_text(
        json.dumps({"machine": machine, "rows": rows, "failed": failures}, indent=2, default=str)
    )
    if not selected:  # only a full run replaces the table the README links
        _write_markdown(HERE / "RESULTS.md", machine, rows, failures)
    return 1 if failures else 0


def _write_markdown(path: Path, machine: dict, rows: list[dict], failures: list[str]) -> None:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# Orpheus benchmarks",
        "",
        f"Taken {when} by `make bench` on {machine['cpus']} CPUs ({machine['machine']}, "
        f"Python {machine['python']}), no GPU. Baselines are measured in the same run.",
        "",
        "| bench | figure | orpheus | baseline | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row.get(c) for c in ("bench", "figure", "orpheus", "baseline", "ratio", "goal")]
        lines.append("| " + " | ".join(_fmt(c).replace("|", "/") for c in cells) + " |")
    if failures:
        lines += ["", "Failed: " + ", ".join(failures)]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
