"""CLI paths no other test runs end to end, on the example corpus: waveform records and training
then `orpheus test`, the custom loop then `test`, the Beam runner, two local workers, records at
another sample rate and mel count, and `test`'s metric values recomputed with scikit-learn.

One workspace (scan .. tfrecords build, a tiny model) is shared by the module; a test that would
change what another test reads works on its own copy.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import tensorflow as tf
from cli_helpers import in_workspace, ok
from process_helpers import free_ports
from sklearn.metrics import average_precision_score, roc_auc_score

from orpheus import features, records
from orpheus.commands.init import use_example
from orpheus.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable

EPOCHS, STEPS, BATCH, WINDOW_S = 2, 3, 4, 3  # tiny training: 2 epochs of 3 steps of 4 windows
SPLIT = [40, 20, 40]  # ~8 of the example's 20 tagged tracks in test: AUCs for several tags
METRICS = ("roc_auc_macro", "pr_auc_macro", "roc_auc_micro", "pr_auc_micro")


@pytest.fixture(scope="module")
def workspace(example_corpus: Path, tmp_path_factory) -> Path:
    """The example corpus through `tfrecords build` (log-mel), with a tiny training config.

    The corpus is only read (no stage writes into its inputs), so it is used in place.
    """
    root = tmp_path_factory.mktemp("cli paths") / "ws"
    ws = Workspace.create(root)
    use_example(ws, example_corpus, json.loads((example_corpus / "truth.json").read_text()))
    cfg = ws.config
    cfg["model"].update(n_filters=2, n_dense_units=8, n_backend_filters=8)
    cfg["model-training"].update(
        split=SPLIT, batch_size=BATCH, iterations=STEPS, epochs=EPOCHS, window_length=WINDOW_S
    )
    ws.save_config(cfg)
    for args in (
        ["scan", "-j", "1"],
        ["wrangle"],
        ["silence", "-j", "2"],
        ["tags", "clean"],
        ["tfrecords", "build", "-j", "2"],
    ):
        ok(in_workspace(root, "-q", *args))
    return root


def copy_without_records(ws: Path, dest: Path) -> Path:
    """A private copy of the workspace without its TFRecords and runs, to build other ones."""
    return Path(shutil.copytree(ws, dest, ignore=shutil.ignore_patterns("tfrecords", "runs")))


def decoded(records_dir: Path, split: str | None = None) -> list[dict]:
    """Every example of a build (or of one split), in shard order, decoded with NumPy."""
    index = records.read_index(records_dir)
    return [
        records.decode_example(raw)
        for s in index["shards"]
        if split is None or s["split"] == split
        for raw in records.read_records(records_dir / s["file"], index["compression"])
    ]


def labelled_test_tracks(ws: Path, run_id: str) -> list[tuple[dict, np.ndarray]]:
    """(example, 0/1 row over the run's labels) for each test track with one of the labels."""
    run = ws / "runs" / run_id
    labels = json.loads((run / "labels.json").read_text())
    frontend = json.loads((run / "config.json").read_text())["frontend"]
    vocabulary = records.read_index(ws / "tfrecords" / frontend)["vocabulary"]
    columns = [vocabulary.index(label) for label in labels]
    rows = [(ex, ex["tags"][columns]) for ex in decoded(ws / "tfrecords" / frontend, "test")]
    return [(ex, y) for ex, y in rows if y.any()]


def assert_trained(ws: Path, run_id: str, frontend: str, loop: str) -> None:
    """The run ran every epoch and step, left its files and no NOTE, and is in the manifest."""
    run = ws / "runs" / run_id
    for name in ("config.json", "labels.json", "state.json", "metrics.json", "model.keras"):
        assert (run / name).is_file(), name
    assert not (run / "NOTE").exists()
    assert json.loads((run / "config.json").read_text())["frontend"] == frontend
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "completed" and state["loop"] == loop, state
    assert state["epoch"] == EPOCHS and state["step"] == EPOCHS * STEPS, state
    assert [h["epoch"] for h in state["history"]] == list(range(1, EPOCHS + 1))
    assert (run / state["checkpoint"]).is_file()
    entry = Workspace.open(ws).entry(f"run/{run_id}")
    assert entry["params"]["frontend"] == frontend and entry["params"]["loop"] == loop
    assert set(entry["inputs"]) == {"tfrecords"}


def assert_tested(ws: Path, run_id: str, result) -> dict:
    """`orpheus test --json` exited 0 with finite AUCs in [0, 1], all saved in metrics.json."""
    ok(result)
    shown = json.loads(result.stdout)
    for key in METRICS:
        assert isinstance(shown[key], float) and math.isfinite(shown[key]), (key, shown)
        assert 0.0 <= shown[key] <= 1.0, (key, shown)
    run = ws / "runs" / run_id
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["training"]["epochs_done"] == EPOCHS
    for key in (*METRICS, "per_tag"):
        assert saved["test"][key] == shown[key], key
    assert list(shown["per_tag"]) == json.loads((run / "labels.json").read_text())
    assert saved["test"]["tracks"] == len(labelled_test_tracks(ws, run_id)) > 1
    summary = Workspace.open(ws).entry(f"run/{run_id}")["summary"]
    assert summary["test ROC-AUC (macro)"] == round(shown["roc_auc_macro"], 4)
    return saved["test"]


def input_shape(ws: Path, run_id: str) -> tuple:
    path = ws / "runs" / run_id / "model.keras"
    return tuple(keras.models.load_model(path, safe_mode=True, compile=False).input_shape)


# -- waveform, then test ------------------------------------------------------------------------


@pytest.mark.slow
def test_waveform_records_then_train_to_the_end_then_test(workspace):
    ok(in_workspace(workspace, "-q", "tfrecords", "build", "--format", "waveform", "-j", "2"))
    out = workspace / "tfrecords/waveform"
    index = records.read_index(out)
    assert index["feature"]["format"] == "waveform" and index["feature"]["sample_rate"] == 16000
    assert index["counts"] == records.read_index(workspace / "tfrecords/log-mel")["counts"]
    assert {ex["audio"].ndim for ex in decoded(out)} == {1}

    ok(in_workspace(workspace, "-q", "train", "--frontend", "waveform", "--run-name", "wave"))
    assert_trained(workspace, "wave", "waveform", "fit")
    assert input_shape(workspace, "wave") == (None, WINDOW_S * 16000)  # 3 s of 16 kHz samples

    assert_tested(
        workspace, "wave", in_workspace(workspace, "-q", "test", "--run", "wave", "--json")
    )


# -- the custom loop, then test; and test's numbers recomputed ----------------------------------


@pytest.fixture(scope="module")
def custom_run(workspace) -> dict:
    """A log-mel run trained with `--custom`, then `orpheus test --json` on it (its Result)."""
    ok(in_workspace(workspace, "-q", "train", "--custom", "--run-name", "custom"))
    return {
        "run": "custom",
        "test": in_workspace(workspace, "-q", "test", "--run", "custom", "--json"),
    }


@pytest.mark.slow
def test_custom_loop_train_to_the_end_then_test(workspace, custom_run):
    assert_trained(workspace, "custom", "log-mel", "custom")
    assert input_shape(workspace, "custom") == (None, WINDOW_S * 16000 // 256 + 1, 96)
    assert_tested(workspace, "custom", custom_run["test"])


@pytest.mark.slow
def test_test_metrics_equal_sklearn_on_song_level_predictions_recomputed(workspace, custom_run):
    """`test` writes no per-track predictions, so they are recomputed here: the run's saved
    model on the test records decoded with NumPy, each track's windows averaged; scikit-learn
    then gives the per-tag and macro AUCs the command must have printed."""
    ok(custom_run["test"])
    shown = json.loads(custom_run["test"].stdout)
    run = workspace / "runs/custom"
    labels = json.loads((run / "labels.json").read_text())
    model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    length = WINDOW_S * 16000 // 256 + 1  # centred STFT frames in a 3 s window, hop 256
    truth, scores = [], []
    for ex, y in labelled_test_tracks(workspace, "custom"):
        # one window per window length (test's default hop), and the command's normalise op and
        # batches: the scores equal the command's to the bit (measured), so no near-tie flips
        windows = features.even_windows(ex["audio"], length, length)
        windows = features.normalise(tf.constant(windows), batched=True).numpy()
        outs = [
            model(windows[i : i + BATCH], training=False) for i in range(0, len(windows), BATCH)
        ]
        truth.append(y)
        scores.append(np.concatenate(outs).mean(axis=0))
    truth, scores = np.array(truth), np.array(scores)
    assert truth.shape == scores.shape and len(truth) >= 5 and truth.shape[1] == len(labels)
    roc, pr = [], []
    for j, label in enumerate(labels):
        entry = shown["per_tag"][label]
        assert entry["positives"] == int(truth[:, j].sum()), label
        if 0 < truth[:, j].sum() < len(truth):
            roc.append(roc_auc_score(truth[:, j], scores[:, j]))
            pr.append(average_precision_score(truth[:, j], scores[:, j]))
            # AUCs are rank statistics; a changed rank would move them by >= 1/16
            assert entry["roc_auc"] == pytest.approx(roc[-1], abs=1e-9), label
            assert entry["pr_auc"] == pytest.approx(pr[-1], abs=1e-9), label
        else:
            assert entry["roc_auc"] is None and entry["pr_auc"] is None, label
    assert len(roc) >= 3  # enough tags with both classes for the macro mean to mean something
    assert shown["roc_auc_macro"] == pytest.approx(np.mean(roc), abs=1e-9)
    assert shown["pr_auc_macro"] == pytest.approx(np.mean(pr), abs=1e-9)
    assert shown["roc_auc_micro"] == pytest.approx(
        roc_auc_score(truth.ravel(), scores.ravel()), abs=1e-9
    )
    assert shown["pr_auc_micro"] == pytest.approx(
        average_precision_score(truth.ravel(), scores.ravel()), abs=1e-9
    )


# -- the Beam runner ----------------------------------------------------------------------------


@pytest.mark.slow
def test_beam_runner_writes_the_local_runners_index_and_records(workspace, tmp_path):
    import apache_beam  # noqa: F401  (installed by `make test`: a missing Beam must fail here)

    ws = copy_without_records(workspace, tmp_path / "beam ws")
    # the options reach Beam (a command that ignored --runner beam would accept this)
    bad = in_workspace(ws, "tfrecords", "build", "--runner", "beam", "--beam-options=--runner=Nope")
    assert bad.exit_code == 2, bad.stdout + bad.stderr
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad --beam-options" in errors[0] and "Nope" in errors[0]
    assert "Traceback" not in bad.stderr

    done = in_workspace(
        ws, "-q", "tfrecords", "build", "--runner", "beam", "--beam-options=--runner=DirectRunner"
    )
    ok(done)
    local, beam = workspace / "tfrecords/log-mel", ws / "tfrecords/log-mel"
    assert records.read_index(beam) == records.read_index(local)
    assert sorted(p.name for p in beam.iterdir()) == sorted(p.name for p in local.iterdir())
    ours, theirs = decoded(beam), decoded(local)
    assert [ex["tid"] for ex in ours] == [ex["tid"] for ex in theirs]
    assert len(ours) == records.read_index(local)["tracks"] == 20
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a["tags"], b["tags"])
        np.testing.assert_array_equal(a["audio"], b["audio"])
    assert Workspace.open(ws).state("tfrecords/log-mel") == "ok"


# -- two workers on 127.0.0.1 -------------------------------------------------------------------


@pytest.mark.slow
def test_two_local_workers_train_one_run_written_by_the_chief_only(workspace, tmp_path):
    # two machines: each worker has its own copy of the workspace (TFRecords included)
    machines = [
        Path(
            shutil.copytree(
                workspace, tmp_path / f"machine {i}", ignore=shutil.ignore_patterns("runs")
            )
        )
        for i in range(2)
    ]
    hosts = ",".join(f"127.0.0.1:{p}" for p in free_ports(2))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ORPHEUS_WORKSPACE": ""}
    env.pop("TF_CONFIG", None)
    logs = [tmp_path / f"worker {i}.log" for i in range(2)]
    sinks = [log.open("w") for log in logs]
    procs = [
        subprocess.Popen(
            [PY, "-m", "orpheus", "-w", str(ws), "train", "--worker-hosts", hosts]
            + ["--worker-index", str(i), "--run-name", "mw"],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        for i, (ws, sink) in enumerate(zip(machines, sinks, strict=True))
    ]
    for sink in sinks:
        sink.close()  # each worker holds its own copy
    try:  # until both exit, or one fails (its peer would wait for it forever)
        deadline = time.monotonic() + 600  # a safety net only: both normally end in ~40 s
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:  # a worker waiting for a missing peer ignores SIGTERM
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
    for i, (p, log) in enumerate(zip(procs, logs, strict=True)):
        out = log.read_text()
        assert p.returncode == 0, (i, out[-3000:])
        assert f"MultiWorkerMirroredStrategy: worker {i} of 2" in out, out[-3000:]
    chief, other = machines
    assert_trained(chief, "mw", "log-mel", "custom")  # the custom loop: fit fails across workers
    ckpts = sorted(p.name for p in (chief / "runs/mw/checkpoints").iterdir())
    assert [c for c in ckpts if c.startswith("epoch-")] == [
        f"epoch-{e:04d}.npz" for e in range(1, EPOCHS + 1)
    ]
    # the other worker computed the same steps but wrote nothing: no run folder, no manifest entry
    assert not (other / "runs").exists()
    assert Workspace.open(other).entry("run/mw") is None


# -- another sample rate and mel count ----------------------------------------------------------


@pytest.mark.slow
def test_records_at_22050_hz_with_64_mels_then_train_and_test(workspace, tmp_path):
    ws = copy_without_records(workspace, tmp_path / "sr ws")
    ok(in_workspace(ws, "-q", "tfrecords", "build", "--sr", "22050", "--mels", "64", "-j", "2"))
    out = ws / "tfrecords/log-mel"
    index = records.read_index(out)
    assert index["feature"]["sample_rate"] == 22050 and index["feature"]["n_mels"] == 64
    params = Workspace.open(ws).entry("tfrecords/log-mel")["params"]
    assert params["sample_rate"] == 22050 and params["n_mels"] == 64
    table = pd.read_parquet(ws / "data/silence.parquet").set_index("track_id")["file_path"]
    audio_root = Path(json.loads((ws / "config.json").read_text())["paths"]["audio_root"])
    for ex in decoded(out, "test"):
        assert ex["audio"].shape[1] == 64
        y, native = sf.read(audio_root / table[ex["tid"]])  # the decoded MP3, before resampling
        frames = len(y) * 22050 / native / 256 + 1  # centred frames at 22050 Hz, hop 256
        assert abs(ex["audio"].shape[0] - frames) <= 1.5, (ex["tid"], ex["audio"].shape, frames)

    ok(in_workspace(ws, "-q", "train", "--run-name", "sr22"))
    assert_trained(ws, "sr22", "log-mel", "fit")
    assert input_shape(ws, "sr22") == (None, WINDOW_S * 22050 // 256 + 1, 64)
    assert_tested(ws, "sr22", in_workspace(ws, "-q", "test", "--run", "sr22", "--json"))

    # predict takes the run's recipe (22050 Hz, 64 mels), not the workspace's or the defaults:
    # its probabilities equal the song-level mean over the same windows of the test record.
    # The record holds the same frames rounded to float16 (relative error 5e-4), hence 5e-3.
    cfg = json.loads((ws / "runs/sr22/config.json").read_text())
    assert cfg["tfrecords"]["sample_rate"] == 22050 and cfg["tfrecords"]["n_mels"] == 64
    model = keras.models.load_model(ws / "runs/sr22/model.keras", safe_mode=True, compile=False)
    length = WINDOW_S * 22050 // 256 + 1
    ex = decoded(out, "test")[0]
    windows = features.even_windows(ex["audio"], length, length)
    expected = model(features.normalise(tf.constant(windows), batched=True)).numpy().mean(axis=0)
    song = audio_root / table[ex["tid"]]
    result = in_workspace(ws, "predict", str(song), "--model", "sr22", "-f", "json", "-t", "0")
    ok(result)
    (record,) = json.loads(result.stdout)
    labels = json.loads((ws / "runs/sr22/labels.json").read_text())
    got = np.array([record["probabilities"][label] for label in labels])
    np.testing.assert_allclose(got, expected, atol=5e-3)
