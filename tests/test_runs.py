"""Run folders (`orpheus.runs`): one module creates, lists, picks and opens them, and a run carries
the feature recipe of the records it trained on, so `predict --model RUN` computes what `test`
evaluates, at any sample rate and mel count (issue 14's bug: 64 mels, 22050 Hz).

The round trips run the example corpus through `tfrecords build` -> `train` -> `predict` ->
`test` with a tiny model (1 epoch of 3 steps); the oracle for predict is `orpheus test`'s own
song-level predictions for the same tracks, computed from the TFRecords, not from the audio.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from cli_helpers import in_workspace, ok

from orpheus import evaluation, records, runs
from orpheus.commands.init import use_example
from orpheus.errors import OrpheusError
from orpheus.features import Recipe
from orpheus.predicting import resolve_model
from orpheus.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
WINDOW_S = 3
# (name, `tfrecords build` options, sample rate, mels) of the two round trips
TRIPS = [("mels64", ["--mels", "64"], 16000, 64), ("sr22050", ["--sr", "22050"], 22050, 96)]


# -- no TensorFlow, one definition of "the runs" and "the latest" ---------------------------------


def test_runs_and_the_training_options_import_without_tensorflow():
    code = (
        "import sys, orpheus.runs, orpheus.training.lifecycle, orpheus.training.progress\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _finished_run(ws: Workspace, run_id: str, recipe: Recipe) -> runs.Run:
    """A registered run folder with a (stand-in) model file: enough to list and pick it."""
    folder = runs.create_run(
        runs.runs_dir(ws), run_id, config={"frontend": "log-mel"}, labels=["a"], recipe=recipe
    )
    (folder / runs.MODEL_FILE).write_bytes(b"model")
    ws.register(f"run/{run_id}", folder, params={})
    return runs.Run(folder)


def test_runs_live_in_log_dir_and_the_latest_is_the_last_finished_one(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    cfg = ws.config
    cfg["model-training"]["log_dir"] = "experiments"
    ws.save_config(cfg)
    recipe = runs.recipe_for("log-mel", records.FeatureSpec().params, 1.0)
    assert runs.latest(ws) is None and resolve_model(ws).run_dir is None  # the bundled model

    first = _finished_run(ws, "first", recipe)
    second = _finished_run(ws, "second", recipe)
    unfinished = runs.create_run(
        runs.runs_dir(ws), "third", config={"frontend": "log-mel"}, labels=["a"]
    )
    ws.register("run/third", unfinished, params={})
    assert first.dir == tmp_path / "ws/experiments/first"
    assert [r.id for r in runs.list_runs(ws)] == ["first", "second"]
    assert [r.id for r in runs.list_runs(ws, finished=False)] == ["first", "second", "third"]
    assert runs.latest(ws) == second
    # every reader agrees: predict's default model, `--model ID`, and an id that is no run
    assert resolve_model(ws).run_dir == second.dir
    assert resolve_model(ws, "run/first").run_dir == first.dir
    assert runs.find(ws, "first") == first and runs.find(tmp_path / "ws", "run/first") == first
    assert runs.find(ws, "gone").dir == tmp_path / "ws/experiments/gone"
    with pytest.raises(OrpheusError, match="no run run/gone"):
        runs.open_run(tmp_path / "ws", "gone")
    assert runs.Run(second.dir).recipe == recipe


def test_a_run_interrupted_while_it_is_made_leaves_no_half_made_run(tmp_path, monkeypatch):
    """A SIGINT between the run's config and its labels: no run folder at all (a half-made one,
    without its labels or checkpoints/, took the name from a new run and could not be resumed),
    nothing left beside it, and the same run can then be made, with the umask's mode. The
    signal is real, sent by this process to itself."""
    write = runs.write_json_atomic

    def write_then_sigint(path: Path, value) -> None:
        write(path, value)
        if path.name == runs.CONFIG_FILE:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(runs, "write_json_atomic", write_then_sigint)
    with pytest.raises(KeyboardInterrupt):
        runs.create_run(tmp_path, "cut", config={"frontend": "log-mel"}, labels=["a"])
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []

    made = runs.create_run(tmp_path, "cut", config={"frontend": "log-mel"}, labels=["a"])
    assert sorted(p.name for p in made.iterdir()) == sorted(
        ["NOTE", runs.CONFIG_FILE, runs.LABELS_FILE, "checkpoints", "logs"]
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    assert made.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # the umask's, not 0700
    with pytest.raises(OrpheusError, match="run cut already exists"):
        runs.create_run(tmp_path, "cut", config={}, labels=["a"])


# -- the round trips -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(example_corpus: Path, tmp_path_factory) -> Path:
    """The example corpus through `tags clean`, with a tiny training config; no records yet."""
    root = tmp_path_factory.mktemp("runs") / "ws"
    ws = Workspace.create(root)
    use_example(ws, example_corpus, json.loads((example_corpus / "truth.json").read_text()))
    cfg = ws.config
    cfg["model"].update(n_filters=2, n_dense_units=8, n_backend_filters=8)
    cfg["model-training"].update(
        split=[40, 20, 40], batch_size=4, iterations=3, epochs=1, window_length=WINDOW_S
    )
    ws.save_config(cfg)
    for args in (["scan", "-j", "1"], ["wrangle"], ["silence", "-j", "2"], ["tags", "clean"]):
        ok(in_workspace(root, "-q", *args))
    return root


@pytest.fixture(scope="module", params=TRIPS, ids=[t[0] for t in TRIPS])
def trip(request, labelled: Path, tmp_path_factory) -> dict:
    """records -> train -> predict (the test split's files) -> test, on a copy of `labelled`."""
    name, build_options, sample_rate, n_mels = request.param
    ws = Path(shutil.copytree(labelled, tmp_path_factory.mktemp(name) / "ws"))
    ok(in_workspace(ws, "-q", "tfrecords", "build", "-j", "2", *build_options))
    ok(in_workspace(ws, "-q", "train", "--run-name", "rt"))
    workspace = Workspace.open(ws)
    run = runs.open_run(ws, "rt")
    tested = evaluation.evaluate_run(workspace, run)  # what `orpheus test` computes, per track
    table = pd.read_parquet(ws / "data/silence.parquet").set_index("track_id")["file_path"]
    files = [workspace.audio_root() / table[tid] for tid in tested.predictions.tids]
    options = ["--model", "rt", "-f", "json", "-t", "0", "--silence-db", "-300"]
    predicted = ok(in_workspace(ws, "predict", *files, *options))
    shown = json.loads(ok(in_workspace(ws, "-q", "test", "--run", "rt", "--json")).stdout)
    return {
        "ws": ws,
        "run": run,
        "sample_rate": sample_rate,
        "n_mels": n_mels,
        "tested": tested,
        "files": files,
        "predicted": json.loads(predicted.stdout),
        "shown": shown,
    }


@pytest.mark.slow
def test_predict_gives_the_song_level_probabilities_that_test_computes(trip):
    """Issue 14's bug: with 64 mels predict failed on the input shape, and at 22050 Hz it decoded
    at 16 kHz and tagged wrongly. Now its probabilities for each test-split file equal `test`'s
    song-level predictions for that track. `test` reads the records' float16 log-mels (relative
    rounding 2**-11 = 4.9e-4), predict computes float32 from the audio; through this tiny model
    the largest difference measured is 1.2e-5 (mels64) and 1.1e-5 (sr22050), with probabilities
    spread by 0.09-0.10 (std) across tracks and tags; 1e-4 leaves 8x room for other CPUs' kernels
    while a wrong recipe fails outright (64 mels) or moves them by far more."""
    labels = trip["run"].labels
    predicted = {record["path"]: record for record in trip["predicted"]}
    assert len(predicted) == len(trip["files"]) > 1
    got = np.array([[predicted[str(f)]["probabilities"][t] for t in labels] for f in trip["files"]])
    np.testing.assert_allclose(got, trip["tested"].predictions.y_score, atol=1e-4, rtol=0)
    # and `orpheus test` itself reports the metrics of those same predictions
    assert trip["shown"]["roc_auc_macro"] == pytest.approx(
        trip["tested"].results["roc_auc_macro"], abs=1e-9
    )


@pytest.mark.slow
def test_every_feature_parameter_the_run_records_is_the_one_predict_uses(trip):
    from orpheus.tagger import Tagger

    ws, run = trip["ws"], trip["run"]
    index = records.read_index(ws / "tfrecords/log-mel")
    recorded = json.loads(run.config_path.read_text())["recipe"]
    mel = records.spec_of(index).params
    assert (mel.sample_rate, mel.n_mels) == (trip["sample_rate"], trip["n_mels"])
    frames = WINDOW_S * mel.sample_rate // mel.hop_length + 1  # centred frames in 3 s
    assert recorded == {
        "frontend": index["feature"]["format"],
        "mel": {k: index["feature"][k] for k in ("sample_rate", "n_fft", "hop_length", "n_mels")},
        "window": frames,
        "normalise": True,
        "placement": "even",
    }
    model = keras.models.load_model(run.model_path, safe_mode=True, compile=False)
    assert tuple(model.input_shape) == (None, frames, mel.n_mels)
    tagger = Tagger.from_run(ws, "rt")
    assert tagger.recipe == run.recipe == Recipe.from_dict(recorded)
    assert tagger.sample_rate == trip["sample_rate"]
    assert resolve_model(Workspace.open(ws), "rt").sample_rate == trip["sample_rate"]
    for record in trip["predicted"]:
        assert record["model"] == "run/rt"


@pytest.mark.slow
def test_a_run_made_before_recipes_were_recorded_still_loads_with_a_note(trip, tmp_path, capsys):
    """An older run's config.json has no "recipe": its `tfrecords` section (the records'
    features) and `model-training.window_length` give the same recipe, said in one line."""
    from orpheus.tagger import Tagger

    old = Path(shutil.copytree(trip["run"].dir, tmp_path / "old"))
    cfg = json.loads((old / "config.json").read_text())
    del cfg["recipe"]
    (old / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    tagger = Tagger.from_run_dir(old)
    notes = capsys.readouterr().err.splitlines()
    assert [line for line in notes if line.startswith("note:")] == [
        f"note: run old predates recorded recipes: its features are read from its config "
        f"({old / 'config.json'})"
    ]
    assert tagger.recipe == trip["run"].recipe and tagger.name == "run/old"
