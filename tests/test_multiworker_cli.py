"""Multi-worker training through the CLI: two local processes on 127.0.0.1 train one run.

Set up by `TF_CONFIG` (the `--worker-hosts`/`--worker-index` form is run end to end by
tests/test_cli_paths.py), written by the chief only; and when one worker is killed, the other
stops within a minute with a one-line error, then both finish the run with `--resume`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from process_helpers import PY, ROOT, free_ports
from test_cli_paths import EPOCHS, STEPS, assert_trained, workspace  # noqa: F401 (a fixture)

from orpheus.workspace import Workspace

SAFETY = 900  # s: a net for a hung worker only; both normally end in ~1-2 min on 2 busy cores
PEER_LOSS_LIMIT = 60  # s: the bound for the survivor to stop once its peer is gone


def start(ws: Path, log: Path, *args: str, tf_config: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ORPHEUS_WORKSPACE": ""}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    with log.open("w") as sink:
        return subprocess.Popen(
            [PY, "-m", "orpheus", "-w", str(ws), "train", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def wait_all(procs: list[subprocess.Popen]) -> None:
    """Until every process exits, or one fails (its peer would then wait for it)."""
    deadline = time.monotonic() + SAFETY
    try:
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()


def hosts() -> list[str]:
    return [f"127.0.0.1:{p}" for p in free_ports(2)]


@pytest.mark.slow
def test_tf_config_trains_one_run_written_by_the_chief_only(workspace, tmp_path):  # noqa: F811
    # two machines: each worker has its own copy of the workspace (TFRecords included)
    machines = [
        Path(shutil.copytree(workspace, tmp_path / f"m{i}", ignore=shutil.ignore_patterns("runs")))
        for i in range(2)
    ]
    cluster = {"worker": hosts()}
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = [
        start(ws, log, "--run-name", "tfc", tf_config={"cluster": cluster, "task": {
            "type": "worker", "index": i}})
        for i, (ws, log) in enumerate(zip(machines, logs, strict=True))
    ]  # fmt: skip
    wait_all(procs)
    for i, (p, log) in enumerate(zip(procs, logs, strict=True)):
        out = log.read_text()
        assert p.returncode == 0, (i, out[-3000:])
        assert f"MultiWorkerMirroredStrategy: worker {i} of 2" in out, out[-3000:]
    chief, other = machines
    assert_trained(chief, "tfc", "log-mel", "custom")
    assert not (other / "runs").exists()  # the worker computed every step and wrote nothing
    assert Workspace.open(other).entry("run/tfc") is None


@pytest.mark.slow
def test_a_killed_worker_stops_its_peer_in_one_line_then_both_resume(workspace, tmp_path):  # noqa: F811
    # one workspace both workers mount (a shared disk): --resume reads the chief's run folder
    ws = Path(shutil.copytree(workspace, tmp_path / "ws", ignore=shutil.ignore_patterns("runs")))
    epochs = EPOCHS + 1
    args = ["--run-name", "mw", "--epochs", str(epochs)]
    cluster = hosts()
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = [
        start(ws, logs[i], "--worker-hosts", *cluster, "--worker-index", str(i), *args)
        for i in range(2)
    ]
    state_file = ws / "runs/mw/state.json"
    chief, worker = procs
    try:  # persisted progress, not a timer: the chief has saved epoch 1
        deadline = time.monotonic() + SAFETY
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            if state_file.is_file() and json.loads(state_file.read_text() or "{}").get("epoch"):
                break
            time.sleep(0.2)
        assert all(p.poll() is None for p in procs), [log.read_text()[-2000:] for log in logs]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed = time.monotonic()
        chief.wait(timeout=SAFETY)
        took = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
    out = logs[0].read_text()
    assert took < PEER_LOSS_LIMIT, (took, out[-3000:])
    assert chief.returncode == 2, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    # which peer, when TensorFlow's error names it ("remote target .../task:1")
    assert len(errors) == 1 and errors[0] in {
        f"error: {who} of the run is gone: a multi-worker run cannot go on without it"
        for who in ("worker 1", "a peer worker")
    }, out[-3000:]
    assert "Traceback" not in out and "hint: restart every worker with --resume mw" in out
    state = json.loads(state_file.read_text())
    assert state["status"] == "failed" and 1 <= state["epoch"] < epochs, state
    assert (ws / "runs/mw/NOTE").is_file()

    cluster = hosts()
    procs = [
        start(ws, logs[i], "--worker-hosts", *cluster, "--worker-index", str(i), "--resume", "mw")
        for i in range(2)
    ]
    wait_all(procs)
    for i, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, (i, log.read_text()[-3000:])
    assert f"resuming after epoch {state['epoch']} of {epochs}" in logs[1].read_text()
    state = json.loads(state_file.read_text())
    assert state["status"] == "completed" and state["epoch"] == epochs, state
    assert state["step"] == epochs * STEPS, state
    assert [h["epoch"] for h in state["history"]] == list(range(1, epochs + 1))
    assert (ws / "runs/mw/model.keras").is_file() and not (ws / "runs/mw/NOTE").exists()
