"""Run every `bench/bench_*.py` and print one table; write bench/results.json.

Each script's `main()` returns rows {figure, orpheus, baseline, ratio, goal}; each script runs in
a fresh process of its own, so one benchmark's memory or TensorFlow state never colours the
next one's figures. Comparisons are measured inside the same run, because this machine is shared
and noisy: ratios are what count. `python bench/run.py cli silence` re-runs some benchmarks and
replaces only their rows in results.json and RESULTS.md (a benchmark that fails keeps its last
rows, and the table says it failed). RESULTS.md's hand-written paragraphs and sections (when,
where and how each figure was taken) are kept where they are; a run rewrites only its first line
and its table.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Set as AbstractSet
from pathlib import Path

from rich.console import Console
from rich.table import Table

from orpheus.io import write_atomic

HERE = Path(__file__).resolve().parent


COLUMNS = ("bench", "figure", "orpheus", "baseline", "ratio", "goal")
TABLE_HEAD = "| " + " | ".join(COLUMNS) + " |"
MARKER = "@@bench-rows@@"
CHILD = (
    "import importlib.util, json, sys\n"
    "spec = importlib.util.spec_from_file_location('bench', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    f"print({MARKER!r} + json.dumps(module.main(), default=str))\n"
)


def _run_script(path: Path) -> list[dict]:
    """Run one bench script's main() in a fresh interpreter and return its rows."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, check=True
    )
    last = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)][-1]
    return json.loads(last.removeprefix(MARKER))


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
            for row in _run_script(script):
                rows.append({"bench": script.stem, **row})
        except (subprocess.CalledProcessError, IndexError, ValueError):
            failures.append(script.stem)  # one broken bench must not hide the others' figures
        print(f"{script.stem}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    table = Table(title="Orpheus benchmarks")
    for col in COLUMNS:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in COLUMNS))
    Console().print(table)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": __import__("os").cpu_count(),
        "gpus": _gpus(),
    }
    # A partial run replaces the rows of the benchmarks it ran; a failed one keeps its last rows.
    ran = {s.stem for s in scripts} - set(failures)
    results = HERE / "results.json"
    last = json.loads(results.read_text())["rows"] if selected and results.exists() else []
    write_atomic(
        results,
        json.dumps(
            {"machine": machine, "rows": _merged(last, rows, ran), "failed": failures},
            indent=2,
            default=str,
        ),
    )
    _write_markdown(HERE / "RESULTS.md", machine, rows, failures, selected, ran)
    return 1 if failures else 0


def _merged(last: list[dict], rows: list[dict], ran: AbstractSet[str]) -> list[dict]:
    """`rows`, plus the rows of `last` from benchmarks not in `ran`, ordered by benchmark."""
    kept = [r for r in last if r["bench"] not in ran]
    return sorted(kept + rows, key=lambda r: r["bench"])


def _gpus() -> list[str]:
    """The GPUs nvidia-smi lists (bench_gpu's rows say which backend saw them)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return [line.split(" (UUID")[0] for line in listed.stdout.splitlines() if line.strip()]


def _write_markdown(
    path: Path,
    machine: dict,
    rows: list[dict],
    failures: list[str],
    selected: list[str],
    ran: AbstractSet[str],
) -> None:
    """Rewrite RESULTS.md's first line and table with `rows`; a partial run (`selected`) keeps
    the table's rows of the benchmarks not in `ran`, and every hand-written note stays."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    command = " ".join(["python bench/run.py", *selected])
    kept = " (the other benchmarks' rows are from earlier runs)" if selected else ""
    first = (
        f"Table written {when} by `{command}`{kept} on {machine['cpus']} CPUs "
        f"({machine['machine']}, Python {machine['python']}), "
        f"{', '.join(machine.get('gpus') or ['no GPU'])}. Baselines are measured in the same run."
    )
    before, last, after = _sections(path)
    if selected:
        rows = _merged(last, rows, ran)
    table = [TABLE_HEAD, "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [row.get(c) for c in COLUMNS]
        table.append("| " + " | ".join(_fmt(c).replace("|", "/") for c in cells) + " |")
    if failures:
        table += ["", "Failed: " + ", ".join(failures)]
    blocks = ["# Orpheus benchmarks", first, *before, "\n".join(table), *after]
    write_atomic(path, "\n\n".join(blocks) + "\n")  # never a half-written file that loses notes


def _sections(path: Path) -> tuple[list[str], list[dict], list[str]]:
    """An existing RESULTS.md's hand-written paragraphs and sections before its table, the
    table's rows (cells as written), and what follows the table (the title, first line, table
    and its "Failed:" line are what a run rewrites)."""
    if not path.exists():
        return [], [], []
    blocks = [b.strip() for b in path.read_text().split("\n\n") if b.strip()][2:]
    at = next((i for i, b in enumerate(blocks) if b.startswith(TABLE_HEAD)), len(blocks))
    rows = [
        dict(
            zip(COLUMNS, (cell.strip() for cell in line.strip().strip("|").split("|")), strict=True)
        )
        for line in (blocks[at].splitlines()[2:] if at < len(blocks) else [])
    ]
    after = blocks[at + 1 :]
    if after and after[0].startswith("Failed: "):
        after = after[1:]
    return blocks[:at], rows, after


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
