"""`orpheus demo`: the whole pipeline through the real CLI, and a re-run that reuses it all."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orpheus.cli import app
from orpheus.commands.init import use_example
from orpheus.workspace import Workspace


def test_demo_runs_every_stage_then_reuses_them(example_corpus: Path, tmp_path: Path):
    ws = Workspace.create(tmp_path / "demo ws")
    use_example(ws, example_corpus, json.loads((example_corpus / "truth.json").read_text()))
    runner = CliRunner()

    first = runner.invoke(app, ["demo", str(ws.root), "--epochs", "1"])
    assert first.exit_code == 0, first.stderr
    for stage in ("scan", "wrangle", "silence", "tags clean", "tfrecords build", "train", "test"):
        assert f"✓ {stage}:" in first.stderr
    assert "macro ROC-AUC" in first.stdout and "predict (msd-musicnn)" in first.stdout
    states = Workspace.open(ws.root).states()
    assert {states[n][0] for n in ("scan", "wrangle", "silence", "clean-tags")} == {"ok"}
    assert states["run/demo"][0] == "ok"
    scan = Workspace.open(ws.root).entry("scan")["command"]
    assert scan == f"orpheus -w '{ws.root}' scan"  # the stage's own command line, not `demo`

    again = runner.invoke(app, ["demo", str(ws.root), "--epochs", "1"])
    assert again.exit_code == 0, again.stderr
    for stage in ("init --example", "scan", "silence", "tfrecords build", "train"):
        assert f"✓ {stage}: up to date, reused" in again.stderr


def test_demo_rejects_bad_numbers(tmp_path: Path):
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "ws"), "--tracks", "0"])
    assert result.exit_code == 2 and "must be positive" in result.stderr
    assert not (tmp_path / "ws").exists()
