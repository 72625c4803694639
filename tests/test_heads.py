"""Learning from the pretrained taggers: heads on cached embeddings and fine-tuning, end to end
(train, test, predict), the cache itself and the pipeline's musicnn windows, on the example corpus.

One workspace (the example corpus through `tfrecords build`, musicnn's features: 16 kHz, 96 mels,
n_fft 512, hop 256) is shared by the module; a test that changes what others read works on a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import keras
import mutagen
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from cli_helpers import in_workspace, ok
from process_helpers import ENV, PY, ROOT
from tagger_helpers import SR
from test_record import SECONDS, filecap  # noqa: F401 - the ALSA file-backed capture device
from test_record import orpheus as orpheus_process

from orpheus import embeddings, features, finetune, heads, pretrained, records, runs
from orpheus.errors import OrpheusError
from orpheus.example.layouts import use_example
from orpheus.models.musicnn import build_musicnn
from orpheus.training import lifecycle
from orpheus.workspace import STALE, Workspace

SPLIT = [40, 20, 40]  # several labelled tracks in every split of the 20 tagged example tracks
REFERENCE = Path(__file__).parent / "fixtures" / "musicnn_reference.npz"
CROSS_CPU = 5e-5  # test_musicnn's tolerance: 4x the measured AVX2/AVX-512 difference of TF1 runs
# A record holds the log-mel rounded to float16 (relative error <= 5e-4) while predict computes it
# in float32 from audio: a bound on what that moves song-level probabilities through musicnn.
FLOAT16_INPUT = 5e-3
# A resumed run computes what the uninterrupted one does, op for op: only float noise may differ.
SAME_RUN = {"rtol": 1e-5, "atol": 1e-7}


@pytest.fixture(scope="module")
def workspace(example_corpus: Path, tmp_path_factory) -> Path:
    """The example corpus through `tfrecords build` (log-mel with musicnn's features)."""
    root = tmp_path_factory.mktemp("heads") / "ws"
    ws = Workspace.create(root)
    use_example(ws, example_corpus, json.loads((example_corpus / "truth.json").read_text()))
    cfg = ws.config
    cfg["model-training"].update(split=SPLIT, batch_size=4)
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


def _test_track(ws: Path) -> tuple[dict, Path]:
    """The first test-split record, decoded, and its audio file."""
    ex = _decoded(ws / "tfrecords/log-mel", "test")[0]
    table = pd.read_parquet(ws / "data/silence.parquet").set_index("track_id")["file_path"]
    return ex, Path(Workspace.open(ws).config["paths"]["audio_root"]) / table[ex["tid"]]


def _predicted(ws: Path, run: str, song: Path) -> np.ndarray:
    result = in_workspace(ws, "predict", str(song), "--model", run, "-f", "json", "-t", "0")
    ok(result)
    (record,) = json.loads(result.stdout)
    labels = json.loads((ws / "runs" / run / "labels.json").read_text())
    return np.array([record["probabilities"][label] for label in labels])


def _tested(ws: Path, run: str) -> dict:
    result = in_workspace(ws, "-q", "test", "--run", run, "--json")
    ok(result)
    metrics = json.loads(result.stdout)
    assert 0.0 <= metrics["roc_auc_macro"] <= 1.0 and 0.0 <= metrics["pr_auc_macro"] <= 1.0
    return metrics


def _recipe(run_dir: Path) -> features.Recipe:
    return features.Recipe.from_dict(json.loads((run_dir / "config.json").read_text())["recipe"])


# -- embedding heads ------------------------------------------------------------------------------


def test_head_run_trains_from_cached_embeddings_then_tests_and_predicts(workspace):
    ok(
        in_workspace(
            workspace,
            "-q",
            "train",
            "--head",
            "linear",
            "--embeddings",
            "msd-musicnn",
            "--epochs",
            "3",
            "--run-name",
            "head",
        )
    )
    run = workspace / "runs/head"
    assert _recipe(run) == _musicnn_recipe()
    manifest = Workspace.open(workspace)
    entry = manifest.entry("embeddings/msd-musicnn")
    assert set(entry["inputs"]) == {"tfrecords", "model"}
    assert entry["inputs"]["tfrecords"]["artifact"] == "tfrecords/log-mel"
    assert (
        manifest.entry("run/head")["inputs"]["embeddings"]["artifact"] == "embeddings/msd-musicnn"
    )
    _tested(workspace, "head")

    # predict feeds musicnn's un-normalised 3 s windows through musicnn and the head: its song
    # probabilities equal the trained output layer applied, in NumPy, to the cached embeddings
    ex, song = _test_track(workspace)
    emb = embeddings.load(workspace / "embeddings/msd-musicnn.npz")
    (i,) = np.flatnonzero(emb.tids == ex["tid"])
    model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    kernel, bias = model.get_layer("output").get_weights()
    expected = (1 / (1 + np.exp(-(emb.vectors[emb.track == i] @ kernel + bias)))).mean(axis=0)
    np.testing.assert_allclose(_predicted(workspace, "head", song), expected, atol=FLOAT16_INPUT)

    # a second head (an MLP on song-level means) reuses the cache: the file is not rewritten
    cache = workspace / "embeddings/msd-musicnn.npz"
    before = (cache.stat().st_mtime_ns, Workspace.open(workspace).entry("embeddings/msd-musicnn"))
    ok(
        in_workspace(
            workspace,
            "-q",
            "train",
            "--head",
            "mlp",
            "--head-level",
            "song",
            "--embeddings",
            "msd-musicnn",
            "--epochs",
            "2",
            "--run-name",
            "mlp",
        )
    )
    after = (cache.stat().st_mtime_ns, Workspace.open(workspace).entry("embeddings/msd-musicnn"))
    assert after == before
    _tested(workspace, "mlp")
    assert _predicted(workspace, "mlp", song).shape == expected.shape


# -- fine-tuning ----------------------------------------------------------------------------------


def test_finetuned_run_keeps_its_frozen_front_end_then_tests_and_predicts(workspace):
    ok(
        in_workspace(
            workspace,
            "-q",
            "train",
            "--init",
            "mtt-musicnn",
            "--freeze",
            "frontend",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--run-name",
            "ft",
        )
    )
    run = workspace / "runs/ft"
    assert _recipe(run) == _musicnn_recipe()
    labels = json.loads((run / "labels.json").read_text())
    model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    assert model.output_shape == (None, len(labels)) and model.input_shape == (None, 187, 96)
    original = build_musicnn(50)
    original.load_weights(pretrained.weights_path("mtt-musicnn"))
    for name in ("input_bn", "timbral_38", "timbral_67_bn", "temporal_32"):
        for mine, theirs in zip(
            model.get_layer(name).get_weights(), original.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(mine, theirs)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            model.get_layer("dense").get_weights(),
            original.get_layer("dense").get_weights(),
            strict=True,
        )
    ]
    assert any(moved)
    _tested(workspace, "ft")
    ex, song = _test_track(workspace)
    wins, _ = _recipe(run).windows(ex["audio"])
    expected = model(tf.constant(wins), training=False).numpy().mean(axis=0)
    np.testing.assert_allclose(_predicted(workspace, "ft", song), expected, atol=FLOAT16_INPUT)


