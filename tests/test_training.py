"""Training: schedules, callbacks' state, one loss for both loops, mixed precision and XLA,
SIGKILL + resume, and `orpheus train` / `orpheus test` end to end. (Distribution strategies are
in test_training_strategies.py.)"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from process_helpers import ENV, PY, ROOT
from records_helpers import VOCABULARY, make_corpus, make_workspace

from orpheus import records, training
from orpheus.models import build_model
from orpheus.training import Schedule, Tracker, TrainOptions

ENV.pop("TF_CONFIG", None)

# -- schedules and callback state -------------------------------------------------------------


def test_constant_and_cyclic_schedules():
    assert Schedule("constant", 0.01).lr(12345) == 0.01
    cyc = Schedule("cyclic", 0.0014, steps_per_epoch=10)  # half-cycle = 2 epochs = 20 steps
    assert cyc.lr(0) == pytest.approx(0.00035)  # max / 4
    assert cyc.lr(10) == pytest.approx((0.00035 + 0.0014) / 2)
    assert cyc.lr(20) == pytest.approx(0.0014)
    assert cyc.lr(30) == pytest.approx(cyc.lr(10))
    assert cyc.lr(40) == pytest.approx(0.00035) and cyc.lr(60) == pytest.approx(0.0014)
    assert cyc.momentum(5) is None


def test_one_cycle_warms_up_then_anneals_with_mirrored_momentum():
    one = Schedule("one-cycle", 0.01, steps_per_epoch=10, epochs=10)  # 100 steps, 40 warm-up
    assert one.lr(0) == pytest.approx(0.01 / 25) and one.momentum(0) == pytest.approx(0.95)
    assert one.lr(20) == pytest.approx(0.01 / 25 + (0.01 - 0.01 / 25) / 2)
    assert one.lr(40) == pytest.approx(0.01) and one.momentum(40) == pytest.approx(0.85)
    assert one.lr(70) == pytest.approx(0.005)  # half-way down the cosine
    assert one.lr(100) == pytest.approx(0.0) and one.momentum(100) == pytest.approx(0.95)
    lrs = [one.lr(s) for s in range(101)]
    assert max(lrs) == lrs[40]


def test_tracker_early_stopping_and_plateau_counters_survive_a_round_trip():
    opts = TrainOptions(
        early_stop_patience=2,
        early_stop_min_delta=0.01,
        reduce_lr_patience=1,
        reduce_lr_min_delta=0.01,
        reduce_lr_factor=0.2,
    )
    t = Tracker()
    assert t.update(0.50, 1, opts) == (True, False, False)
    assert t.update(0.505, 2, opts) == (True, False, True)  # best, but under min_delta
    assert t.best == 0.505 and t.early_stop_wait == 1 and t.lr_scale == pytest.approx(0.2)
    again = Tracker(**json.loads(json.dumps(t.__dict__)))  # as state.json stores it
    assert again.update(0.40, 3, opts) == (False, True, True)
    assert again.best_epoch == 2 and again.lr_scale == pytest.approx(0.04)


def test_checkpoint_round_trip_and_corrupt_file(tmp_path):
    a = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = tf.Variable(3, dtype=tf.int64)
    training.save_checkpoint(tmp_path / "c.npz", {"model": [a], "optimizer": [b]})
    a.assign(tf.zeros((2, 3)))
    b.assign(0)
    training.load_checkpoint(tmp_path / "c.npz", {"model": [a], "optimizer": [b]})
    assert a.numpy()[1, 2] == 5 and int(b.numpy()) == 3
    with pytest.raises(training.TrainingError, match="does not fit"):
        training.load_checkpoint(tmp_path / "c.npz", {"model": [a, a], "optimizer": [b]})
    # a group the file predates (checkpoints before "rng") is left as it is only when optional
    rng = tf.Variable([7, 9], dtype=tf.int64)
    with pytest.raises(training.TrainingError, match="rng: 0 arrays stored, 1 expected"):
        training.load_checkpoint(tmp_path / "c.npz", {"model": [a], "rng": [rng]})
    training.load_checkpoint(tmp_path / "c.npz", {"model": [a], "rng": [rng]}, optional=("rng",))
    assert rng.numpy().tolist() == [7, 9]
    (tmp_path / "c.npz").write_bytes(b"garbage" * 10)
    with pytest.raises(training.TrainingError, match="corrupt"):
        training.load_checkpoint(tmp_path / "c.npz", {"model": [a], "optimizer": [b]})


# -- one loss for both loops -----------------------------------------------------------------

FRAMES, N_LABELS = 24, 4


def _synthetic(n: int = 32, batch: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FRAMES, 96)).astype(np.float32)
    y = (rng.random((n, N_LABELS)) < 0.4).astype(np.float32)
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True)


def _model():
    return build_model(
        "log-mel", N_LABELS, n_filters=2, n_dense_units=8, input_length=FRAMES, dropout=0.0
    )


def test_fit_and_custom_loop_report_the_same_loss_the_mean_bce_per_example():
    x, y, ds = _synthetic()
    frozen = {"name": "Adam", "learning_rate": 0.0}  # weights stay put: compare definitions
    losses = {}
    for custom in (False, True):
        opts = TrainOptions(epochs=1, custom=custom, optimizer=frozen)
        result = training.Trainer(_model, N_LABELS, None, opts).fit(ds)
        losses[custom] = result.history[0]["loss"]
    tf.keras.utils.set_random_seed(0)
    model = _model()  # the same initial weights (same seed)
    expected = np.mean(
        [
            tf.keras.losses.binary_crossentropy(y[i : i + 8], model(x[i : i + 8], training=True))
            for i in range(0, 32, 8)
        ]
    )
    assert losses[False] == pytest.approx(losses[True], rel=1e-5)
    assert losses[True] == pytest.approx(float(expected), rel=1e-5)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A workspace with log-mel TFRecords of 14 short tracks and a tiny, fast model config."""
    root = tmp_path_factory.mktemp("train")
    corpus = make_corpus(root / "corpus", n=14, untagged=0, broken=0)
    ws = make_workspace(root / "ws", corpus)
    cfg = ws.config
    cfg["model-training"].update(window_length=1, batch_size=2, epochs=2)
    cfg["model"].update(n_filters=2, n_dense_units=8)
    cfg["tags"]["top"] = len(VOCABULARY)
    ws.save_config(cfg)
    plan = records.plan(corpus.tracks, corpus.tags, VOCABULARY, corpus.popularity, shards=3)
    out = ws.path("tfrecords/log-mel")
    records.build(out, plan, workers=1)
    ws.register("tfrecords/log-mel", out, params={}, inputs={"clean-tags": "clean-tags"})
    return ws


