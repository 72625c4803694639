"""`orpheus record` for real: PortAudio captures from an ALSA file-backed device (DESIGN.md),
and the tags of the recording equal `predict`'s on the same audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tagger_helpers import SR, music

from orpheus.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
SECONDS = 3.5


@pytest.fixture
def filecap(tmp_path: Path) -> dict:
    """An ALSA config with a capture device `filecap` that plays a raw S16_LE file."""
    samples = (music(SECONDS + 1.0, seed=5) * 32767).astype("<i2")  # longer than we record
    raw = tmp_path / "mic.raw"
    samples.tofile(raw)
    conf = tmp_path / "asound.conf"
    conf.write_text(
        "pcm.probe_null { type null }\n"
        f'pcm.filecap {{ type file slave.pcm "probe_null" file "/dev/null" infile "{raw}" '
        'format "raw" }\n'
    )
    return {"samples": samples, "env": _env(f"/usr/share/alsa/alsa.conf:{conf}")}


def _env(alsa_config: str) -> dict:
    env = dict(os.environ, ALSA_CONFIG_PATH=alsa_config, ORPHEUS_WORKSPACE="")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def orpheus(*args, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "orpheus", *map(str, args)]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_record_tags_equal_predict_tags(filecap, tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    opts = ["-f", "json", "-t", "0.05", "--top-k", "5"]
    rec = orpheus(
        "-w", ws.root, "record", "--device", "filecap", "--samplerate", SR,
        "--seconds", SECONDS, *opts, env=filecap["env"], cwd=tmp_path,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    (saved,) = (ws.root / "recordings").glob("recording-*.wav")
    audio, rate = sf.read(saved, dtype="int16")
    assert rate == SR
    np.testing.assert_array_equal(audio, filecap["samples"][: int(SECONDS * SR)])  # bit exact

    pred = orpheus("predict", saved, *opts, env=filecap["env"], cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    (from_record,), (from_predict,) = json.loads(rec.stdout), json.loads(pred.stdout)
    assert from_record["tags"] == from_predict["tags"] != []
    assert from_record["probabilities"] == from_predict["probabilities"]


def test_record_without_workspace_saves_where_asked(filecap, tmp_path):
    target = tmp_path / "take.flac"
    rec = orpheus(
        "record", "-d", "1", "--samplerate", SR, "--seconds", 1, "--save", target, "-f", "csv",
        env=filecap["env"], cwd=tmp_path,
    )  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    assert sf.read(target, dtype="int16")[0].tolist() == filecap["samples"][:SR].tolist()
    assert rec.stdout.startswith("path,model,size,mtime_ns,note,tags,rock,")


def test_devices_and_device_errors(filecap, tmp_path):
    listed = orpheus("record", "--list-devices", env=filecap["env"], cwd=tmp_path)
    assert listed.returncode == 0 and "filecap" in listed.stdout
    wrong = orpheus("record", "--device", "nosuchmic", env=filecap["env"], cwd=tmp_path)
    assert wrong.returncode == 2
    assert "nosuchmic" in wrong.stderr and "filecap" in wrong.stderr and "--device" in wrong.stderr
    none = orpheus("record", "--seconds", 1, env=_env("/usr/share/alsa/alsa.conf"), cwd=tmp_path)
    assert none.returncode == 2
    assert "no audio input device" in none.stderr and "no input devices found" in none.stderr
    for result in (wrong, none):
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "recordings").exists()


def test_int16_to_float_matches_the_saved_file(tmp_path):
    from orpheus import recording

    samples = (music(0.5) * 32767).astype(np.int16)
    path = recording.save(tmp_path / "x.wav", samples, SR)
    np.testing.assert_array_equal(recording.to_float(samples), sf.read(path, dtype="float32")[0])