# -- resuming, and a head run everywhere a run works --------------------------------------------


def _checkpoint(run: Path, epoch: int) -> dict[str, np.ndarray]:
    """A run's epoch checkpoint, 'group/position (variable)' -> array (model, optimizer, dropout
    RNG; by position, since Keras numbers the names of a process's second optimizer)."""
    with np.load(run / f"checkpoints/epoch-{epoch:04d}.npz", allow_pickle=False) as npz:
        names = json.loads(npz["__names__"].tobytes())
        return {
            f"{group}/{i} ({name.split('/')[-1]})": npz[f"{group}/{i:05d}"]
            for group, group_names in names.items()
            for i, name in enumerate(group_names)
        }


def _assert_same_run(resumed: Path, whole: Path, epochs: int) -> None:
    """The resumed run's last checkpoint and every epoch's metrics equal the uninterrupted run's."""
    mine, theirs = _checkpoint(resumed, epochs), _checkpoint(whole, epochs)
    assert mine.keys() == theirs.keys()
    assert any(k.startswith("rng/") for k in mine)  # dropout's generators are checkpointed
    for key, value in theirs.items():
        np.testing.assert_allclose(mine[key], value, **SAME_RUN, err_msg=key)
    histories = [json.loads((r / "state.json").read_text())["history"] for r in (resumed, whole)]
    assert [h["epoch"] for h in histories[0]] == list(range(1, epochs + 1))
    for a, b in zip(*histories, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], **SAME_RUN)


