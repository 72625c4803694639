"""Scan: headers of real MP3s, rejects with reasons, symlinked and unreadable folders, workers,
and resumability (also after a SIGKILL)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from cli_helpers import orpheus

from orpheus import scan as scan_mod
from orpheus.errors import OrpheusError
from orpheus.msd import audio_relpath

REPO = Path(__file__).resolve().parents[1]


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


def test_symlinked_folders_are_followed_once(tree, tmp_path):
    other_disk = tmp_path / "other disk"
    write_mp3(other_disk / "7" / "700.clip.mp3")
    (other_disk / "7" / "back").symlink_to(tree)  # a loop: back into the scanned tree
    (tree / "ext").symlink_to(other_disk)
    (tree / "1" / "2" / "up").symlink_to(tree / "1")  # a link back to an ancestor
    (tree / "again").symlink_to(tree / "1" / "2")  # a second way into a folder already scanned

    result = scan_mod.scan(tree, workers=1)
    # reached through the link, its path is the link's, relative to the root
    assert result.table.set_index("file_path")["track_7digitalid"].to_dict() == {
        "1/2/1234.clip.mp3": 1234,
        "5/6/5678.clip.mp3": 5678,
        "ext/7/700.clip.mp3": 700,
    }
    walked = result.rejects[result.rejects["reason"] == "already-walked"]
    assert walked.set_index("file_path")["detail"].to_dict() == {
        "1/2/up": "links to '1', a folder already walked",
        "again": "links to '1/2', a folder already walked",
        "ext/7/back": "links to '.', a folder already walked",
    }
    assert sorted(result.rejects["reason"]) == ["already-walked"] * 3 + ["empty-file", "not-audio"]


@pytest.fixture
def bad_entries(tree, monkeypatch):
    """Entries a scan cannot read, even as root (where chmod 000 stops nothing)."""
    (tree / "3").symlink_to(tree / "gone")  # a dangling link: maybe a folder on a missing disk
    (tree / "1" / "2" / "99.clip.mp3").symlink_to(tree / "gone.mp3")  # a dangling preview
    (tree / "loop").symlink_to(tree / "loop")  # a link to itself: ELOOP
    (tree / "8").mkdir()
    monkeypatch.chdir(tree / "8")  # a relative bind keeps the socket path short
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("77.clip.mp3")  # not a regular file: opening one (a FIFO) could block
        yield tree


def test_unreadable_entries_are_rejects_with_the_os_reason(bad_entries):
    result = scan_mod.scan(bad_entries, workers=1)
    assert sorted(result.table["track_7digitalid"]) == [1234, 5678]
    rejects = result.rejects.set_index("file_path")
    unreadable = rejects[rejects["reason"] == "unreadable"]
    gone = bad_entries / "gone"
    assert unreadable["detail"].to_dict() == {
        "1/2/99.clip.mp3": f"No such file or directory (link to '{gone}.mp3')",
        "3": f"No such file or directory (link to '{gone}')",
        "loop": f"Too many levels of symbolic links (link to '{bad_entries / 'loop'}')",
        "8/77.clip.mp3": "not a regular file",
    }
    assert rejects.loc["1/2/99.clip.mp3", "track_7digitalid"] == 99  # wrangle counts it
    assert pd.isna(rejects.loc["3", "track_7digitalid"])
    assert (unreadable[["file_size", "mtime_ns"]] == -1).all().all()  # unknown


def test_a_file_that_cannot_be_opened_is_unreadable_not_broken(tree):
    # a file removed between the walk and the read: an OS error, not a bad MP3
    entry = scan_mod.FileEntry("1/2/1235.clip.mp3", 1000, 0)
    row = scan_mod.probe(str(tree), entry, verify=False)
    assert row["reason"] == "unreadable"
    assert "No such file or directory" in row["detail"]


def test_rows_handed_to_checkpoint_resume_a_scan(tree):
    saved: list[dict] = []
    first = scan_mod.scan(tree, workers=1, verify=True, checkpoint=saved.extend)
    assert len(saved) == 4  # every file read, in batches, as it was read
    resumed = scan_mod.scan(tree, partial=scan_mod.rows_frame(saved[:3]), workers=1, verify=True)
    assert (resumed.reused, resumed.read) == (3, 1)
    pd.testing.assert_frame_equal(resumed.table, first.table)
    pd.testing.assert_frame_equal(resumed.rejects, first.rejects)


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


def test_status_sees_a_change_behind_a_symlinked_folder(tree, tmp_path):
    from orpheus.workspace import Workspace, fingerprint

    other_disk = tmp_path / "other disk"
    preview = write_mp3(other_disk / "700.clip.mp3")
    (tree / "ext").symlink_to(other_disk)
    (tmp_path / "link.mp3").symlink_to(preview)
    assert fingerprint(tmp_path / "link.mp3") == fingerprint(preview)  # the target's content

    ws = Workspace.create(tmp_path / "ws")
    assert orpheus("-w", str(ws.root), "scan", str(tree), "-j", "1").exit_code == 0
    assert ws.state("scan") == "ok"
    write_mp3(preview, seconds=2.0)  # changed on the other disk, behind the folder link
    assert ws.state("scan") == "stale"


def test_journal_saves_every_n_rows_and_restarts_for_other_params(tmp_path):
    from orpheus.tables import Journal

    columns = {"file_path": "str", "n": "int64"}
    folder = tmp_path / "journal"
    journal = Journal(folder, columns, params={"root": "a"}, every=3, seconds=3600)
    assert journal.open() is None
    journal.add([{"file_path": "x", "n": 1}, {"file_path": "y", "n": 2}])
    assert not list(folder.glob("*.parquet"))  # 2 rows < 3, and an hour has not passed
    journal.add([{"file_path": "z", "n": 3}])
    assert [c.name for c in folder.glob("*.parquet")] == ["000001.parquet"]

    again = Journal(folder, columns, params={"root": "a"}, every=1, seconds=3600)
    assert again.open()["file_path"].tolist() == ["x", "y", "z"]
    again.add([{"file_path": "w", "n": 4}])  # saved after the first chunk, not over it
    assert sorted(c.name for c in folder.glob("*.parquet")) == ["000001.parquet", "000002.parquet"]

    timed = Journal(folder, columns, params={"root": "a"}, every=10**9, seconds=0)
    assert len(timed.open()) == 4
    timed.add([{"file_path": "v", "n": 5}])  # `seconds` has passed (0): saved at once
    assert len(Journal(folder, columns, params={"root": "a"}, every=1, seconds=1).open()) == 5

    other = Journal(folder, columns, params={"root": "b"}, every=1, seconds=3600)
    assert other.open() is None  # another root's rows are dropped
    assert not list(folder.glob("*.parquet"))
    other.clear()
    assert not folder.exists()


# -- SIGKILL: the saved progress is re-used, and the result equals an uninterrupted run -------


def kill_once_saved(args: list, journal: Path, log: Path) -> None:
    """Run `orpheus ARGS` in a subprocess, wait until it has saved progress in `journal` (not a
    timer), SIGKILL it, and check that it was killed rather than finished."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orpheus", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=REPO,
            env={**os.environ, "ORPHEUS_WORKSPACE": ""},
        )
        safety_net = time.monotonic() + 600  # never reached unless something hangs
        try:
            while not list(journal.glob("*.parquet")):
                assert proc.poll() is None, f"ended before saving progress:\n{log.read_text()}"
                assert time.monotonic() < safety_net, "no progress saved in 10 minutes"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"finished before the kill:\n{log.read_text()}"


