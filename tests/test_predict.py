"""`orpheus predict`: inputs, formats, outputs, the default model, and bad input."""

from __future__ import annotations

import ast
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_helpers import orpheus
from tagger_helpers import make_run, music, write

from orpheus.commands._common import console
from orpheus.pretrained import kinds
from orpheus.tagfields import normalise, read_fields
from orpheus.workspace import Workspace


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
    kind = kinds("msd-musicnn")
    for rec in json.loads(result.stdout):
        path = Path(rec["path"])
        # the kept genres and moods, as the label reader finds them written by Orpheus
        written = {normalise(t["tag"]) for t in rec["tags"] if kind[t["tag"]] in ("genre", "mood")}
        assert set(read_fields(path)["orpheus"]) == written != set()
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
    assert read_fields(tmp_path / "b.mp3")["orpheus"] and au.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.au", "b.mp3"]  # no temp file left


def test_default_model_is_the_latest_workspace_run(songs, tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    for run_id in ("old", "new"):
        make_run(ws.root, run_id)
        ws.register(f"run/{run_id}", f"runs/{run_id}", params={}, inputs={})
    result = orpheus("-w", ws.root, "predict", songs / "a.wav", "-f", "json", cwd=tmp_path)
    named = orpheus(
        "-w", ws.root, "predict", songs / "a.wav", "-f", "json", "--model", "old", cwd=tmp_path
    )
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


# -- libraries: skips, silence, streaming results, resume ----------------------------------

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd: Path, **popen) -> subprocess.Popen:
    """`python -m orpheus ARGS` in a real process, as a user runs it."""
    return subprocess.Popen(
        [PYTHON, "-m", "orpheus", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "ORPHEUS_WORKSPACE": "", "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A finished run with a tiny real model (1 s log-mel windows): fast to load and run."""
    return make_run(tmp_path_factory.mktemp("runs"), "tiny")


def test_skip_lines_notes_and_the_summary(tiny, tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "library"
    (d / "disc 2").mkdir(parents=True)
    write(d / "song.wav", music(3.0))
    write(d / "quiet.flac", rng.standard_normal(3 * 16000) * 10 ** (-70 / 20))  # -70 dBFS hiss
    write(d / "blip.wav", music(0.3))
    write(d / "disc 2" / "intro.wav", music(0.7))
    (d / "disc 2" / "broken.mp3").write_bytes(b"ID3 but nothing else")
    (d / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (d / "disc 2" / "rip.log").write_text("EAC log")
    args = ["predict", d, "--model", tiny, "-f", "jsonl", "--min-seconds", "0.5"]
    result = orpheus(*args, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    skips = sorted(line for line in result.stderr.splitlines() if line.startswith("skipped"))
    assert skips == [
        f"skipped {d / 'blip.wav'}: too short (0.3 s)",
        f"skipped {d / 'disc 2' / 'broken.mp3'}: not a recognised audio format",
    ]
    notes = {
        Path(r["path"]).name: (r.get("note"), bool(r["probabilities"]))
        for r in map(json.loads, result.stdout.splitlines())
    }
    # intro.wav (0.7 s) is under the 1 s window: tagged, repeated to fill it
    assert notes == {
        "song.wav": (None, True), "quiet.flac": ("silent", False), "intro.wav": ("short", True)
    }  # fmt: skip
    # 3 s + 3 s + 0.7 s of audio tagged: 0:00:07
    (summary,) = [line for line in result.stderr.splitlines() if line.startswith("tagged")]
    assert summary.startswith("tagged 3 (0:00:07 of audio in ") and "x realtime)" in summary
    assert summary.endswith(
        ", 1 short, 1 silent, skipped 2 (1 not a recognised audio format, 1 too short), "
        "2 non-audio file(s) ignored"
    )
    louder = orpheus(*args, "--silence-db", "-80", cwd=tmp_path)
    quiet = [json.loads(x) for x in louder.stdout.splitlines() if "quiet.flac" in x]
    assert quiet[0]["probabilities"] and "note" not in quiet[0]


def test_help_shows_no_value_beside_flags():
    text = orpheus("predict", "--help", env={"COLUMNS": "200"}).stdout
    for flag in ("--taggram", "--write-tags", "--resume"):
        (line,) = [x for x in text.splitlines() if x.split()[1:2] == [flag]]  # "│ --flag ..."
        assert "<" not in line, line
    assert "<float>" in next(x for x in text.splitlines() if x.split()[1:2] == ["--silence-db"])


def test_a_folder_of_broken_files_never_imports_tensorflow(tiny, tmp_path):
    """The model (and TensorFlow, seconds to import) is loaded once a file has decoded."""
    (tmp_path / "a.mp3").write_text("not audio")
    (tmp_path / "b.m4a").write_bytes(b"")
    good = write(tmp_path / "c.wav", music(2.0))
    # what was imported, written by the CLI's own process as it exits
    probe = (
        "import atexit, os, sys; from pathlib import Path; "
        "atexit.register(lambda: Path(os.environ['PROBE']).write_text("
        "str('tensorflow' in sys.modules))); "
        "from orpheus.cli import main; main()"
    )
    seen = {}
    for name, inputs in {"broken": ["a.mp3", "b.m4a"], "good": [good.name]}.items():
        marker = tmp_path / f"{name}.txt"
        done = subprocess.run(
            [PYTHON, "-c", probe, "predict", *inputs, "--model", str(tiny)],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
            env={**os.environ, "ORPHEUS_WORKSPACE": "", "PYTHONPATH": str(REPO),
                 "PROBE": str(marker)},
        )  # fmt: skip
        seen[name] = (done.returncode, marker.read_text())
    # broken files only: exit 2, TensorFlow never imported; a good file: it is (the probe works)
    assert seen == {"broken": (2, "False"), "good": (0, "True")}


FILES = 12


@pytest.fixture(scope="module")
def album(tmp_path_factory, tiny) -> tuple[Path, dict[str, dict]]:
    """12 different 30 s songs, and the records of an uninterrupted `predict` over them."""
    d = tmp_path_factory.mktemp("album")
    base = music(10.0, seed=9)
    for i in range(FILES):
        song = np.roll(np.tile(base, 3), 7919 * i) * (0.5 + 0.04 * i)
        write(d / f"track {i:02d}.flac", song)
    out = d.parent / f"{d.name}-whole.jsonl"
    whole = run_cli("predict", d, "--model", tiny, "--hop", "0.1", "-f", "jsonl", "-o", out, cwd=d)
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    return d, {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}


def finished_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def read_back(path: Path, fmt: str) -> dict[str, dict]:
    """path -> model, size, mtime_ns, tag names and probabilities ("p"), from any format."""
    text = path.read_text()
    if fmt == "csv":
        records = []
        for row in csv.DictReader(io.StringIO(text)):
            labels = list(row)[6:]  # path, model, size, mtime_ns, note, tags, then the labels
            tags = [{"tag": t.split(":")[0]} for t in row["tags"].split(";") if t]
            sizes = {k: int(row[k]) for k in ("size", "mtime_ns")}
            probs = {k: float(row[k]) for k in labels}
            records.append(row | sizes | {"tags": tags, "probabilities": probs})
    elif fmt == "json":
        records = json.loads(text)
    else:
        records = list(map(json.loads, text.splitlines()))
    out = {r["path"]: comparable(r) for r in records}
    assert len(out) == len(records), "a file has two records"
    return out


def comparable(rec: dict) -> dict:
    return {k: rec[k] for k in ("model", "size", "mtime_ns")} | {
        "tags": [t["tag"] for t in rec["tags"]],
        "p": list(rec["probabilities"].values()),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "sig"),
    [
        pytest.param(fmt, sig, id=f"{fmt}-{sig.name}")
        for fmt, sig in [
            ("jsonl", signal.SIGKILL),
            ("csv", signal.SIGKILL),
            ("json", signal.SIGKILL),
            # Ctrl-C (SIGINT) is left out: in one loaded pytest-xdist run the first SIGINT did not
            # stop the batch, which then finished with exit 0 (not reproduced yet; see issue 15)
        ]
    ],
)
def test_a_killed_batch_resumes_to_the_records_of_an_uninterrupted_run(album, tiny, fmt, sig):
    folder, whole = album
    out = folder.parent / f"{folder.name}-{fmt}-{sig.name}.{fmt}"
    kept = out.with_name(out.name + ".partial") if fmt == "json" else out  # where records land
    args = ["predict", folder, "--model", tiny, "--hop", "0.1", "-f", fmt, "-o", out]
    killed = run_cli(*args, cwd=folder)
    wanted = 2 if fmt == "csv" else 1  # the CSV header, then a first row
    try:
        for _ in range(60_000):  # wait for a finished file on disk (the safety net: ~5 min)
            if finished_lines(kept) >= wanted or killed.poll() is not None:
                break
            time.sleep(0.005)
        killed.send_signal(sig)
        code = killed.wait(timeout=60)
    finally:
        killed.kill()
    assert code == -signal.SIGKILL, killed.stderr.read()
    done = finished_lines(kept) - (wanted - 1)
    assert 1 <= done < FILES  # the kill interrupted the batch
    assert not (fmt == "json" and out.exists())  # the json itself is written at the end
    with open(kept, "a") as fh:  # what a kill in the middle of a write leaves
        fh.write('{"path": "' if fmt != "csv" else f"{folder / 'track'},msd-mus")
    resumed = run_cli(*args, "--resume", cwd=folder)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert f"resuming: {done} file(s) already in" in resumed.stderr.read()
    assert not out.with_name(out.name + ".partial").exists()
    got, expected = read_back(out, fmt), {path: comparable(r) for path, r in whole.items()}
    assert set(got) == set(expected)
    for path, rec in got.items():
        p = rec.pop("p")
        want = dict(expected[path])
        # the same model on the same features in another process: float noise only
        np.testing.assert_allclose(p, want.pop("p"), atol=2e-6, err_msg=path)
        assert rec == want, path


def test_resume_tags_again_a_file_that_changed(tiny, tmp_path):
    for name, seed in (("a.wav", 1), ("b.wav", 2)):
        write(tmp_path / name, music(2.0, seed=seed))
    out = tmp_path / "tags.jsonl"
    args = ["predict", tmp_path / "a.wav", tmp_path / "b.wav", "--model", tiny, "-f", "jsonl"]
    first = orpheus(*args, "-o", out, cwd=tmp_path)
    assert first.exit_code == 0, first.stderr
    before = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    write(tmp_path / "b.wav", music(3.0, seed=3))  # replaced by another song
    again = orpheus(*args, "-o", out, "--resume", cwd=tmp_path)
    assert again.exit_code == 0, again.stderr
    assert "resuming: 1 file(s) already in" in again.stderr
    after = [json.loads(x) for x in out.read_text().splitlines()]
    assert [Path(r["path"]).name for r in after] == ["a.wav", "b.wav"]  # one record each
    b = str(tmp_path / "b.wav")
    assert after[1]["size"] == os.stat(b).st_size != before[b]["size"]
    assert after[0] == before[str(tmp_path / "a.wav")]
    nothing_left = orpheus(*args, "-o", out, "--resume", cwd=tmp_path)
    assert nothing_left.exit_code == 0 and "resuming: 2 file(s)" in nothing_left.stderr
    assert out.read_text().count("\n") == 2


def test_resume_needs_an_output_it_can_read(tiny, tmp_path):
    song = write(tmp_path / "a.wav", music(2.0))
    (tmp_path / "x.mp3").write_text("not audio")
    args = ["predict", song, "--model", tiny]
    assert "--resume needs -o" in orpheus(*args, "--resume", cwd=tmp_path).stderr
    table = tmp_path / "tags.txt"
    assert orpheus(*args, "-o", table, cwd=tmp_path).exit_code == 0
    refused = orpheus(*args, "-o", table, "--resume", cwd=tmp_path)
    assert refused.exit_code == 2 and "a finished table cannot be read back" in refused.stderr
    for fmt in ("json", "jsonl"):  # nothing tagged: no output, no .partial left behind
        out = tmp_path / f"none.{fmt}"
        broken = orpheus("predict", tmp_path / "x.mp3", "-f", fmt, "-o", out, cwd=tmp_path)
        assert broken.exit_code == 2 and not list(tmp_path.glob("none.*"))
    rows = tmp_path / "tags.csv"
    rows.write_text("path,model,size,mtime_ns,note,tags,a,b,c\n")  # a header, no row yet
    resumed = orpheus(*args, "-f", "csv", "-o", rows, "--resume", cwd=tmp_path)
    assert resumed.exit_code == 0, resumed.stderr
    lines = rows.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{song},run/tiny,")  # one header, one row
    other = orpheus(*args[:2], "-f", "csv", "-o", rows, "--resume", cwd=tmp_path)
    assert other.exit_code == 2 and "holds results of run/tiny" in other.stderr


# -- the library, the summary, the Python API -----------------------------------------------


def test_the_summary_counts_what_soundfile_measures(tiny, tmp_path):
    from orpheus import predicting

    d = tmp_path / "library"
    (d / "cd").mkdir(parents=True)
    write(d / "a.wav", music(2.3, seed=1))
    write(d / "cd" / "b.flac", music(3.7, sr=22050, seed=2), sr=22050)  # resampled to 16 kHz
    stereo = np.stack([music(1.9, sr=44100, seed=3)] * 2, axis=1)
    write(d / "cd" / "c.wav", stereo, sr=44100)
    write(d / "zeros.wav", np.zeros(2 * 16000, np.float32))  # tagged, no tags: silent
    write(d / "short.wav", music(0.4))  # under --min-seconds 1: skipped
    (d / "cd" / "broken.mp3").write_bytes(b"ID3 but nothing else")
    (d / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (d / "cd" / "album.cue").write_text("FILE b.flac WAVE")
    tagged = [d / "a.wav", d / "cd" / "b.flac", d / "cd" / "c.wav", d / "zeros.wav"]
    seconds = sum(sf.info(str(f)).duration for f in tagged)  # the oracle: 9.9 s
    summary = predicting.Summary()
    recs = list(
        predicting.tag_paths([d, tmp_path / "gone.wav"], model=tiny, summary=summary, threshold=0)
    )
    assert {r["path"]: r.get("skipped") for r in recs if "skipped" in r} == {
        str(tmp_path / "gone.wav"): "no such file or folder",
        str(d / "cd" / "broken.mp3"): "not a recognised audio format",
        str(d / "short.wav"): "too short (0.4 s)",
    }
    assert sorted(r["path"] for r in recs if "skipped" not in r) == sorted(map(str, tagged))
    # decoded lengths at 16 kHz: soxr's output rounds to whole samples (1/16000 s per file)
    assert summary.seconds == pytest.approx(seconds, abs=4 / 16000)
    assert (summary.tagged, dict(summary.notes), summary.ignored) == (4, {"silent": 1}, 2)

    result = orpheus("predict", d, tmp_path / "gone.wav", "--model", tiny, "-f", "jsonl",
                     cwd=tmp_path)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("tagged")]
    head = re.fullmatch(
        r"tagged 4 \(0:00:10 of audio in ([\d.]+) s, ([\d.]+)x realtime\), 1 silent, skipped 3 "
        r"\(1 no such file or folder, 1 not a recognised audio format, 1 too short\), "
        r"2 non-audio file\(s\) ignored",
        line,
    )
    assert head, line
    took, fast = map(float, head.groups())
    # both are printed to 0.1: the realtime factor is the audio's length over the time taken
    assert seconds / (took + 0.05) - 0.05 <= fast <= seconds / max(took - 0.05, 1e-9) + 0.05


def test_the_readme_python_example_tags_a_folder(tmp_path, monkeypatch, capsys):
    from orpheus import pretrained

    text = (REPO / "README.md").read_text()
    section = text[text.index("### Python API") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("\n```", start)]
    (tmp_path / "music").mkdir()
    write(tmp_path / "music" / "song.wav", music(4.0, seed=5))
    write(tmp_path / "music" / "other.flac", music(3.2, seed=6))
    (tmp_path / "music" / "bad.mp3").write_text("not audio")
    (tmp_path / "music" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "skipped music/bad.mp3 not a recognised audio format"
    labels = set(pretrained.labels("msd-musicnn"))
    for line, name in zip(lines[1:3], ("other.flac", "song.wav"), strict=True):
        path, tags = line.split(" ", 1)
        assert path == f"music/{name}" and set(ast.literal_eval(tags)) <= labels
    assert lines[3].startswith("tagged 2 (0:00:07 of audio in ")
    assert lines[3].endswith(
        "skipped 1 (1 not a recognised audio format), 1 non-audio file(s) ignored"
    )
    shape, top = lines[4].split(") ", 1)
    # 4 s = 251 frames: 187-frame windows about 1 s (62 frames) apart over a span of 64 frames
    assert shape == "(2, 50"
    assert all(t in labels and p >= 0.2 for t, p in ast.literal_eval(top))


def test_header_estimates_are_near_the_decoded_length(tmp_path):
    from orpheus.predicting import estimated_seconds

    wav = write(tmp_path / "a.wav", music(2.5))
    assert estimated_seconds(wav) == 2.5  # libsndfile: frames / rate, exact
    ape = REPO / "tests" / "fixtures" / "music.ape"  # FFmpeg's header: 3.5 s of music (README)
    assert estimated_seconds(ape) == pytest.approx(3.5, abs=1e-3)
    (tmp_path / "x.mp3").write_text("not audio")
    assert estimated_seconds(tmp_path / "x.mp3") is None


def test_the_cli_shows_the_library_defaults_and_imports_no_numpy():
    from orpheus import audio

    text = orpheus("predict", "--help", env={"COLUMNS": "200"}).stdout
    for flag, value in (("--silence-db", audio.SILENCE_DB), ("--min-seconds", audio.MIN_SECONDS)):
        line = next(x for x in text.splitlines() if x.split()[1:2] == [flag])
        assert f"[default: ({value})]" in line, line  # Typer brackets a described default
    probe = "import sys, orpheus.cli; print(sorted({'numpy', 'tensorflow'} & set(sys.modules)))"
    done = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.stdout.strip() == "[]"  # `orpheus --help` stays instant