def _refused(ws: Path, run: str, args: list[str], message: str) -> None:
    """`train --resume run ARGS` stops with one error line holding `message`, exit 2, the run
    left as it was."""
    state = (ws / "runs" / run / "state.json").read_bytes()
    result = in_workspace(ws, "train", "--resume", run, *args)
    assert result.exit_code == 2, (result.stdout + result.stderr)[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert (ws / "runs" / run / "state.json").read_bytes() == state


def test_a_head_run_stopped_by_sigterm_resumes_to_the_uninterrupted_runs_weights(workspace):
    """SIGTERM an MLP head run (dropout: its random draws must continue too) once two epochs
    are saved: it stops like a normal run, with the NOTE that says how to go on; `--resume`
    then ends where a run never interrupted ends."""
    run = workspace / "runs/sigterm"
    train = ["train", "--head", "mlp", "--epochs"]
    proc = subprocess.Popen(
        [PY, "-m", "orpheus", "-w", str(workspace), *train, "100000", "--run-name", run.name],
        env={**ENV, "ORPHEUS_WORKSPACE": ""},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600  # a safety net only: saved epochs decide when to stop
        saved = 0
        while saved < 2:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no two epochs were saved within 600 s"
            time.sleep(0.05)
            try:
                saved = json.loads((run / "state.json").read_text())["epoch"]
            except (FileNotFoundError, ValueError):
                pass
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err[-3000:]
    stopped = json.loads((run / "state.json").read_text())
    done = stopped["epoch"]
    assert stopped["status"] == "interrupted" and done >= 2
    note = (run / "NOTE").read_text()
    assert f"{done} epoch(s) saved. Continue with `orpheus train --resume {run.name}`" in note

    resumed = in_workspace(workspace, "train", "--resume", run.name, "--epochs", str(done + 1))
    ok(resumed)
    assert f"resuming after epoch {done} of {done + 1}" in resumed.stderr
    assert not (run / "NOTE").exists()
    ok(in_workspace(workspace, "-q", *train, str(done + 1), "--run-name", "sigterm-whole"))
    _assert_same_run(run, workspace / "runs/sigterm-whole", done + 1)
    assert json.loads((run / "state.json").read_text())["history"][:done] == stopped["history"]

    for args, message in (
        (["--head", "linear"], f"run {run.name} was trained with --head mlp, not linear"),
        (["--head-level", "song"], "was trained with --head-level window, not song"),
        (["--embeddings", "mtt-musicnn"], "with --embeddings msd-musicnn, not mtt-musicnn"),
        (["--init", "msd-musicnn"], "is a head run (--head mlp --embeddings msd-musicnn)"),
        (["--steps-per-epoch", "2"], "--steps-per-epoch does not apply"),
        (["--frontend", "log-mel"], "--frontend does not apply to head and fine-tuning runs"),
    ):
        _refused(workspace, run.name, args, message)


def test_a_sigterm_while_an_epoch_is_saved_leaves_the_run_whole_at_the_epoch_before(
    workspace, monkeypatch
):
    """A signal can land between an epoch's checkpoint and the state that records it (a head
    epoch is short, so the end of one is a wide target). The run must then stand, whole, at the
    last epoch its state recorded: `--resume` redoes the torn epoch and ends as a run never
    interrupted. The SIGTERM is real, sent by this process to itself at that very point."""
    from orpheus.training import trainer

    save = trainer.save_checkpoint

    def save_then_sigterm(path: Path, variables) -> None:
        save(path, variables)
        if path.name == "epoch-0002.npz":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_sigterm)
    train = ["train", "--head", "mlp", "--epochs", "3"]
    stopped = in_workspace(workspace, *train, "--run-name", "torn")
    monkeypatch.undo()
    assert stopped.exit_code == 130 and "interrupted" in stopped.stderr, stopped.stderr[-3000:]
    run = workspace / "runs/torn"
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted" and state["epoch"] == 1
    assert state["checkpoint"] == "checkpoints/epoch-0001.npz"
    assert [h["epoch"] for h in state["history"]] == [1]
    assert "1 epoch(s) saved" in (run / "NOTE").read_text()

    ok(in_workspace(workspace, "train", "--resume", "torn", "--epochs", "3"))
    ok(in_workspace(workspace, "-q", *train, "--run-name", "torn-whole"))
    _assert_same_run(run, workspace / "runs/torn-whole", 3)


@pytest.mark.parametrize("after", ["export_model", "merge_metrics"])
def test_a_head_run_interrupted_as_it_finishes_never_looks_done_with_a_bare_head(
    workspace, monkeypatch, after
):
    """A head run's model.keras is musicnn and the head as one model, which tags audio. A
    SIGTERM as the run finishes (after model.keras is saved, or after its metrics) must leave
    the run's NOTE, and any model.keras the whole model; `--resume` then finishes the run."""
    from orpheus.training import trainer

    module = trainer if after == "export_model" else runs
    real = getattr(module, after)

    def then_sigterm(*args) -> None:
        real(*args)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(module, after, then_sigterm)
    name = f"cut-{after}"
    train = ["train", "--head", "linear", "--epochs", "2", "--run-name", name]
    stopped = in_workspace(workspace, *train)
    monkeypatch.undo()
    assert stopped.exit_code == 130, stopped.stderr[-3000:]
    run = workspace / "runs" / name
    assert (run / "NOTE").is_file()
    assert _takes_log_mel(run)

    ok(in_workspace(workspace, "train", "--resume", name))
    assert not (run / "NOTE").exists()
    assert json.loads((run / "state.json").read_text())["status"] == "completed"
    assert _takes_log_mel(run)
    assert Workspace.open(workspace).state(f"run/{name}") == "ok"


def _takes_log_mel(run: Path) -> bool:
    """Whether the run's model.keras takes log-mel windows (time, 96 mels), as musicnn and a
    head do together; a bare head takes one embedding."""
    model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    return len(model.input_shape) == 3 and model.input_shape[-1] == 96


def test_a_finetuning_run_resumed_after_epoch_1_ends_as_an_uninterrupted_run(workspace):
    common = ["--init", "mtt-musicnn", "--steps-per-epoch", "2"]
    ok(in_workspace(workspace, "-q", "train", *common, "--epochs", "1", "--run-name", "ft-half"))
    resumed = in_workspace(workspace, "train", "--resume", "ft-half", "--epochs", "2")
    ok(resumed)
    assert "resuming after epoch 1 of 2 from checkpoints/epoch-0001.npz" in resumed.stderr
    ok(in_workspace(workspace, "-q", "train", *common, "--epochs", "2", "--run-name", "ft-whole"))
    run = workspace / "runs/ft-half"
    _assert_same_run(run, workspace / "runs/ft-whole", 2)

    # a finished run says so, as a normal run does, and keeps its weights
    before = _checkpoint(run, 2)
    again = in_workspace(workspace, "train", "--resume", "ft-half", "--epochs", "2")
    ok(again)
    assert "all 2 epochs are done already" in again.stderr
    after = _checkpoint(run, 2)
    assert all(np.array_equal(after[k], v) for k, v in before.items())

    for args, message in (
        (["--freeze", "none"], "run ft-half was trained with --freeze frontend, not none"),
        (["--init", "msd-musicnn"], "was trained with --init mtt-musicnn, not msd-musicnn"),
        (["--steps-per-epoch", "3"], "was trained with --steps-per-epoch 2, not 3"),
        (
            ["--head", "linear"],
            "is a fine-tuning run (--init mtt-musicnn --freeze frontend): --head does not",
        ),
        (["--schedule", "cyclic"], "--schedule does not apply to head and fine-tuning runs"),
        (["--run-name", "other"], "--resume continues a run under its own name"),
    ):
        _refused(workspace, "ft-half", args, message)
    with pytest.raises(OrpheusError, match="is a fine-tune run"):  # the scratch lifecycle
        lifecycle.prepare(Workspace.open(workspace), lifecycle.TrainRequest(resume="ft-half"))


def test_flags_that_do_not_fit_the_method_are_one_line_errors(workspace):
    before = sorted((workspace / "runs").glob("*"))
    for args, message in (
        (["--freeze", "none"], "--freeze goes with --init"),
        (["--head", "mlp", "--freeze", "none"], "--freeze goes with --init"),
        (["--head-level", "song", "--steps-per-epoch", "2"], "--steps-per-epoch goes with --init"),
        (["--init", "msd-musicnn", "--head-level", "song"], "--init fine-tunes, --head"),
        (["--head", "linear", "--schedule", "one-cycle"], "--schedule does not apply"),
        (["--init", "msd-musicnn", "--precision", "mixed"], "--precision does not apply"),
    ):
        result = in_workspace(workspace, "train", *args, "--run-name", "never")
        assert result.exit_code == 2, (result.stdout + result.stderr)[-3000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], result.stderr
    assert sorted((workspace / "runs").glob("*")) == before

    # a run trained from scratch (only its config matters here) takes no head flags
    ws = Workspace.open(workspace)
    labels = finetune.workspace_labels(ws)[0]
    cfg = {**ws.config, "frontend": "log-mel", "train": {"epochs": 1, "schedule": "constant"}}
    runs.create_run(runs.runs_dir(ws), "scratch", config=cfg, labels=labels)
    (workspace / "runs/scratch/state.json").write_text("{}")
    _refused(workspace, "scratch", ["--head", "linear"], "run scratch was trained from scratch")


@pytest.fixture(scope="module")
def head_run(workspace) -> str:
    """A linear head on msd-musicnn's embeddings, trained briefly."""
    ok(
        in_workspace(
            workspace, "-q", "train", "--head", "linear", "--epochs", "2", "--run-name", "lin"
        )
    )
    return "lin"


def test_record_tags_with_a_head_run_as_predict_does(workspace, head_run, filecap, tmp_path):  # noqa: F811
    take = tmp_path / "take.wav"
    opts = ["--model", head_run, "-f", "json", "-t", "0"]
    rec = orpheus_process(
        "-w", workspace, "record", "--device", "filecap", "--samplerate", SR,
        "--seconds", SECONDS, "--save", take, *opts, env=filecap["env"], cwd=tmp_path,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    pred = orpheus_process(
        "-w", workspace, "predict", take, *opts, env=filecap["env"], cwd=tmp_path
    )
    assert pred.returncode == 0, pred.stderr
    (from_record,), (from_predict,) = json.loads(rec.stdout), json.loads(pred.stdout)
    labels = json.loads((workspace / "runs" / head_run / "labels.json").read_text())
    assert from_record["model"] == from_predict["model"] == f"run/{head_run}"
    assert list(from_record["probabilities"]) == labels
    assert from_record["probabilities"] == from_predict["probabilities"]


def test_predict_writes_a_head_runs_tags_into_the_file(workspace, head_run, tmp_path):
    _, song = _test_track(workspace)
    copy = Path(shutil.copy2(song, tmp_path / song.name))
    result = in_workspace(
        workspace, "predict", copy, "--model", head_run, "--write-tags", "--top-k", "3", "-t", "0",
        "-f", "json",
    )  # fmt: skip
    ok(result)
    (record,) = json.loads(result.stdout)
    top = [t["tag"] for t in record["tags"]]
    assert len(top) == 3
    tags = mutagen.File(copy).tags  # the example corpus's MP3s: ID3
    own = json.loads(tags.getall(f"TXXX:ORPHEUS_TAGS:run_{head_run}")[0].text[0])
    assert set(own["tags"]) == set(top)
    # a run's labels without a category are genres (tagwrite.kinds_for)
    assert [g for frame in tags.getall("TCON") for g in frame.text] == top
    assert song.read_bytes() != copy.read_bytes()


def test_a_head_runs_embeddings_feed_its_output_layer_and_a_second_head(
    workspace, head_run, tmp_path
):
    """`predict --embeddings` writes the vectors the head's output layer reads, and a head run
    is a source for another head (`train --embeddings RUN`): a linear head's embeddings are
    musicnn's own penultimate vectors."""
    _, song = _test_track(workspace)
    out = tmp_path / "e.npz"
    result = in_workspace(
        workspace, "predict", song, "--model", head_run, "--embeddings", out, "--taggram",
        "-t", "0", "-f", "json",
    )  # fmt: skip
    ok(result)
    (record,) = json.loads(result.stdout)
    model = keras.models.load_model(
        workspace / "runs" / head_run / "model.keras", safe_mode=True, compile=False
    )
    kernel, bias = model.get_layer("output").get_weights()
    with np.load(out) as written:
        vectors = written["windows"]
    assert vectors.shape == (len(record["taggram"]["start"]), 200)
    np.testing.assert_allclose(
        record["taggram"]["probabilities"], 1 / (1 + np.exp(-(vectors @ kernel + bias))), atol=2e-6
    )

    ok(in_workspace(
        workspace, "-q", "train", "--head", "linear", "--embeddings", head_run, "--epochs", "1",
        "--run-name", "on-lin",
    ))  # fmt: skip
    mine = embeddings.load(workspace / f"embeddings/run-{head_run}.npz")
    musicnn = embeddings.load(workspace / "embeddings/msd-musicnn.npz")
    assert list(mine.tids) == list(musicnn.tids) and np.array_equal(mine.track, musicnn.track)
    np.testing.assert_allclose(mine.vectors, musicnn.vectors, rtol=0, atol=1e-5)
    entry = Workspace.open(workspace).entry("run/on-lin")
    assert entry["inputs"]["embeddings"]["artifact"] == f"embeddings/run-{head_run}"


def _musicnn_recipe() -> features.Recipe:
    from orpheus.tagger import Tagger

    return Tagger.pretrained("msd-musicnn").recipe


def test_the_cache_is_stale_when_the_records_change(workspace, tmp_path):
    ws = Workspace.open(shutil.copytree(workspace, tmp_path / "ws"))
    if ws.entry("embeddings/msd-musicnn") is None:
        embeddings.cached(ws, embeddings.open_source(ws, "msd-musicnn"))
    assert ws.state("embeddings/msd-musicnn") == "ok"
    index = ws.path("tfrecords/log-mel/index.json")
    index.write_text(index.read_text().replace('"tracks"', '"tracks" ', 1))
    ws.register("tfrecords/log-mel", ws.path("tfrecords/log-mel"))
    assert ws.state("embeddings/msd-musicnn") == STALE


def test_a_damaged_shard_stops_the_embedding_cache_with_its_name(workspace, tmp_path):
    ws = Workspace.open(shutil.copytree(workspace, tmp_path / "ws"))
    out = ws.path("tfrecords/log-mel")
    shard = out / records.read_index(out)["shards"][-1]["file"]
    shard.write_bytes(shard.read_bytes()[:-100])  # a torn end, as a full disk leaves it
    ws.register("tfrecords/log-mel", out)  # so that no earlier cache is reused
    with pytest.raises(records.DamagedShard, match="truncated record") as raised:
        embeddings.cached(ws, embeddings.open_source(ws, "msd-musicnn"))
    assert raised.value.message.startswith(f"{shard}: damaged TFRecord shard")
    assert (
        not ws.path("embeddings/msd-musicnn.npz").exists()
        or ws.state("embeddings/msd-musicnn") == STALE
    )  # no cache of part of the records


def test_cached_embeddings_equal_the_original_graph_on_the_reference_patches(workspace, tmp_path):
    """The reference patches become one track's log-mel in real TFRecords (they are multiples of
    1/32 below 8, exact in float16); the cache's vectors for it, as a head reads them, equal the
    original TF1 musicnn's penultimate output on those patches."""
    ref = np.load(REFERENCE)
    patches = ref["patch_codes"].astype(np.float32) / ref["quant"]
    track = np.concatenate(list(patches))  # 3 x 187 frames: even windows fall on the patches
    ws = Workspace.open(
        shutil.copytree(
            workspace, tmp_path / "ws", ignore=shutil.ignore_patterns("embeddings", "runs")
        )
    )
    out = ws.path("tfrecords/log-mel")
    index = json.loads((out / "index.json").read_text())
    shard = next(s for s in index["shards"] if s["split"] == "train")
    tags = [index["vocabulary"].index(label) for label in finetune.workspace_labels(ws)[0][:2]]
    with tf.io.TFRecordWriter(str(out / shard["file"])) as writer:
        writer.write(records.encode_example("TRREFERENCE", track, tags, len(index["vocabulary"])))
    shard.update(tids=["TRREFERENCE"], count=1)
    (out / "index.json").write_text(json.dumps(index))
    ws.register("tfrecords/log-mel", out)
    for name in pretrained.NAMES:
        emb, reused = embeddings.cached(ws, embeddings.open_source(ws, name))
        assert not reused
        _, groups, _ = finetune.workspace_labels(ws)
        data = heads.head_data(emb, groups, "train", "window")
        assert data.x.shape == (3, 200)
        np.testing.assert_allclose(data.x, ref[f"{name}/penultimate"], rtol=0, atol=CROSS_CPU)


def test_records_without_musicnn_features_are_refused_with_the_command_that_builds_them(tmp_path):
    recipe = _musicnn_recipe()
    for feature in (
        {"format": "waveform", "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 96},
        {"format": "log-mel", "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 64},
        {"format": "log-mel", "sample_rate": 22050, "n_fft": 512, "hop_length": 256, "n_mels": 96},
    ):
        with pytest.raises(Exception) as err:
            embeddings.check({"feature": feature}, recipe, tmp_path, "msd-musicnn")
        assert "msd-musicnn needs log-mel records at 16000 Hz with 96 mels" in str(err.value)
        assert "orpheus tfrecords build --format log-mel --sr 16000 --mels 96" in err.value.hint
    embeddings.check({"feature": {**feature, "sample_rate": 16000}}, recipe, tmp_path, "m")


def test_the_pipeline_gives_a_recipes_windows_unnormalised(workspace):
    """Fine-tuning and `test` feed musicnn the records' log-mel as it is, in 187-frame windows:
    the centred validation windows and the song-level test windows equal the stored frames."""
    from orpheus import dataset

    recipe = _musicnn_recipe()
    out, cfg = workspace / "tfrecords/log-mel", Workspace.open(workspace).config
    stored = {ex["tid"]: ex["audio"] for split in ("valid", "test") for ex in _decoded(out, split)}
    dsets, labels = dataset.datasets(out, cfg, ("valid",), recipe=recipe)
    x, _ = next(iter(dsets["valid"]))
    assert x.shape[1:] == (187, 96)
    centred = [a[(len(a) - 187) // 2 :][:187] for a in stored.values()]
    assert any(np.array_equal(x[0].numpy(), c) for c in centred)
    tid, windows, _ = next(iter(dataset.track_windows(out, cfg, "test", labels, recipe=recipe)))
    np.testing.assert_array_equal(windows.numpy(), recipe.windows(stored[tid.numpy().decode()])[0])


def _decoded(out: Path, split: str) -> list[dict]:
    index = records.read_index(out)
    return [
        records.decode_example(raw)
        for s in index["shards"]
        if s["split"] == split
        for raw in records.read_records(out / s["file"])
    ]