def saved_rows(journal: Path) -> int:
    return sum(len(pd.read_parquet(c)) for c in journal.glob("*.parquet"))


def assert_same_rows(a: Path, b: Path) -> None:
    """Two Parquet tables hold the same rows, every column, whatever their order."""
    left, right = pd.read_parquet(a), pd.read_parquet(b)
    key = ["file_path"]
    pd.testing.assert_frame_equal(
        left.sort_values(key, ignore_index=True), right.sort_values(key, ignore_index=True)
    )


def reused(stderr: str) -> int:
    return int(re.search(r"re-used (\d+)", stderr).group(1))


@pytest.mark.slow
def test_sigkill_during_scan_then_rerun_reuses_its_progress(example_corpus, tmp_path):
    from orpheus.workspace import Workspace

    tree = tmp_path / "7digital ü"
    sources = sorted((example_corpus / "7digital").rglob("*.clip.mp3"))
    n = 0
    for copy in range(4):  # ~140 files in batches of 16: `--verify -j 1` takes a few seconds
        (tree / str(copy)).mkdir(parents=True)
        for src in sources:
            os.link(src, tree / str(copy) / f"{9000000 + n}.clip.mp3")
            n += 1
    killed, clean = Workspace.create(tmp_path / "killed"), Workspace.create(tmp_path / "clean")
    killed.save_config(killed.config | {"scan": {"checkpoint_files": 1, "checkpoint_seconds": 60}})
    journal = killed.path("data/scan.journal")
    args = ["scan", tree, "--verify", "-j", "1"]

    kill_once_saved(["-w", killed.root, *args], journal, tmp_path / "killed.log")
    json.loads((killed.root / "manifest.json").read_text())  # never half-written
    saved = saved_rows(journal)
    assert 0 < saved < n
    rerun = orpheus("-w", str(killed.root), *map(str, args))
    assert rerun.exit_code == 0, rerun.output
    assert reused(rerun.stderr) == saved  # every file the killed run saved, and only those
    assert not journal.exists()
    assert orpheus("-w", str(clean.root), *map(str, args)).exit_code == 0

    for table in ("data/scan.parquet", "data/scan_rejects.parquet"):
        assert_same_rows(killed.path(table), clean.path(table))
    assert len(pd.read_parquet(clean.path("data/scan.parquet"))) > n // 2
    assert Workspace.open(killed.root).state("scan") == "ok"


