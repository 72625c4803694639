"""bench/run.py rewrites RESULTS.md's table and first line, never the notes written by hand."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MACHINE = {"cpus": 2, "machine": "x86_64", "python": "3.11.7", "gpus": []}
ROW = {"bench": "bench_cli", "figure": "help s", "orpheus": 0.16, "baseline": 0.016}


def test_a_rerun_keeps_the_hand_written_notes_and_replaces_the_table(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Orpheus benchmarks\n\n"
        "Taken 2026-11-24 15:24 UTC by `make bench` on 2 CPUs.\n\n"
        "The predict rows were taken on a quiet machine.\nSecond line of that note.\n\n"
        "A | pipe inside a note.\n\n"
        "| bench | figure | orpheus | baseline | ratio | goal |\n|---|---|---|---|---|---|\n"
        "| bench_old | gone | 1 | 1 | 1 | - |\n\n"
        "Failed: bench_old\n\n"
        "## A section after the table\n\n| method | PR-AUC |\n|---|---|\n| head | 0.7 |\n"
    )
    _run_module()._write_markdown(results, MACHINE, [ROW], [], [], {"bench_cli"})
    text = results.read_text()

    assert "The predict rows were taken on a quiet machine.\nSecond line of that note.\n" in text
    assert "A | pipe inside a note." in text
    assert "bench_old" not in text and "Taken 2026-11-24" not in text  # a full run: a new table
    assert "`python bench/run.py` on 2 CPUs" in text
    assert "| bench_cli | help s | 0.16 | 0.016 | - | - |" in text
    # a second rewrite keeps the notes once, not twice
    _run_module()._write_markdown(results, MACHINE, [ROW], ["bench_x"], [], {"bench_cli"})
    again = results.read_text()
    assert again.count("Second line of that note.") == 1
    assert again.count("Failed: ") == 1 and "Failed: bench_x" in again
    # notes stay where they were: before the table, or after it (with their own tables)
    table = again.index("| bench | figure |")
    assert again.index("A | pipe") < table < again.index("Failed: bench_x")
    assert again.index("Failed: bench_x") < again.index("## A section after the table")
    assert again.rstrip().endswith("| method | PR-AUC |\n|---|---|\n| head | 0.7 |")


def test_a_first_run_writes_the_table_alone(tmp_path):
    results = tmp_path / "RESULTS.md"
    _run_module()._write_markdown(results, MACHINE, [ROW], [], [], {"bench_cli"})
    lines = results.read_text().splitlines()
    assert lines[0] == "# Orpheus benchmarks"
    assert "`python bench/run.py` on 2 CPUs" in lines[2]
    assert lines[4] == "| bench | figure | orpheus | baseline | ratio | goal |"


def test_a_partial_run_replaces_the_rows_of_what_it_ran_and_keeps_the_others(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Orpheus benchmarks\n\nTable written earlier.\n\nA note.\n\n"
        "| bench | figure | orpheus | baseline | ratio | goal |\n|---|---|---|---|---|---|\n"
        "| bench_a | a s | 1 | 2 | 0.5 | - |\n"
        "| bench_cli | old help s | 9 | 9 | 1 | <= 0.5 s |\n"
        "| bench_z | z /x/ | 3 | - | - | reported |\n"
    )
    # bench_cli and bench_z were re-run; bench_z failed, so its last figures stay
    run = _run_module()
    run._write_markdown(results, MACHINE, [ROW], ["bench_z"], ["cli", "z"], {"bench_cli"})
    table = [line for line in results.read_text().splitlines() if line.startswith("| bench_")]

    assert table == [
        "| bench_a | a s | 1 | 2 | 0.5 | - |",
        "| bench_cli | help s | 0.16 | 0.016 | - | - |",
        "| bench_z | z /x/ | 3 | - | - | reported |",
    ]
    assert "`python bench/run.py cli z` (the other benchmarks' rows are from earlier runs)" in (
        results.read_text()
    )
    assert "Failed: bench_z" in results.read_text() and "A note." in results.read_text()