def _orpheus(ws_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "orpheus", "-w", str(ws_root), *args],
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_then_test_end_to_end(built):
    done = _orpheus(built.root, "train", "--run-name", "e2e", "--schedule", "one-cycle")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no GPU found: training on the CPU" in done.stderr
    run = built.root / "runs/e2e"
    assert not (run / "NOTE").exists()
    for name in ("config.json", "labels.json", "state.json", "metrics.json", "model.keras"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["frontend"] == "log-mel"
    assert json.loads((run / "labels.json").read_text())[0] == "rock"  # by popularity
    assert list((run / "logs/train").iterdir()) and list((run / "logs/validation").iterdir())
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "completed" and state["epoch"] == 2
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    best = state["tracker"]["best_epoch"]  # model.keras's weights: kept past pruning
    assert (run / f"checkpoints/epoch-{best:04d}.npz").is_file()
    entry = json.loads((built.root / "manifest.json").read_text())["artifacts"]["run/e2e"]
    assert "tfrecords" in entry["inputs"]

    tested = _orpheus(built.root, "test", "--json", "--plot", str(run / "plots"))
    assert tested.returncode == 0, tested.stderr[-3000:]
    result = json.loads(tested.stdout)
    assert set(result) == {
        "roc_auc_macro",
        "pr_auc_macro",
        "roc_auc_micro",
        "pr_auc_micro",
        "silent_tracks",
        "per_tag",
    }
    assert set(result["per_tag"]) == set(VOCABULARY)
    assert (run / "plots/roc.png").is_file() and (run / "plots/pr.png").is_file()
    assert "test" in json.loads((run / "metrics.json").read_text())
    entry = json.loads((built.root / "manifest.json").read_text())["artifacts"]["run/e2e"]
    assert "test ROC-AUC (macro)" in entry["summary"]


def test_summary_and_find_lr(built):
    shown = _orpheus(built.root, "train", "--summary")
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "conv1_back" in shown.stdout and "trainable parameters" in shown.stdout
    found = _orpheus(built.root, "train", "--find-lr", "--run-name", "lr")
    assert found.returncode == 0, found.stderr[-3000:]
    assert "suggested learning rate" in found.stdout
    assert (built.root / "runs/lr/lr_find.png").is_file()
    assert "LR range test only" in (built.root / "runs/lr/NOTE").read_text()


# -- SIGKILL in the middle of an epoch, then --resume ------------------------------------------

KILL_EPOCHS, KILL_STEPS = 4, 16  # a half-cycle of the cyclic LR is 2 epochs = 32 steps

RESTORE_SPY = """
import sys

import numpy as np

from orpheus import training
from orpheus.cli import main

out = sys.argv.pop(1)
restore = training.Trainer._restore


def spy(self, state):  # the real restore, then a copy of what the trainer holds right after it
    restore(self, state)
    groups = self._variables()
    np.savez(out, **{f"{g}:{v.path}": v.numpy() for g, vs in groups.items() for v in vs})


training.Trainer._restore = spy
sys.argv[0] = "orpheus"
main()
"""


@contextlib.contextmanager
def _processes():
    """Start commands with `start(log, *argv)`; whatever still runs at the end is killed."""
    procs: list[subprocess.Popen] = []

    def start(log: Path, *argv: str) -> subprocess.Popen:
        with open(log, "w") as fh:  # the child keeps its own descriptor
            procs.append(
                subprocess.Popen(argv, env=ENV, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
            )
        return procs[-1]

    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


def _tb_scalars(run: Path, split: str, pid: int, tag: str) -> dict[int, float]:
    """step -> value of one scalar that process `pid` wrote to the run's TensorBoard logs.

    Reads the event file's TFRecord framing directly (length, CRC, data, CRC), so a file that
    the writer is appending to, or that a SIGKILL cut short, yields its complete records."""
    files = [
        p
        for p in (run / "logs" / split).glob("events.out.tfevents.*")
        if p.name.split(".")[-3] == str(pid)
    ]
    out: dict[int, float] = {}
    for path in files:
        data, pos = path.read_bytes(), 0
        while pos + 12 <= len(data):
            size = int.from_bytes(data[pos : pos + 8], "little")
            if pos + 16 + size > len(data):
                break
            event = tf.compat.v1.Event.FromString(data[pos + 12 : pos + 12 + size])
            pos += 16 + size
            for value in event.summary.value:
                if value.tag == tag:
                    out[event.step] = float(tf.make_ndarray(value.tensor))
    return out


def _read_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """'group:variable path' -> array, from the .npz with NumPy alone (its __names__ index)."""
    with np.load(path, allow_pickle=False) as npz:
        names = json.loads(npz["__names__"].tobytes())
        return {
            f"{group}:{name}": npz[f"{group}/{i:05d}"]
            for group, group_names in names.items()
            for i, name in enumerate(group_names)
        }


def _kill_mid_epoch(proc: subprocess.Popen, run: Path) -> None:
    """SIGKILL `proc` once two epochs are saved and a later epoch has logged some of its steps."""
    deadline = time.monotonic() + 400  # a safety net only: the markers decide when to kill
    while True:
        assert proc.poll() is None, "the run ended before it could be killed mid-epoch"
        assert time.monotonic() < deadline, "no epoch finished within 400 s"
        saved = 0
        with contextlib.suppress(FileNotFoundError, ValueError):
            saved = json.loads((run / "state.json").read_text())["epoch"]
        if saved >= 2:
            steps = _tb_scalars(run, "train", proc.pid, "batch_loss")
            if steps and max(steps) > saved * KILL_STEPS:
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_sigkill_mid_epoch_then_resume_restores_the_last_epoch_optimizer_and_schedule(
    built, tmp_path, loop
):
    """Kill `orpheus train` (Keras fit, or --custom) inside an epoch; --resume must continue from
    the last saved epoch with the optimizer's exact state, on the uninterrupted run's LR curve."""
    flags = ["--epochs", str(KILL_EPOCHS), "--steps-per-epoch", str(KILL_STEPS)]
    flags += ["--schedule", "cyclic", *(["--custom"] if loop == "custom" else [])]
    cli = [PY, "-m", "orpheus", "-w", str(built.root), "train"]
    run, whole = built.root / f"runs/killed-{loop}", built.root / f"runs/whole-{loop}"
    with _processes() as start:
        reference = start(tmp_path / "whole.log", *cli, "--run-name", whole.name, *flags)
        proc = start(tmp_path / "killed.log", *cli, "--run-name", run.name, *flags)
        _kill_mid_epoch(proc, run)
        killed = json.loads((run / "state.json").read_text())
        done = killed["epoch"]
        logged = _tb_scalars(run, "train", proc.pid, "batch_loss")
        # killed inside epoch done+1, after it had logged some of its steps
        assert done * KILL_STEPS < max(logged) < (done + 1) * KILL_STEPS, (done, max(logged))
        assert killed["status"] == "running" and (run / "NOTE").is_file()
        assert [h["epoch"] for h in killed["history"]] == list(range(1, done + 1))
        # the last completed epoch's checkpoint, read now (the resumed run prunes old ones)
        saved = _read_checkpoint(run / f"checkpoints/epoch-{done:04d}.npz")
        (iteration,) = [k for k in saved if k.startswith("optimizer:") and k.endswith("/iteration")]
        assert int(saved[iteration]) == done * KILL_STEPS
        moments = [k for k in saved if k.endswith(("_momentum", "_velocity"))]
        assert moments and any(np.any(saved[k] != 0) for k in moments)  # Adam has moved them

        spied = tmp_path / "restored.npz"
        resumed = start(
            tmp_path / "resumed.log",
            PY,
            "-c",
            textwrap.dedent(RESTORE_SPY),
            str(spied),
            "-w",
            str(built.root),
            "train",
            "--resume",
            run.name,
        )
        assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
        assert reference.wait(timeout=600) == 0, (tmp_path / "whole.log").read_text()[-3000:]
        # right after the restore, every model and optimizer variable (iterations, learning rate,
        # Adam's moments) holds exactly what the last completed epoch's checkpoint holds
        with np.load(spied) as npz:
            restored = dict(npz)
        assert restored.keys() == saved.keys()
        for key, value in saved.items():
            np.testing.assert_array_equal(restored[key], value, err_msg=key)
        log = (tmp_path / "resumed.log").read_text()
        assert (
            f"resuming after epoch {done} of {KILL_EPOCHS} from checkpoints/epoch-{done:04d}.npz"
            in log
        )

        # the resumed process starts at the next epoch and the next optimizer step, and at every
        # step its learning rate is the uninterrupted run's (the same float32 value)
        lrs = _tb_scalars(run, "train", resumed.pid, "batch_learning_rate")
        assert sorted(lrs) == list(range(done * KILL_STEPS + 1, KILL_EPOCHS * KILL_STEPS + 1))
        uninterrupted = _tb_scalars(whole, "train", reference.pid, "batch_learning_rate")
        assert sorted(uninterrupted) == list(range(1, KILL_EPOCHS * KILL_STEPS + 1))
        assert lrs == {step: uninterrupted[step] for step in lrs}
        assert len(set(lrs.values())) > len(lrs) // 2  # the cyclic LR changes step by step
        epochs = _tb_scalars(run, "train", resumed.pid, "epoch_loss")
        assert sorted(epochs) == list(range(done + 1, KILL_EPOCHS + 1))

        final = json.loads((run / "state.json").read_text())
        assert final["status"] == "completed" and not (run / "NOTE").exists()
        assert final["epoch"] == KILL_EPOCHS and final["step"] == KILL_EPOCHS * KILL_STEPS
        assert [h["epoch"] for h in final["history"]] == list(range(1, KILL_EPOCHS + 1))
        assert final["history"][:done] == killed["history"]  # the saved epochs are not run again
        assert final["loop"] == loop
        assert json.loads((whole / "state.json").read_text())["step"] == final["step"]


def _runs(ws_root: Path) -> set[str]:
    return {p.name for p in (ws_root / "runs").iterdir()} if (ws_root / "runs").exists() else set()


@pytest.mark.parametrize(
    ("args", "setup", "message"),
    [
        (["--frontend", "mfcc"], None, "unknown frontend 'mfcc'"),
        (["--frontend", "waveform"], None, "no tfrecords/waveform yet"),
        ([], {"tags": {"top": 60}}, "asks for the top 60 tags, but the TFRecords have only 6"),
        ([], {"model-training": {"schedule": "linear"}}, "unknown schedule 'linear'"),
        (["--gpus", "99"], None, "no GPU 99"),
        (["--resume", "nope"], None, "no run nope"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_no_run_folder(built, args, setup, message):
    before = _runs(built.root)
    if setup:  # config changes, made in a copy of the workspace
        import shutil

        cfg = json.loads((built.root / "config.json").read_text())
        for section, values in setup.items():
            cfg[section].update(values)
        ws_copy = built.root.parent / f"ws-{'-'.join(setup)}"
        shutil.rmtree(ws_copy, ignore_errors=True)
        shutil.copytree(built.root, ws_copy, ignore=shutil.ignore_patterns("runs"))
        (ws_copy / "config.json").write_text(json.dumps(cfg))
        done = _orpheus(ws_copy, "train", *args)
        assert not (ws_copy / "runs").exists()
    else:
        done = _orpheus(built.root, "train", *args)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert _runs(built.root) == before


def test_corrupt_checkpoint_on_resume_is_a_one_line_error(built):
    done = _orpheus(built.root, "train", "--run-name", "broken", "--epochs", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    run = built.root / "runs/broken"
    state = json.loads((run / "state.json").read_text())
    (run / state["checkpoint"]).write_bytes(b"\0" * 100)
    again = _orpheus(built.root, "train", "--resume", "broken", "--epochs", "2")
    assert again.returncode == 2, again.stderr[-3000:]
    errors = [line for line in again.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is corrupt" in errors[0], again.stderr[-3000:]


def test_a_damaged_train_shard_is_a_one_line_error_naming_it(built, tmp_path):
    import shutil

    ws = Path(shutil.copytree(built.root, tmp_path / "ws", ignore=shutil.ignore_patterns("runs")))
    out = ws / "tfrecords/log-mel"
    index = records.read_index(out)
    shard = out / next(s["file"] for s in index["shards"] if s["split"] == "train")
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in an Example: tf.data reads a bad checksum
    shard.write_bytes(bytes(data))
    done = _orpheus(ws, "train", "--run-name", "damaged", "--epochs", "1")
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{shard}: damaged TFRecord shard (corrupted record" in errors[0]
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    note = (ws / "runs/damaged/NOTE").read_text()
    assert note.count("\n") == 1 and f"failed: {shard}: damaged TFRecord shard" in note
    assert "`orpheus train --resume damaged`" in note
    # the hint's recovery: delete the shard, rebuild with the hinted command, resume the run
    rebuild = next(line for line in done.stderr.splitlines() if line.startswith("hint:"))
    command = rebuild.split("`")[1].split()
    assert command[:3] == ["orpheus", "tfrecords", "build"]
    shard.unlink()
    assert _orpheus(ws, *command[1:]).returncode == 0
    again = _orpheus(ws, "train", "--resume", "damaged", "--epochs", "1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (ws / "runs/damaged/model.keras").is_file() and not (ws / "runs/damaged/NOTE").exists()


@pytest.mark.parametrize("where", ["after its last epoch", "while saving its model"])
def test_a_run_that_stopped_early_then_was_interrupted_is_only_finished_on_resume(
    tmp_path, monkeypatch, where
):
    """Early stopping ends a run short of its epochs. A Ctrl-C after that (before model.keras,
    or while it is written) must leave a run whose `--resume` saves the model and trains no
    further epoch: resumed, the run equals one never interrupted. The SIGINT is real, sent by
    this process to itself at that point."""
    from orpheus.training import trainer as trainer_module

    x, y, ds = _synthetic()

    def options() -> TrainOptions:  # the PR-AUC never rises by 1: stop after epoch 2
        return TrainOptions(epochs=5, early_stop_patience=1, early_stop_min_delta=1.0)

    def then_sigint(real, when=lambda *args: True):
        def call(*args):
            real(*args)
            if when(*args):
                os.kill(os.getpid(), signal.SIGINT)

        return call

    if where == "after its last epoch":  # `_prune` ends an epoch, after its state is written
        cls = trainer_module.Trainer
        last = then_sigint(cls._prune, lambda trainer: trainer.status == "stopped-early")
        monkeypatch.setattr(cls, "_prune", last)
    else:
        export = then_sigint(trainer_module.export_model)
        monkeypatch.setattr(trainer_module, "export_model", export)
    run = training.create_run(tmp_path, "early", config={}, labels=list("abcd"))
    with pytest.raises(KeyboardInterrupt):
        training.Trainer(_model, N_LABELS, run, options()).fit(ds)
    monkeypatch.undo()
    state = training.read_state(run)
    assert state["status"] == "stopped-early" and state["epoch"] == 2
    assert (run / "NOTE").is_file()  # the run is not finished: it says how to go on

    resumed = training.Trainer(_model, N_LABELS, run, options()).fit(ds, resume_state=state)
    assert resumed.status == "stopped-early" and resumed.epochs_done == 2
    assert [h["epoch"] for h in training.read_state(run)["history"]] == [1, 2]
    assert (run / "model.keras").is_file() and not (run / "NOTE").exists()
    whole = training.create_run(tmp_path, "whole", config={}, labels=list("abcd"))
    training.Trainer(_model, N_LABELS, whole, options()).fit(ds)
    saved = [training.read_state(r)["history"] for r in (run, whole)]
    assert [h["epoch"] for h in saved[1]] == [1, 2]
    assert [h["loss"] for h in saved[0]] == pytest.approx([h["loss"] for h in saved[1]], rel=1e-5)


def test_an_interrupt_before_an_epochs_state_leaves_model_weights_its_state_vouches_for(
    tmp_path, monkeypatch
):
    """A Ctrl-C after epoch 2's checkpoints are written but before its state: the run stands at
    epoch 1, and the model it exports holds epoch 1's weights, the best its state knows of (a
    separate best-weights file written before the state used to hold epoch 2's)."""
    from orpheus.training import trainer as trainer_module

    x, y, ds = _synthetic()
    write = trainer_module.Trainer._write_state

    def sigint_then_write(trainer) -> None:
        if trainer.start_epoch == 2:  # epoch 2 ended: checkpoints saved, the state is next
            os.kill(os.getpid(), signal.SIGINT)
        write(trainer)

    monkeypatch.setattr(trainer_module.Trainer, "_write_state", sigint_then_write)
    run = training.create_run(tmp_path, "cut", config={}, labels=list("abcd"))
    opts = TrainOptions(epochs=3, optimizer={"name": "Adam", "learning_rate": 0.01})
    with pytest.raises(KeyboardInterrupt):
        training.Trainer(_model, N_LABELS, run, opts).fit(ds)
    monkeypatch.undo()
    state = training.read_state(run)
    assert state["epoch"] == 1 and state["tracker"]["best_epoch"] == 1

    training.export_model(_model, run, tmp_path / "model.keras")
    exported = tf.keras.models.load_model(tmp_path / "model.keras", compile=False)
    epoch_1 = _model()
    training.load_weights(run / "checkpoints/epoch-0001.npz", epoch_1)
    for mine, theirs in zip(exported.weights, epoch_1.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


# -- mixed precision and XLA ---------------------------------------------------------------------


@pytest.mark.slow
def test_mixed_precision_on_the_cpu_is_bfloat16_with_a_float32_output_and_scaled_loss(tmp_path):
    """Both loops train a bfloat16 model (float32 output layer) through a LossScaleOptimizer,
    whose variables are checkpointed with the optimizer's, and minimise the same loss."""
    x, y, ds = _synthetic()
    histories = {}
    for custom in (False, True):
        opts = TrainOptions(epochs=2, custom=custom, precision="mixed")
        run = training.create_run(tmp_path, f"mixed-{custom}", config={}, labels=list("abcd"))
        trainer = training.Trainer(_model, N_LABELS, run, opts)
        result = trainer.fit(ds)
        assert result.status == "completed"
        assert trainer.model.get_layer("conv1").compute_dtype == "bfloat16"
        assert trainer.model.get_layer("conv1").kernel.dtype == "float32"
        assert trainer.model.get_layer("output").compute_dtype == "float32"
        assert trainer.model(x[:2]).dtype == tf.float32
        # the scaler applied every step: 2 epochs x 4 batches, none skipped for overflow
        assert isinstance(trainer.updater, tf.keras.optimizers.LossScaleOptimizer)
        assert trainer.step == 8 and int(trainer.updater.step_counter.numpy()) == 8
        state = json.loads((run / "state.json").read_text())
        assert state["precision"] == "mixed" and state["dtype_policy"] == "mixed_bfloat16"
        saved = _read_checkpoint(run / state["checkpoint"])
        assert any(k.startswith("optimizer:") and k.endswith("/dynamic_scale") for k in saved)
        assert any(k.endswith("conv1_kernel_momentum") for k in saved)  # Adam's, as in float32
        histories[custom] = [h["loss"] for h in result.history]
    # the same bfloat16 arithmetic in both loops: equal to float32 rounding of the sums
    np.testing.assert_allclose(histories[False], histories[True], rtol=1e-4)
    assert tf.keras.config.dtype_policy().name == "float32"  # the process's policy is restored


def test_a_float32_run_is_not_resumed_in_mixed_precision(tmp_path):
    x, y, ds = _synthetic()
    run = training.create_run(tmp_path, "f32", config={}, labels=list("abcd"))
    training.Trainer(_model, N_LABELS, run, TrainOptions(epochs=1)).fit(ds)
    state = training.read_state(run)
    assert state["precision"] == "float32"
    mixed = training.Trainer(_model, N_LABELS, run, TrainOptions(epochs=2, precision="mixed"))
    with pytest.raises(training.TrainingError, match="trained in float32 precision") as err:
        mixed.fit(ds, resume_state=state)
    assert str(run / "state.json") in str(err.value)
    assert training.read_state(run) == state  # nothing was written


def _workspace_copy(built, dest: Path, **model) -> Path:
    """The `built` workspace without its runs, with a narrower model (XLA on a CPU is slow to
    compile a wide one)."""
    import shutil

    shutil.copytree(built.root, dest, ignore=shutil.ignore_patterns("runs"))
    cfg = json.loads((dest / "config.json").read_text())
    cfg["model"].update(model)
    (dest / "config.json").write_text(json.dumps(cfg))
    return dest


@pytest.mark.slow
def test_train_precision_mixed_end_to_end_is_recorded_and_resumed_only_in_mixed(built, tmp_path):
    ws = _workspace_copy(built, tmp_path / "ws", n_backend_filters=16)
    flags = ["--epochs", "1", "--steps-per-epoch", "2"]
    done = _orpheus(ws, "train", "--run-name", "mx", "--precision", "mixed", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mixed_bfloat16" in done.stderr
    run = ws / "runs/mx"
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "completed" and state["precision"] == "mixed"
    assert json.loads((run / "config.json").read_text())["train"]["precision"] == "mixed"
    assert any(k.endswith("/dynamic_scale") for k in _read_checkpoint(run / state["checkpoint"]))
    # the exported model computes in float32, whatever precision trained it
    import keras

    model = keras.saving.load_model(run / "model.keras", compile=False, safe_mode=True)
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}

    other = _orpheus(ws, "train", "--resume", "mx", "--epochs", "2", "--precision", "float32")
    assert other.returncode == 2, other.stderr[-3000:]
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "trained in mixed precision" in errors[0], other.stderr
    assert json.loads((run / "state.json").read_text())["epoch"] == 1

    again = _orpheus(ws, "train", "--resume", "mx", "--epochs", "2")  # the run's own precision
    assert again.returncode == 0, again.stderr[-3000:]
    final = json.loads((run / "state.json").read_text())
    assert final["epoch"] == 2 and final["precision"] == "mixed"
    assert "resuming after epoch 1 of 2" in again.stderr


@pytest.mark.slow
def test_train_jit_compiles_with_xla_end_to_end(built, tmp_path):
    ws = _workspace_copy(built, tmp_path / "ws", n_backend_filters=8)
    dump = tmp_path / "xla"
    done = subprocess.run(
        [PY, "-m", "orpheus", "-w", str(ws), "train", "--run-name", "jit", "--epochs", "1"]
        + ["--steps-per-epoch", "2", "--jit", "--cache"],
        env={**ENV, "XLA_FLAGS": f"--xla_dump_to={dump}"},  # XLA writes what it compiles here
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((ws / "runs/jit/state.json").read_text())
    assert state["status"] == "completed" and state["jit"] is True and state["step"] == 2
    assert (ws / "runs/jit/model.keras").is_file()
    # XLA compiled the training step: a module (as XLA received it) with the model's gradient
    modules = [p.read_text(errors="replace") for p in dump.glob("*before_optimizations.txt")]
    assert any("gradient_tape/" in text and "conv1_back" in text for text in modules)
