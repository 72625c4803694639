"""`orpheus demo`: the whole pipeline through the real CLI, and a re-run that reuses it all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import orpheus

from orpheus.commands.init import use_example
from orpheus.config import validate
from orpheus.example.build import EXAMPLE_TRAINING_CONFIG
from orpheus.example.timing import estimate
from orpheus.training.progress import TrainingEta
from orpheus.workspace import Workspace


def test_demo_runs_every_stage_then_reuses_them(example_corpus: Path, tmp_path: Path):
    ws = Workspace.create(tmp_path / "demo ws")
    use_example(ws, example_corpus, json.loads((example_corpus / "truth.json").read_text()))

    first = orpheus("demo", ws.root, "--epochs", "1")
    assert first.exit_code == 0, first.stderr
    for stage in ("scan", "wrangle", "silence", "tags clean", "tfrecords build", "train", "test"):
        assert f"✓ {stage}:" in first.stderr
    assert "macro ROC-AUC" in first.stdout and "predict (msd-musicnn)" in first.stdout
    assert "expected on this machine: about" in first.stderr  # said before the first stage
    assert first.stderr.index("expected on this machine") < first.stderr.index("✓ scan:")
    assert "(expected " in first.stdout  # and set against the real total at the end
    states = Workspace.open(ws.root).states()
    assert {states[n][0] for n in ("scan", "wrangle", "silence", "clean-tags")} == {"ok"}
    assert states["run/demo"][0] == "ok"
    trained = json.loads((ws.root / "runs/demo/config.json").read_text())["train"]
    assert trained["schedule"] == "one-cycle"  # the example config's, no --schedule given
    scan = Workspace.open(ws.root).entry("scan")["command"]
    assert scan == f"orpheus -w '{ws.root}' scan"  # the stage's own command line, not `demo`

    again = orpheus("demo", ws.root, "--epochs", "1")
    assert again.exit_code == 0, again.stderr
    for stage in ("init --example", "scan", "silence", "tfrecords build", "train"):
        assert f"✓ {stage}: up to date, reused" in again.stderr


def test_a_demo_stopped_while_training_resumes_its_run(example_corpus, tmp_path, monkeypatch):
    """A SIGTERM after the demo's first epoch stops the demo with the run's NOTE; the next demo
    resumes that run (it used to fail on `run demo already exists` every time). The signal is
    real, sent by this process to itself once epoch 1 is saved."""
    import os
    import signal

    from orpheus.training.trainer import Trainer

    ws = Workspace.create(tmp_path / "ws")
    use_example(ws, example_corpus, json.loads((example_corpus / "truth.json").read_text()))
    prune = Trainer._prune

    def prune_then_sigterm(trainer) -> None:
        prune(trainer)
        if trainer.start_epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "_prune", prune_then_sigterm)
    stopped = orpheus("demo", ws.root, "--epochs", "2")
    monkeypatch.undo()
    assert stopped.exit_code == 130 and "run the same demo again" in stopped.stderr
    assert (ws.root / "runs/demo/NOTE").is_file()

    again = orpheus("demo", ws.root, "--epochs", "2")
    assert again.exit_code == 0, again.stderr[-3000:]
    assert "train --resume demo --epochs 2" in again.stderr
    state = json.loads((ws.root / "runs/demo/state.json").read_text())
    assert state["status"] == "completed" and [h["epoch"] for h in state["history"]] == [1, 2]
    assert "macro ROC-AUC" in again.stdout


def test_demo_rejects_bad_numbers(tmp_path: Path):
    result = orpheus("demo", tmp_path / "ws", "--tracks", "0")
    assert result.exit_code == 2 and "must be positive" in result.stderr
    assert not (tmp_path / "ws").exists()


def _replay(eta: TrainingEta, clock: list[float], epochs: int, steps: int, cost) -> list:
    """Drive `eta` through a simulated run; returns (estimate, true seconds left) after each step.

    `cost(epoch, step)` is how long a step takes, `cost(epoch, None)` an epoch's end
    (validation and checkpoints)."""
    events = []  # (time, kind, epoch) in the order the trainer reports them
    t = 0.0
    for epoch in range(epochs):
        events.append((t, "begin", epoch))
        for step in range(steps):
            t += cost(epoch, step)
            events.append((t, "step", epoch))
        t += cost(epoch, None)
        events.append((t, "end", epoch))
    seen = []
    for when, kind, epoch in events:
        clock[0] = when
        if kind == "begin":
            eta.epoch_begin(epoch, epochs, steps)
        elif kind == "step":
            eta.step()
            seen.append((eta.seconds_left(), t - when))
        else:
            eta.epoch_end()
    return seen


def test_training_eta_is_within_a_fifth_of_the_time_left():
    # The demo's shape: 6 epochs of 40 steps; the first step traces the graph (10 s) and the
    # first epoch's end traces the validation step (6 s, later ends 1.5 s).
    def cost(epoch, step):
        if step is None:
            return 6.0 if epoch == 0 else 1.5
        return 10.0 if (epoch, step) == (0, 0) else 0.8

    clock = [0.0]
    seen = _replay(TrainingEta(clock=lambda: clock[0]), clock, 6, 40, cost)
    assert seen[0][0] is None  # one step (the traced one) says nothing about the rate yet
    errors = [abs(guess - true) / true for guess, true in seen[1:]]
    assert max(errors) <= 0.2
    # once a steady epoch's end has been measured (the first one also traced), it is all but exact
    assert max(errors[80:]) <= 0.01


def test_training_eta_follows_a_machine_that_slows_down():
    clock = [0.0]
    cost = lambda epoch, step: (0.5 if epoch < 2 else 1.0) if step is not None else 0.0  # noqa: E731
    seen = _replay(TrainingEta(clock=lambda: clock[0]), clock, 4, 40, cost)
    guess, true = seen[2 * 40 + 25]  # 25 steps after the slow-down, past the 20-step window
    assert guess == pytest.approx(true)


def test_estimate_counts_only_the_stages_still_to_run():
    cfg = validate(EXAMPLE_TRAINING_CONFIG)
    kwargs = dict(model=cfg["model"], training=cfg["model-training"], n_labels=11)
    reused = estimate(tracks=None, epochs=None, **kwargs)  # a re-run: corpus and model exist
    assert reused.render == 0 and reused.train == 0 and reused.total == reused.rest > 0
    fresh = estimate(tracks=8, epochs=None, workers=2, **kwargs)
    assert fresh.render > 0 and fresh.train == 0


def test_importing_the_demo_does_not_import_the_cli():
    import subprocess
    import sys

    code = "import sys, orpheus.commands.demo; print('orpheus.cli' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_demo_runs_the_jamendo_layout_from_labels_import_to_predictions(
    example_corpus: Path, tmp_path: Path
):
    from orpheus.example.layouts import write_layout

    ws = Workspace.create(tmp_path / "ws")
    ws.path("example").mkdir()
    use_example(ws, Path("example"), write_layout(example_corpus, ws.path("example"), "jamendo"))

    done = orpheus("demo", ws.root, "--epochs", "1", "--layout", "jamendo")
    assert done.exit_code == 0, done.stderr
    assert "✓ init --example: up to date, reused" in done.stderr  # the example laid out above
    for stage in ("labels import", "silence", "tags clean", "tfrecords build", "train", "test"):
        assert f"✓ {stage}:" in done.stderr
    assert " scan" not in done.stderr and "wrangle" not in done.stderr
    after = Workspace.open(ws.root)
    assert after.entry("labels")["params"]["source"] == "jamendo"
    assert after.entry("labels")["params"]["split_source"] == "dataset"
    assert after.state("run/demo") == "ok"
    assert "macro ROC-AUC" in done.stdout and "predict (msd-musicnn)" in done.stdout
    assert ".mp3: " in done.stdout  # each prediction names its file and its top tags


def test_demo_rejects_an_unknown_layout(tmp_path: Path):
    result = orpheus("demo", tmp_path / "ws", "--layout", "itunes")
    assert result.exit_code == 2 and "unknown --layout" in result.stderr
    assert not (tmp_path / "ws").exists()
