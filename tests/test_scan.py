"""Scan: headers of real MP3s, rejects with reasons, workers, and resumability."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orpheus import scan as scan_mod
from orpheus.errors import OrpheusError
from orpheus.msd import audio_relpath


def write_mp3(path: Path, seconds: float = 1.0, sr: int = 22050, channels: int = 2) -> Path:
    """A real MP3 (soundfile/libsndfile): a tone in every channel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    sf.write(path, np.repeat(y[:, None], channels, axis=1), sr, format="MP3")
    return path


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "7digital"
    write_mp3(root / audio_relpath(1234), seconds=1.0, channels=2)
    write_mp3(root / audio_relpath(5678), seconds=2.0, channels=1, sr=16000)
    (root / audio_relpath(42)).parent.mkdir(parents=True)
    (root / audio_relpath(42)).write_bytes(b"")
    (root / audio_relpath(43)).parent.mkdir(parents=True, exist_ok=True)
    (root / audio_relpath(43)).write_bytes(b"<html>not an mp3</html>" * 50)
    (root / "9" / "notes.txt").parent.mkdir(parents=True)
    (root / "9" / "notes.txt").write_text("ignored")
    return root


def test_scan_reads_headers_and_rejects_broken_files(tree):
    result = scan_mod.scan(tree, workers=1)
    table = result.table.set_index("track_7digitalid")
    assert sorted(table.index) == [1234, 5678]
    assert table.loc[1234, "file_path"] == "1/2/1234.clip.mp3"
    assert table.loc[1234, "channels"] == 2
    assert table.loc[5678, "channels"] == 1
    assert table.loc[5678, "sample_rate"] == 16000
    assert table.loc[5678, "clip_length"] == pytest.approx(2.0, abs=0.1)
    assert table.loc[1234, "file_size"] == (tree / "1/2/1234.clip.mp3").stat().st_size
    reasons = dict(zip(result.rejects["track_7digitalid"], result.rejects["reason"], strict=True))
    assert reasons == {42: "empty-file", 43: "not-audio"}
    assert result.rejects["detail"].notna().all()


def test_scan_verify_decodes(tree):
    result = scan_mod.scan(tree, workers=1, verify=True)
    assert sorted(result.table["track_7digitalid"]) == [1234, 5678]


def test_bad_name_is_rejected(tmp_path):
    root = tmp_path / "root"
    write_mp3(root / "x" / "abc.clip.mp3")
    result = scan_mod.scan(root, workers=1)
    assert result.table.empty
    assert result.rejects["reason"].tolist() == ["bad-name"]


def test_scan_in_parallel_matches_serial(tree, monkeypatch):
    monkeypatch.setattr(scan_mod, "CHUNK", 1)
    serial = scan_mod.scan(tree, workers=1)
    parallel = scan_mod.scan(tree, workers=2)
    assert parallel.table.equals(serial.table)
    assert parallel.rejects.equals(serial.rejects)


def test_rescan_rereads_only_changed_files(tree):
    first = scan_mod.scan(tree, workers=1)
    again = scan_mod.scan(tree, previous=(first.table, first.rejects), workers=1)
    assert (again.reused, again.read) == (4, 0)
    assert again.table.equals(first.table)
    assert again.rejects.equals(first.rejects)

    write_mp3(tree / audio_relpath(42), seconds=1.5)  # the empty file is now fixed
    os.remove(tree / audio_relpath(5678))
    third = scan_mod.scan(tree, previous=(again.table, again.rejects), workers=1)
    assert (third.reused, third.read) == (2, 1)
    assert sorted(third.table["track_7digitalid"]) == [42, 1234]
    assert third.rejects["track_7digitalid"].tolist() == [43]


def test_progress_reaches_total(tree):
    seen = []
    scan_mod.scan(tree, workers=1, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (4, 4)


def test_missing_root(tmp_path):
    with pytest.raises(OrpheusError, match="audio root not found"):
        scan_mod.scan(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OrpheusError, match="not a folder"):
        scan_mod.scan(tmp_path / "file")


# -- the command ------------------------------------------------------------------------------


def orpheus(*args: str):
    """Run the real CLI in-process; returns typer's Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from orpheus.cli import app

    return CliRunner().invoke(app, list(args))


def test_scan_command_registers_and_resumes(tree, tmp_path):
    import pandas as pd

    from orpheus.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    first = orpheus("-w", str(ws.root), "scan", str(tree), "--workers", "1")
    assert first.exit_code == 0, first.output
    assert "empty-file" in first.stdout and "kept" in first.stdout
    entry = Workspace.open(ws.root).entry("scan")
    assert entry["params"]["audio_root"] == str(tree.resolve())
    assert entry["summary"] == {"rows": 2, "rejects": 2}
    rejects = pd.read_parquet(ws.path("data/scan_rejects.parquet"))
    assert sorted(rejects["reason"]) == ["empty-file", "not-audio"]

    ws.save_config(ws.config | {"paths": ws.config["paths"] | {"audio_root": str(tree)}})
    again = orpheus("-w", str(ws.root), "scan")  # root from config.json
    assert again.exit_code == 0
    assert "re-used 4" in again.stderr


def test_scan_command_bad_root(tmp_path):
    from orpheus.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    missing = orpheus("-w", str(ws.root), "scan", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert "audio root not found" in missing.stderr
    assert "Traceback" not in missing.output
    none = orpheus("-w", str(ws.root), "scan")
    assert none.exit_code == 2 and "no audio root given" in none.stderr
