"""`orpheus predict`: inputs, formats, outputs, the default model, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tagger_helpers import make_run, music, write
from typer.testing import CliRunner

from orpheus.cli import app
from orpheus.commands._common import console
from orpheus.results import read_tags
from orpheus.workspace import Workspace

runner = CliRunner()
NO_WS = {"ORPHEUS_WORKSPACE": ""}


def orpheus(*args, cwd: Path):
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return runner.invoke(app, [str(a) for a in args], env=NO_WS)
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("songs")
    (root / "sub").mkdir()
    write(root / "a.wav", music(6.0, seed=1))
    write(root / "sub" / "b.mp3", music(4.0, seed=2))
    write(root / "sub" / "c.flac", music(3.5, seed=3))
    (root / "notes.txt").write_text("not audio")
    return root


def test_json_is_the_documented_shape(songs, tmp_path):
    result = orpheus(
        "predict", songs / "a.wav", songs / "sub", "-f", "json", "-t", "0.05", cwd=tmp_path
    )
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [Path(r["path"]).name for r in records] == ["a.wav", "b.mp3", "c.flac"]
    for rec in records:
        assert set(rec) == {"path", "model", "size", "mtime_ns", "tags", "probabilities"}
        assert rec["model"] == "msd-musicnn" and len(rec["probabilities"]) == 50
        stat = os.stat(rec["path"])
        assert (rec["size"], rec["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)
        probs = [t["probability"] for t in rec["tags"]]
        assert probs == sorted(probs, reverse=True) and min(probs, default=1) >= 0.05
        expected = {k for k, p in rec["probabilities"].items() if p >= 0.05}
        assert {t["tag"] for t in rec["tags"]} == expected


def test_threshold_top_k_taggram_and_output_file(songs, tmp_path):
    out = tmp_path / "out.json"
    args = ["predict", songs / "a.wav", "-f", "json", "-t", "0", "--top-k", "2", "--taggram"]
    result = orpheus(*args, "--hop", "1", "-o", out, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    (rec,) = json.loads(out.read_text())
    assert len(rec["tags"]) == 2
    gram = rec["taggram"]
    # 6 s = 376 frames, 187-frame windows about 62 frames (1 s) apart over a span of 189 frames:
    # 189 / 62 leaves 3 frames (under 5% of a hop), so 3 gaps of 63 frames: 4 windows
    assert len(gram["start"]) == len(gram["probabilities"]) == 4
    assert np.diff(gram["start"]).tolist() == [63 * 256 / 16000] * 3
    assert all(len(row) == 50 for row in gram["probabilities"])
    mean = np.mean(gram["probabilities"], axis=0)
    np.testing.assert_allclose(mean, list(rec["probabilities"].values()), atol=2e-6)


def test_csv_table_and_mtt_model(songs, tmp_path, monkeypatch):
    result = orpheus("predict", songs, "-f", "csv", "--model", "mtt-musicnn", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    head = lines[0].split(",")
    assert head[:6] == ["path", "model", "size", "mtime_ns", "note", "tags"]
    assert head[6] == "guitar" and len(head) == 56
    assert len(lines) == 4 and all(",mtt-musicnn," in line for line in lines[1:])
    # the table's columns are cut to the console's width: fix it so that long paths stay whole
    monkeypatch.setattr(console, "_width", 1000)
    table = orpheus("predict", songs / "a.wav", cwd=tmp_path)
    assert table.exit_code == 0 and "a.wav" in table.stdout and "msd-musicnn" in table.stdout


def test_embeddings_plot_and_globs(songs, tmp_path):
    emb, png = tmp_path / "emb.npz", tmp_path / "gram.png"
    result = orpheus(
        "predict", str(songs / "**" / "*.mp3"), songs / "a.wav", "--embeddings", emb, "--plot", png,
        "-f", "json", cwd=tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    with np.load(emb) as data:
        assert [Path(p).name for p in data["paths"]] == ["b.mp3", "a.wav"]
        assert data["mean"].shape == (2, 200)
        assert data["windows"].shape == (len(data["window_file"]), 200)
        np.testing.assert_allclose(
            data["mean"][1], data["windows"][data["window_file"] == 1].mean(axis=0), atol=1e-5
        )
    for name in ("gram-b.png", "gram-a.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_tags_keeps_the_audio(songs, tmp_path):
    for name in ("b.mp3", "c.flac"):
        copy = tmp_path / name
        copy.write_bytes((songs / "sub" / name).read_bytes())
    before = {n: sf.read(tmp_path / n)[0] for n in ("b.mp3", "c.flac")}
    result = orpheus(
        "predict", tmp_path / "b.mp3", tmp_path / "c.flac", "--write-tags", "-t", "0.05",
        "-f", "json", cwd=tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    for rec in json.loads(result.stdout):
        path = Path(rec["path"])
        assert read_tags(path) == [t["tag"] for t in rec["tags"]] != []
        np.testing.assert_array_equal(sf.read(path)[0], before[path.name])


def test_write_tags_reports_a_file_it_cannot_tag_and_exits_1(songs, tmp_path):
    (tmp_path / "b.mp3").write_bytes((songs / "sub" / "b.mp3").read_bytes())
    au = write(tmp_path / "a.au", music(4.0))  # libsndfile reads Sun .au, mutagen cannot tag it
    before = au.read_bytes()
    result = orpheus(
        "predict", tmp_path / "b.mp3", au, "--write-tags", "-f", "json", "-t", "0", cwd=tmp_path
    )
    assert result.exit_code == 1, result.stderr
    assert len(json.loads(result.stdout)) == 2  # both tagged, one could not be written into
    assert "tags not written" in result.stderr and "a.au: unsupported file type" in result.stderr
    assert read_tags(tmp_path / "b.mp3") and au.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.au", "b.mp3"]  # no temp file left


def test_default_model_is_the_latest_workspace_run(songs, tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    for run_id in ("old", "new"):
        make_run(ws.root, run_id)
        ws.register(f"run/{run_id}", f"runs/{run_id}", params={}, inputs={})
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        result = runner.invoke(
            app, ["-w", str(ws.root), "predict", str(songs / "a.wav"), "-f", "json"]
        )
        named = runner.invoke(
            app,
            ["-w", str(ws.root), "predict", str(songs / "a.wav"), "-f", "json", "--model", "old"],
        )
    finally:
        os.chdir(old)
    assert result.exit_code == 0, result.stderr
    (rec,) = json.loads(result.stdout)
    assert rec["model"] == "run/new" and set(rec["probabilities"]) == {"a", "b", "c"}
    assert json.loads(named.stdout)[0]["model"] == "run/old"


def test_partial_and_bad_input(songs, tmp_path):
    (tmp_path / "fake.mp3").write_text("this is text")
    (tmp_path / "empty").mkdir()
    partial = orpheus(
        "predict",
        songs / "a.wav",
        tmp_path / "missing.wav",
        tmp_path / "fake.mp3",
        "-f",
        "json",
        cwd=tmp_path,
    )
    assert partial.exit_code == 0  # the rule: 0 when any file was tagged
    assert len(json.loads(partial.stdout)) == 1
    assert "missing.wav" in partial.stderr and "fake.mp3" in partial.stderr
    cases = [
        (["predict", tmp_path / "missing.wav"], "no such file"),
        (["predict", tmp_path / "empty"], "no audio files"),
        (["predict", tmp_path / "fake.mp3"], "not a recognised audio format"),
        (["predict", songs / "a.wav", "--model", "nope"], "unknown model"),
        (["predict", songs / "a.wav", "-t", "1.5"], "Invalid value"),
        (["predict", songs / "a.wav", "--format", "xml"], "Invalid value"),
        (["predict", songs / "a.wav", "--hop", "0"], "Invalid value"),
        (["predict", songs / "a.wav", "-o", tmp_path / "nodir" / "x.json"], "does not exist"),
    ]
    for args, message in cases:
        result = orpheus(*args, cwd=tmp_path)
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
