"""The reliability suite: bad input for every command, faults, and the security rules.

Bad input gets one `error: ...` line (exit 2) or a counted, reported skip (exit 1), never a
traceback or exit 3 (an internal error is a bug). Faults: commands racing on one workspace; a
corrupt manifest. (SIGKILL during `scan`, `silence`, `tfrecords build` and `train` is in
test_scan.py, test_silence.py, test_records.py and test_training.py; a damaged TFRecord shard
under `test`, `train` and the embedding cache in test_test_silence.py, test_training.py and
test_heads.py.)
Security: parameterised SQL, no pickle on user files, Keras safe mode, table paths confined to
the audio root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from cli_helpers import orpheus

from orpheus.commands.init import use_example
from orpheus.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
PYTHON = str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else sys.executable


def entry_point(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real entry point, `python -m orpheus`, as a user runs it."""
    return subprocess.run(
        [PYTHON, "-m", "orpheus", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "ORPHEUS_WORKSPACE": ""},
    )


def assert_clean_failure(result, code: int, message: str | None = None) -> None:
    """Exit `code`, no traceback, and (for exit 2) exactly one `error:` line holding `message`."""
    out = result.stdout + result.stderr
    assert result.exit_code == code, (code, out)
    assert "Traceback" not in out and "internal error" not in out, out
    if code == 2:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        if message is not None:
            assert message in errors[0], result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def configure(ws: Workspace, corpus: Path) -> None:
    """Point a workspace at the example corpus, with its truth's thresholds."""
    use_example(ws, corpus, json.loads((corpus / "truth.json").read_text(encoding="utf-8")))


# -- shared inputs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline(example_corpus: Path, tmp_path_factory) -> Path:
    """A workspace whose path holds non-ASCII letters and spaces, run up to `tfrecords build`."""
    root = tmp_path_factory.mktemp("pipeline") / "wš ünï" / "my workspace"
    ws = Workspace.create(root)
    configure(ws, example_corpus)
    for args in (
        ["scan", "-j", "1"],
        ["wrangle"],
        ["silence", "-j", "2"],
        ["tags", "clean"],
        ["tfrecords", "build", "-j", "1"],
    ):
        result = orpheus("-w", root, *args)
        assert result.exit_code in (0, 1), (args, result.output)
        assert "Traceback" not in result.output
    return root


@pytest.fixture
def scratch(pipeline: Path, tmp_path: Path) -> Path:
    """A private copy of the pipeline workspace to damage."""
    return Path(shutil.copytree(pipeline, tmp_path / "copy ü" / "ws"))


def tone(sr: int, channels: int, seconds: float) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    y = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([y * (0.5 + 0.1 * c) for c in range(channels)], 1).astype(np.float32)