def test_checkpoint_settings_are_config_keys_and_must_be_positive(tmp_path):
    from orpheus.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    w = str(ws.root)
    assert orpheus("-w", w, "config", "set", "scan.checkpoint_files", "100").exit_code == 0
    assert orpheus("-w", w, "config", "set", "silence.checkpoint_seconds", "0.5").exit_code == 0
    cfg = Workspace.open(ws.root).config
    assert (cfg["scan"]["checkpoint_files"], cfg["silence"]["checkpoint_seconds"]) == (100, 0.5)
    for key in ("scan.checkpoint_files", "scan.checkpoint_seconds", "silence.checkpoint_tracks"):
        bad = orpheus("-w", w, "config", "set", key, "0")
        assert bad.exit_code == 2 and "must be > 0" in bad.stderr, bad.output


def test_pool_chunks_cover_every_file_once_and_match_one_worker(tree):
    """Over two full chunks plus one file, read by a pool of 2: the rows handed to `checkpoint`
    come in chunks of at most CHUNK, cover every file exactly once, and the tables equal one
    worker's."""
    source = tree / audio_relpath(1234)
    n = 2 * scan_mod.CHUNK + 1
    for i in range(n):
        dest = tree / audio_relpath(2_000_000 + i)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, dest)
    batches: list[list[dict]] = []
    parallel = scan_mod.scan(tree, workers=2, checkpoint=batches.append)
    serial = scan_mod.scan(tree, workers=1)
    assert parallel.table.equals(serial.table) and parallel.rejects.equals(serial.rejects)
    assert len(parallel.table) == n + 2 and parallel.read == n + 4
    assert len(batches) == 3 and max(map(len, batches)) == scan_mod.CHUNK
    paths = [row["file_path"] for batch in batches for row in batch]
    assert sorted(paths) == sorted(set(paths)) and len(paths) == n + 4


# -- any tree: a library in several formats, MTG-Jamendo's NN/ID.mp3, and a tree with no audio --


def write_m4a(path: Path, seconds: float = 1.0, sr: int = 44100) -> Path:
    """A real AAC-in-MP4 file encoded by FFmpeg (PyAV): a format libsndfile cannot read."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=sr, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([y, y]), format="fltp", layout="stereo")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def blake_id(rel: str) -> str:
    """The documented rule, computed here independently: 'p' + 8 bytes of BLAKE2b, as hex."""
    import hashlib

    return "p" + hashlib.blake2b(rel.encode("utf-8"), digest_size=8).hexdigest()


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "Music"
    write_mp3(root / "Band/First Album/01 Opening.mp3", seconds=1.0)
    (root / "Solo Ünïcode/Live").mkdir(parents=True)
    sf.write(root / "Band/First Album/02 Ballad.flac", np.zeros((16000, 2)) + 0.1, 16000)
    sf.write(root / "Solo Ünïcode/Live/01 Set.ogg", np.zeros((22050, 1)) + 0.1, 22050)
    sf.write(root / "Solo Ünïcode/Live/02 Encore.wav", np.zeros((8000, 2)) + 0.1, 8000)
    write_m4a(root / "Band/Second/01 Single.m4a", seconds=1.5)
    (root / "Band/Second/02 Broken.m4a").write_bytes(b"not audio at all" * 100)
    (root / "Band/cover.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "Band/playlist.m3u").write_text("01 Opening.mp3\n")
    return root


def test_a_library_is_scanned_in_every_format_with_ids_from_its_paths(library):
    result = scan_mod.scan(library, workers=1)
    assert result.layout == "files"
    assert "track_7digitalid" not in result.table and "track_7digitalid" not in result.rejects
    table = result.table.set_index("file_path")
    assert sorted(table.index) == [
        "Band/First Album/01 Opening.mp3",
        "Band/First Album/02 Ballad.flac",
        "Band/Second/01 Single.m4a",
        "Solo Ünïcode/Live/01 Set.ogg",
        "Solo Ünïcode/Live/02 Encore.wav",
    ]  # the cover, the playlist and the broken file are not in it
    for rel, tid in table["track_id"].items():
        assert tid == blake_id(rel)
    assert table.loc["Band/First Album/02 Ballad.flac", "clip_length"] == pytest.approx(1.0)
    assert table.loc["Solo Ünïcode/Live/01 Set.ogg", "channels"] == 1
    assert table.loc["Solo Ünïcode/Live/02 Encore.wav", "sample_rate"] == 8000
    m4a = table.loc["Band/Second/01 Single.m4a"]
    assert (m4a["channels"], m4a["sample_rate"]) == (2, 44100)
    assert m4a["clip_length"] == pytest.approx(1.5, abs=0.1)  # AAC adds priming frames
    rejects = result.rejects.set_index("file_path")
    assert rejects["reason"].to_dict() == {"Band/Second/02 Broken.m4a": "not-audio"}
    assert rejects.loc["Band/Second/02 Broken.m4a", "track_id"] == blake_id(
        "Band/Second/02 Broken.m4a"
    )


def test_library_ids_are_the_same_after_the_root_moves(library, tmp_path):
    first = scan_mod.scan(library, workers=1).table
    moved = library.rename(tmp_path / "elsewhere")
    again = scan_mod.scan(moved, workers=1).table
    assert first["track_id"].tolist() == again["track_id"].tolist()


def test_a_jamendo_tree_gets_the_datasets_track_ids(tmp_path):
    root = tmp_path / "audio"
    write_mp3(root / "15/215.mp3")
    write_mp3(root / "00/1200.low.mp3")
    result = scan_mod.scan(root, workers=1)
    assert result.layout == "jamendo"
    ids = result.table.set_index("file_path")["track_id"].to_dict()
    assert ids == {"00/1200.low.mp3": "track_0001200", "15/215.mp3": "track_0000215"}


def test_a_7digital_tree_keeps_its_previews_only_unless_told_otherwise(tree):
    write_mp3(tree / "extra" / "notes.mp3")  # not a preview: a 7digital scan leaves it alone
    assert scan_mod.scan(tree, workers=1).layout == "7digital"
    assert "extra/notes.mp3" not in set(scan_mod.scan(tree, workers=1).table["file_path"])
    as_files = scan_mod.scan(tree, workers=1, layout="files")
    ids = as_files.table.set_index("file_path")["track_id"].to_dict()
    assert ids == {
        p: blake_id(p) for p in ("1/2/1234.clip.mp3", "5/6/5678.clip.mp3", "extra/notes.mp3")
    }


def test_a_tree_without_audio_is_an_error_naming_what_was_looked_for(tmp_path):
    from orpheus.workspace import Workspace

    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "readme.txt").write_text("no music here")
    with pytest.raises(OrpheusError, match="no audio files under"):
        scan_mod.scan(root, workers=1)
    ws = Workspace.create(tmp_path / "ws")
    done = orpheus("-w", str(ws.root), "scan", str(root), "-j", "1")
    assert done.exit_code == 2, done.output
    assert f"no audio files under {root}" in done.stderr
    assert ".flac" in done.stderr and ".mp3" in done.stderr and ".m4a" in done.stderr  # the hint
    assert "kept" not in done.output and Workspace.open(ws.root).entry("scan") is None


def test_scan_command_records_the_layout_and_says_what_comes_next(library, tmp_path):
    from orpheus.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    done = orpheus("-w", str(ws.root), "scan", str(library), "-j", "1")
    assert done.exit_code == 0, done.output
    entry = Workspace.open(ws.root).entry("scan")
    assert entry["params"]["layout"] == "files"
    assert entry["summary"] == {"rows": 5, "rejects": 1}
    assert "next: orpheus labels import --from files" in done.stderr
    table = pd.read_parquet(ws.path("data/scan.parquet"))
    assert list(table.columns)[0] == "track_id"
    again = orpheus("-w", str(ws.root), "scan", str(library), "-j", "1")
    assert "re-used 6" in again.stderr
    bad = orpheus("-w", str(ws.root), "scan", str(library), "--layout", "itunes")
    assert bad.exit_code == 2 and "unknown --layout" in bad.stderr