RATES = (8000, 22050, 44100, 48000, 96000)
CHANNELS = (1, 2, 6)


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, list[Path]]:
    """Good audio at every rate and channel count (WAV, FLAC, MP3 where MP3 allows), edge
    cases (silent, 50 ms, one sample) and broken files, all under names with spaces and accents."""
    d = tmp_path_factory.mktemp("audio") / "my sóngs"
    d.mkdir()
    good = []
    for sr in RATES:
        for ch in CHANNELS:
            for ext in ("wav", "flac", "mp3"):
                if ext == "mp3" and (ch > 2 or sr > 48000):
                    continue  # MPEG audio: at most 2 channels and 48 kHz
                path = d / f"tone {sr} Hz {ch}ch é.{ext}"
                sf.write(str(path), tone(sr, ch, 1.5), sr)
                good.append(path)
    edge = [d / "silent ✓.wav", d / "short 50 ms.wav", d / "one sample.flac"]
    sf.write(str(edge[0]), np.zeros((16000, 2), np.float32), 16000)
    sf.write(str(edge[1]), tone(16000, 1, 0.05), 16000)
    sf.write(str(edge[2]), tone(16000, 1, 1 / 16000), 16000)
    mp3 = (d / "tone 44100 Hz 2ch é.mp3").read_bytes()
    wav = (d / "tone 44100 Hz 2ch é.wav").read_bytes()
    broken = {
        "empty.wav": b"",
        "text pretending.mp3": b"this is not audio\n" * 20,
        "random bytes.flac": np.random.default_rng(0).bytes(5000),
        "header only.wav": wav[:40],
    }
    for name, data in broken.items():
        (d / name).write_bytes(data)
    truncated = d / "truncated.mp3"
    truncated.write_bytes(mp3[: len(mp3) // 3])  # decodes what is there: a short track
    return {
        "good": good,
        "edge": edge,
        "truncated": [truncated],
        "broken": [d / n for n in broken],
        "missing": [d / "not there.wav"],
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run folder holding a tiny real Keras model (1 s log-mel windows)."""
    from tagger_helpers import make_run

    return make_run(tmp_path_factory.mktemp("runs"), "tiny")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    """Inputs of the wrong kind: HDF5 and SQLite of the wrong schema, text, bad errata."""
    import h5py

    d = tmp_path_factory.mktemp("bad inputs")
    with h5py.File(d / "wrong schema.h5", "w") as f:
        f["x"] = [1, 2, 3]
    (d / "text.h5").write_text("not hdf5")
    con = sqlite3.connect(d / "wrong schema.db")
    con.execute("CREATE TABLE foo(a)")
    con.commit()
    con.close()
    (d / "text.db").write_text("not sqlite")
    (d / "bad json.json").write_text('{"model": ')
    (d / "duplicates.txt").write_text(
        "# MSD duplicates\n%1\nTRAAAAAAAAAAAAAAAA\nGARBAGE LINE\nTR123\n"
    )  # two malformed lines
    (d / "mismatches.txt").write_text(
        "ERROR: <SOAAAAAAAAAAAAAAAA TRAAAAAAAAAAAAAAAA> A - B  !=  C - D\nnot an errata line\n"
    )  # one malformed line
    return {p.name: p for p in d.iterdir()}


# -- audio: rates, channels, edge cases, broken files ----------------------------------------


def test_predict_tags_every_rate_channel_count_and_edge_case(audio, tiny_run):
    files = audio["good"] + audio["edge"] + audio["truncated"]
    # --min-seconds 0: the 0.05 s and one-sample files are tagged too (by default: too short)
    args = ["--model", tiny_run, "-f", "json", "--min-seconds", "0"]
    result = orpheus("predict", *files, *args)
    assert_clean_failure(result, 0)
    records = json.loads(result.stdout)
    assert [r["path"] for r in records] == [str(p) for p in files]
    for rec in records:
        # digital silence (the one sample of a sine at t = 0 is 0 too): no tags at all
        if rec["path"] in (str(audio["edge"][0]), str(audio["edge"][2])):
            assert rec["note"] == "silent" and rec["probabilities"] == {} and rec["tags"] == []
            continue
        assert set(rec["probabilities"]) == {"a", "b", "c"}
        assert all(0.0 <= p <= 1.0 for p in rec["probabilities"].values())
    default = orpheus("predict", *audio["edge"], "--model", tiny_run, "-f", "json")
    for short in audio["edge"][1:]:
        assert f"skipped {short}: too short" in default.stderr


def test_silence_analysis_of_every_rate_channel_count_and_edge_case(audio):
    from orpheus.silence import analyse

    for path in audio["good"]:
        stats = analyse(path)
        sr = int(path.name.split()[1])
        assert stats["sample_rate"] == sr and stats["length"] == pytest.approx(1.5, abs=0.06)
        assert stats["n_intervals"] >= 1 and "error" not in stats, path.name
    silent, short, one = (analyse(p) for p in audio["edge"])
    assert silent["n_intervals"] == 0 and np.isnan(silent["trim_length"])
    assert short["n_intervals"] == 1 and short["trim_length"] == pytest.approx(0.05, abs=1e-3)
    assert one["n_intervals"] == 0  # a single sample: nothing to call sound, not a crash
    for path in audio["broken"] + audio["missing"]:
        assert analyse(path)["error"].startswith(f"cannot decode {path}")


def test_broken_audio_is_a_reported_skip_and_all_broken_is_exit_2(audio, tiny_run):
    broken = audio["broken"] + audio["missing"]
    mixed = orpheus("predict", audio["good"][0], *broken, "--model", tiny_run, "-f", "json")
    assert_clean_failure(mixed, 0)  # one file tagged is success
    assert [r["path"] for r in json.loads(mixed.stdout)] == [str(audio["good"][0])]
    skipped = [line for line in mixed.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == len(broken)
    for path in broken:
        assert path.name in mixed.stderr
    assert "empty file" in mixed.stderr and "not a recognised audio format" in mixed.stderr
    assert "possibly a pipe" not in mixed.stderr  # libsndfile's misleading wording
    none = orpheus("predict", *audio["broken"], "--model", tiny_run)
    assert_clean_failure(none, 2, "no file could be tagged")


def test_libmpg123_notes_about_a_damaged_mp3_are_dropped_unless_verbose(audio, tiny_run):
    page = audio["good"][0].parent / "a 404 page.mp3"  # what a failed download leaves behind
    page.write_bytes(b"<html><head><title>404 Not Found</title></head>\n" + b"<p>gone</p>\n" * 8)
    args = ["predict", audio["good"][0], page, "--model", tiny_run, "-f", "json"]
    quiet, verbose = entry_point(*args), entry_point("-v", *args)
    assert quiet.returncode == verbose.returncode == 0, quiet.stderr
    # libmpg123 really does print its notes for this file ...
    assert "Illegal Audio-MPEG-Header" in verbose.stderr
    # ... and without -v the one line Orpheus prints is all the user sees about it
    assert "Illegal Audio-MPEG-Header" not in quiet.stderr and "Note:" not in quiet.stderr
    assert f"skipped {page}: not a recognised audio format" in quiet.stderr
    assert len(json.loads(quiet.stdout)) == 1


def test_predict_with_stderr_closed_still_tags(audio, tiny_run):
    args = [PYTHON, "-m", "orpheus", "predict", audio["good"][0], "--model", tiny_run, "-f", "json"]
    command = " ".join(shlex.quote(str(a)) for a in args) + " 2>&-"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert [r["path"] for r in json.loads(done.stdout)] == [str(audio["good"][0])]


def test_the_decoder_note_filter_passes_every_other_line_of_native_stderr():
    code = (
        "import os, sys\n"
        "from orpheus.commands._common import quiet_decoder_notes\n"
        "quiet_decoder_notes()\n"
        "os.write(2, b'Note: Illegal Audio-MPEG-Header 0x00000000 at offset 129.\\n')\n"
        "os.write(2, b'a native line\\n')\n"
        "print('a python line', file=sys.stderr)\n"
        "os.write(2, b'Note: Trying to resync...\\nthe last native words')\n"
    )
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert sorted(lines) == ["a native line", "a python line", "the last native words"]


# -- bad input for every command: one line, exit 2 -------------------------------------------

# (command line after `-w WS`, with {name} for a bad_files path; expected text of the error)
BAD_INPUT = [
    (["scan", "/no/such/folder"], "audio root not found"),
    (["scan", "{text.db}"], "audio root is not a folder"),
    (["scan", "-j", "0"], "--workers must be at least 1"),
    (["wrangle", "--msd-summary", "{wrong schema.h5}"], "not an MSD summary file"),
    (["wrangle", "--msd-summary", "{text.h5}"], "not an HDF5 file"),
    (["wrangle", "--lastfm-db", "{wrong schema.db}"], "has no table `tids`"),
    (["wrangle", "--lastfm-db", "{text.db}"], "is not an SQLite database"),
    (["wrangle", "--duplicates", "/no/such/file.txt"], "file not found"),
    (["silence", "--min-size", "-1"], "--min-size must be 0 or more"),
    (["silence", "--top-db", "0"], "--top-db must be positive"),
    (["tags", "clean", "--lastfm-db", "{wrong schema.db}"], "has no table `tids`"),
    (["tags", "clean", "--lastfm-db", "{text.db}"], "is not an SQLite database"),
    (["tags", "clean", "--threshold", "0"], "--threshold must be >= 1"),
    (["tags", "top", "-n", "0"], "-n must be at least 1"),
    (["tags", "top", "--lastfm-db", "{wrong schema.db}"], "has no table `tids`"),
    (["tags", "show", "TRNOTATRACK0000000"], "is not in"),
    (["tags", "show", "TRX", "--raw", "--lastfm-db", "{text.db}"], "is not an SQLite database"),
    (["tags", "explain", "no such tag at all"], None),
    (["tfrecords", "build", "--shards", "0"], "--shards must be at least 1"),
    (["tfrecords", "build", "--format", "mp4"], "unknown format 'mp4'"),
    (["tfrecords", "inspect", "--format", "mp4"], "unknown format 'mp4'"),
    (["tfrecords", "inspect", "--format", "waveform"], "no tfrecords/waveform yet"),
    (["train", "--summary", "--frontend", "spectral"], "unknown frontend"),
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--resume", "no-such-run"], "no run no-such-run"),
    (["test"], "no trained run yet"),
    (["test", "--run", "no-such-run"], "no run no-such-run"),
    (["predict", "/no/such/song.mp3"], "no audio to tag"),
    (["predict", "/no/such/song.mp3", "--model", "nope"], "unknown model 'nope'"),
    (["record", "--device", "999999"], "cannot record"),
    (["config", "set", "no.such.key", "1"], "unknown key"),
    (["config", "set", "--", "model-training.batch_size", "-1"], "must be > 0"),
    (["config", "set", "tfrecords.format", "mp4"], "must be one of"),
    (["config", "set", "model-training.split", "[50, 60]"], "must add up to 100"),
    (["config", "show", "no.such.key"], "unknown key"),
    (["config", "validate", "{bad json.json}"], "not valid JSON"),
    (["config", "validate", "/no/such/config.json"], "no such config file"),
    (["demo", "{demo}", "--tracks", "0"], "must be positive"),
    (["demo", "{demo}", "--epochs", "-1"], "must be positive"),
    (["init", "{text.db}"], "exists and is not a folder"),
]


@pytest.mark.parametrize(
    ("args", "message"), BAD_INPUT, ids=[" ".join(a)[:40] for a, _ in BAD_INPUT]
)
def test_bad_input_is_one_line_exit_2(scratch_once, bad_files, tmp_path, args, message):
    paths = {**{k: str(v) for k, v in bad_files.items()}, "demo": str(tmp_path / "demo ws")}
    argv = [paths[a[1:-1]] if a.startswith("{") else a for a in args]
    before = digest(scratch_once / "manifest.json")
    result = orpheus("-w", scratch_once, *argv)
    assert_clean_failure(result, 2, message)
    assert digest(scratch_once / "manifest.json") == before  # nothing half-registered
    assert not (tmp_path / "demo ws").exists()


@pytest.fixture(scope="module")
def scratch_once(pipeline: Path, tmp_path_factory) -> Path:
    """One copy of the pipeline workspace shared by the bad-input cases (none may change it)."""
    return Path(shutil.copytree(pipeline, tmp_path_factory.mktemp("bad") / "ws ü"))


def test_status_outside_a_workspace_and_a_missing_workspace(tmp_path):
    assert_clean_failure(orpheus("-w", tmp_path / "nope", "status"), 2, "not an Orpheus workspace")


def test_bad_values_written_into_config_json(scratch):
    """A hand-edited config.json: schema errors name the key; values the schema allows but a
    stage cannot use are refused by that stage, before it writes anything."""
    w = ["-w", scratch]
    cfg_path = scratch / "config.json"
    good = cfg_path.read_text()
    cfg = json.loads(good)
    cfg["silence"]["top_db"] = "loud"
    cfg_path.write_text(json.dumps(cfg))
    assert_clean_failure(orpheus(*w, "silence"), 2, "'silence.top_db'")
    assert_clean_failure(orpheus(*w, "config", "validate"), 2, "'silence.top_db'")
    cfg_path.write_text(good[: len(good) // 2])
    assert_clean_failure(orpheus(*w, "config", "show"), 2, "config.json")
    assert_clean_failure(orpheus(*w, "silence"), 2, "config.json")

    cases = [
        (("tfrecords", "shards", 0), ["tfrecords", "build"], "--shards must be at least 1"),
        (("tags-cleaning", "threshold", 0), ["tags", "clean"], "--threshold must be >= 1"),
        (("silence", "filter_trim_length", -1), ["silence"], "must be 0 or more"),
    ]
    for (section, key, value), argv, message in cases:
        cfg = json.loads(good)
        cfg[section][key] = value
        cfg_path.write_text(json.dumps(cfg))
        before = digest(scratch / "manifest.json")
        assert_clean_failure(orpheus(*w, *argv), 2, message)
        assert digest(scratch / "manifest.json") == before


def test_bad_optimizer_tag_selection_and_window_fail_before_training(scratch):
    cfg_path = scratch / "config.json"
    good = json.loads(cfg_path.read_text())
    short = ["train", "--epochs", "1", "--steps-per-epoch", "1", "--run-name", "bad"]
    for section, key, value, argv, message in (
        ("model-training", "optimizer", {"name": "NoSuchOptimizer"}, short, "cannot make"),
        ("model-training", "optimizer", {"name": "Adam", "learning_rate": "fast"}, short, "Adam"),
        ("model-training", "optimizer", {"name": "Adam", "bogus": 1}, short, "bogus"),
        ("tags", "top", 0, ["train", "--summary"], "the tag selection is empty"),
        ("tags", "with", ["no such tag"], ["train", "--summary"], "not in the clean vocabulary"),
        ("model-training", "window_length", 0.001, ["train", "--summary"], "too short"),
    ):
        cfg = json.loads(json.dumps(good))
        cfg[section][key] = value
        cfg_path.write_text(json.dumps(cfg))
        assert_clean_failure(orpheus("-w", scratch, *argv), 2, message)
        assert not list(scratch.glob("runs/*/model.keras"))


def test_malformed_errata_lines_are_counted_skips_exit_1(scratch, bad_files):
    for flag, name, count in (("--duplicates", "duplicates.txt", 2), ("--mismatches",
                              "mismatches.txt", 1)):  # fmt: skip
        result = orpheus("-w", scratch, "wrangle", flag, bad_files[name])
        assert_clean_failure(result, 1)
        assert f"skipped {count} malformed line(s)" in result.stderr
    assert Workspace.open(scratch).state("wrangle") == "ok"


def test_unicode_and_space_paths_run_the_whole_pipeline(pipeline):
    ws = Workspace.open(pipeline)
    assert " " in str(ws.root) and "ü" in str(ws.root)
    names = ("scan", "wrangle", "silence", "clean-tags", "tfrecords/log-mel")
    assert {n: ws.state(n) for n in names} == dict.fromkeys(names, "ok")
    inspect = orpheus("-w", pipeline, "tfrecords", "inspect")
    assert_clean_failure(inspect, 0)


# -- faults: SIGKILL, concurrency, corrupt manifest ------------------------------------------


def test_two_commands_at_once_on_one_workspace(scratch, example_corpus):
    """Two `tags clean` and one `scan` racing: all end, the manifest is valid and complete."""
    (scratch / "tags" / "clean_lastfm.db").unlink()
    Workspace.open(scratch).forget("clean-tags")
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "orpheus", "-w", str(scratch), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for args in (["tags", "clean"], ["tags", "clean"], ["scan", "--fresh", "-j", "1"])
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert all("Traceback" not in err for _, err in outs)
    manifest = json.loads((scratch / "manifest.json").read_text())
    assert {"scan", "wrangle", "silence", "clean-tags", "tfrecords/log-mel"} <= set(
        manifest["artifacts"]
    )
    ws = Workspace.open(scratch)
    assert ws.state("clean-tags") == "ok" and ws.state("scan") == "ok"
    with sqlite3.connect(scratch / "tags" / "clean_lastfm.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not list(scratch.rglob("*.tmp"))


@pytest.mark.parametrize(
    "damage",
    [b"", b'{"version": 1, "artifacts": {"scan": ', b"\xff\xfe\x00\x01", b"[]", b'{"a": 1}'],
    ids=["empty", "half-written", "binary", "a list", "no artifacts"],
)
def test_corrupt_manifest_stops_every_command_and_the_backup_recovers(scratch, damage):
    manifest, backup = scratch / "manifest.json", scratch / "manifest.json.bak"
    good = json.loads(backup.read_text())  # the previous write's manifest
    manifest.write_bytes(damage)
    for argv in (["status"], ["scan", "-j", "1"], ["silence"], ["tags", "top"], ["train"]):
        result = orpheus("-w", scratch, *argv)
        assert_clean_failure(result, 2, "manifest.json is corrupt")
        assert "manifest.json.bak" in result.stderr  # the hint names the backup
    assert manifest.read_bytes() == damage  # never silently overwritten
    shutil.copy(backup, manifest)
    assert set(Workspace.open(scratch).names()) == set(good["artifacts"])
    assert_clean_failure(orpheus("-w", scratch, "status"), 0)


def test_corrupt_manifest_and_bad_input_through_the_real_entry_point(scratch, bad_files):
    (scratch / "manifest.json").write_text("{")
    result = entry_point("-w", scratch, "status")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error:") and "manifest.json.bak" in result.stderr
    (scratch / "manifest.json.bak").unlink()
    result = entry_point("-w", scratch, "status")
    assert result.returncode == 2 and "orpheus init --force" in result.stderr
    result = entry_point("-w", scratch, "wrangle", "--lastfm-db", bad_files["text.db"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for args in (["scan", "-j", "zero"], ["no-such-command"]):
        result = entry_point(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr


# -- security --------------------------------------------------------------------------------

EVIL = "'; DROP TABLE tags; --"
QUOTED = 'it\'s "quoted"'
BOBBY = "Robert'); DROP TABLE tids;--"


def test_sql_text_in_tags_and_ids_is_data_not_code(tmp_path):
    from test_tags_clean import make_db, tid

    raw = make_db(tmp_path / "raw.db", {"rock": 8, EVIL: 6, QUOTED: 6, BOBBY: 5})
    before = digest(raw)
    ws = Workspace.create(tmp_path / "ws")
    w = ["-w", ws.root]
    clean = orpheus(*w, "tags", "clean", "--lastfm-db", raw, "--threshold", "5",
                    "--sub-threshold", "2", "--json")  # fmt: skip
    assert_clean_failure(clean, 0)
    top = {t["tag"] for t in json.loads(orpheus(*w, "tags", "top", "--json").stdout)}
    assert {EVIL.lower(), QUOTED, BOBBY.lower()} <= top  # clean tags are lower-cased
    show = json.loads(orpheus(*w, "tags", "show", tid(0), "--json").stdout)
    assert {EVIL.lower(), QUOTED, BOBBY.lower()} <= {t["tag"] for t in show["tags"]}
    raw_show = orpheus(*w, "tags", "show", tid(0), "--raw", "--lastfm-db", raw, "--json")
    assert {EVIL, QUOTED, BOBBY} <= {t["tag"] for t in json.loads(raw_show.stdout)["tags"]}
    why = json.loads(orpheus(*w, "tags", "explain", EVIL, "--json").stdout)
    assert why["raw"]["raw_tag"] == EVIL and why["raw"]["clean_tag"] == EVIL.lower()
    assert_clean_failure(orpheus(*w, "tags", "show", "TR'; DROP TABLE tids; --"), 2, "is not in")
    assert digest(raw) == before  # the input db is never written
    with sqlite3.connect(ws.path("tags/clean_lastfm.db")) as con:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tids", "tags", "tid_tag"} <= names


class _Payload:
    """Unpickling this would run code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_pickled_arrays_in_a_checkpoint_are_refused(tmp_path):
    import keras

    from orpheus.training import TrainingError, load_checkpoint

    marker = tmp_path / "marker"
    obj = np.empty(1, dtype=object)
    obj[0] = _Payload(marker)
    path = tmp_path / "epoch-0001.npz"
    np.savez(path, **{"model/00000": obj})  # a pickled object array in a weights position
    layer = keras.layers.Dense(1)
    layer.build((None, 1))
    with pytest.raises(TrainingError, match="corrupt"):
        load_checkpoint(path, {"model": layer.weights[:1]})
    assert not marker.exists()


def test_keras_models_with_code_are_refused_in_safe_mode(tiny_run, audio, scratch, tmp_path):
    import keras

    evil = Path(shutil.copytree(tiny_run, tmp_path / "evil run"))
    inputs = keras.Input((63, 96))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(x)).save(evil / "model.keras")
    result = orpheus("predict", audio["good"][0], "--model", evil)
    assert_clean_failure(result, 2, "Lambda")

    garbage = Path(shutil.copytree(tiny_run, tmp_path / "garbage run"))
    (garbage / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    assert_clean_failure(orpheus("predict", audio["good"][0], "--model", garbage), 2)

    # `orpheus test` loads a workspace run the same way
    for name, source in (("evil", evil), ("garbage", garbage)):
        run_dir = scratch / "runs" / name
        shutil.copytree(source, run_dir)
        cfg = json.loads((scratch / "config.json").read_text())
        (run_dir / "config.json").write_text(json.dumps({**cfg, "frontend": "log-mel"}))
        assert_clean_failure(orpheus("-w", scratch, "test", "--run", name), 2, "cannot load")


def test_table_paths_outside_the_audio_root_are_refused(scratch, example_corpus, tmp_path):
    """A tampered wrangle / silence table must not make Orpheus read files outside the root:
    such rows are counted skips, even when the file they name is perfectly good audio."""
    root = example_corpus / "7digital"
    outside = tmp_path / "elsewhere" / "stolen.clip.mp3"
    outside.parent.mkdir()
    shutil.copy(next(root.rglob("*.clip.mp3")), outside)
    escapes = [os.path.relpath(outside, root), str(outside)]  # ../../.. and absolute

    table = pd.read_parquet(scratch / "data/wrangle.parquet")
    tampered = table["track_id"].iloc[:2].tolist()
    table.loc[:1, "file_path"] = escapes
    table.to_parquet(scratch / "data/wrangle.parquet", index=False)
    result = orpheus("-w", scratch, "silence", "-j", "1", "--min-size", "0")
    assert_clean_failure(result, 0)
    rejects = pd.read_parquet(scratch / "data/silence_rejects.parquet").set_index("track_id")
    for tid in tampered:
        assert rejects.loc[tid, "reason"] == "undecodable"
        assert "outside the audio root" in rejects.loc[tid, "detail"]
    stats = pd.read_parquet(scratch / "data/silence_stats.parquet")
    assert stats.loc[stats["file_path"].isin(escapes), "sample_rate"].isna().all()  # never read

    kept = pd.read_parquet(scratch / "data/silence.parquet")
    victims = kept["track_id"].iloc[:2].tolist()
    kept.loc[:1, "file_path"] = escapes
    kept.to_parquet(scratch / "data/silence.parquet", index=False)
    result = orpheus("-w", scratch, "tfrecords", "build", "-j", "1")
    assert_clean_failure(result, 1)
    assert result.stderr.count("outside the audio root") == 2
    index = json.loads((scratch / "tfrecords/log-mel/index.json").read_text())
    written = {t for s in index["shards"] for t in s["tids"]}
    assert written and not written & set(victims)


def test_confined_paths():
    from orpheus.paths import confined

    assert confined("/audio", "1/2/123.clip.mp3") == Path("/audio/1/2/123.clip.mp3")
    assert confined("/audio", "a/../b.mp3") == Path("/audio/b.mp3")
    for bad in ("../x.mp3", "a/../../x.mp3", "/etc/passwd", "", ".", "..", "a\0b", None):
        assert confined("/audio", bad) is None, bad


def test_no_pickle_or_eval_on_user_files():
    """The code paths that read user files never enable pickle or call eval/exec."""
    source = {p: p.read_text(encoding="utf-8") for p in (REPO / "orpheus").rglob("*.py")}
    for path, text in source.items():
        assert "allow_pickle=True" not in text, path
        assert "pickle.load" not in text and "eval(" not in text and "exec(" not in text, path
        assert "safe_mode=False" not in text and "enable_unsafe_deserialization" not in text, path
        for call in re.findall(r"np\.load\(([^)]*)\)", text):
            assert "allow_pickle=False" in call, (path, call)
        for call in re.findall(r"keras\.models\.load_model\(([^)]*)\)", text):
            assert "safe_mode=True" in call, (path, call)
    # Every run's model is loaded through runs.load_model, the one Keras load_model call.
    assert "keras.models.load_model(" in source[REPO / "orpheus" / "runs.py"]


def test_sigkill_leaves_no_lock_held(scratch):
    """A command killed while holding the workspace lock does not block the next one (flock is
    released by the kernel with the process)."""
    holder = subprocess.Popen(
        [PYTHON, "-c", "import sys, time\nfrom orpheus.workspace import Workspace\n"
         "ws = Workspace.open(sys.argv[1])\nwith ws.lock():\n    print('locked', flush=True)\n"
         "    time.sleep(60)\n", str(scratch)],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    after = entry_point("-w", scratch, "config", "set", "tags.top", "10", timeout=60)
    assert after.returncode == 0, after.stderr
