"""Wrangle: every drop reason in its order, the duplicate rule, and the Last.fm checks."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
from test_msd import tid, write_summary

from orpheus import msd
from orpheus import wrangle as wr
from orpheus.errors import OrpheusError


def scan_table(ids: list[int], sizes: dict[int, int] | None = None) -> pd.DataFrame:
    sizes = sizes or {}
    return pd.DataFrame(
        {
            "track_7digitalid": np.array(ids, dtype="int64"),
            "file_path": [msd.audio_relpath(i) for i in ids],
            "file_size": [sizes.get(i, 1000) for i in ids],
            "mtime_ns": 0,
            "clip_length": [np.nan if sizes.get(i) == -1 else 30.0 for i in ids],
            "channels": 2,
            "sample_rate": 44100,
        }
    )


def lastfm_db(path, tagged: list[str], untagged: list[str] = ()) -> str:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE tids (tid TEXT)")
    con.execute("CREATE TABLE tags (tag TEXT)")
    con.execute("CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT)")
    con.execute("INSERT INTO tags VALUES ('rock')")
    for t in [*tagged, *untagged]:
        rowid = con.execute("INSERT INTO tids VALUES (?)", (t,)).lastrowid
        if t in tagged:
            con.execute("INSERT INTO tid_tag VALUES (?, 1, 100.0)", (rowid,))
    con.commit()
    con.close()
    return path


# 7digital id i <-> track id tid(i), except where a case below says otherwise.
SUMMARY = (
    [{"track_7digitalid": i, "track_id": tid(i)} for i in range(1, 13)]
    + [{"track_7digitalid": 5, "track_id": tid(50)}]  # 7digital id 5 maps to two tracks
    + [{"track_7digitalid": 60, "track_id": tid(6)}]  # track 6 has two 7digital ids
)


@pytest.fixture
def result(tmp_path):
    summary = msd.read_summary(write_summary(tmp_path / "s.h5", SUMMARY))
    scan = scan_table([1, 2, 3, 4, 5, 6, 60, 7, 8, 9, 10, 11, 12, 99], sizes={8: 0, 9: -1})
    tagged = [tid(i) for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12)]
    db = lastfm_db(tmp_path / "l.db", tagged, untagged=[tid(10)])
    duplicates = [[tid(1), tid(2), tid(900)], [tid(11), tid(901)], [tid(12), tid(3), tid(10)]]
    return wr.wrangle(
        scan,
        summary,
        mismatches=[tid(7)],
        tagged=wr.tagged_track_ids(db),
        duplicates=duplicates,
    )


def test_each_track_gets_the_first_reason_that_applies(result):
    reasons = dict(zip(result.rejects["track_7digitalid"], result.rejects["reason"], strict=True))
    assert reasons == {
        99: "no-summary-row",
        5: "ambiguous-id",
        6: "ambiguous-id",
        60: "ambiguous-id",
        7: "mismatch",
        8: "broken-audio",
        9: "broken-audio",
        10: "no-tags",
        2: "duplicate",
        12: "duplicate",
    }
    assert result.table["track_id"].tolist() == [tid(1), tid(3), tid(4), tid(11)]


def test_lone_duplicate_survives_and_choice_is_smallest(result):
    kept = set(result.table["track_id"])
    assert tid(11) in kept  # its only duplicate (901) is not in the dataset: kept
    assert tid(1) in kept and tid(3) in kept  # smallest present member of each group
    detail = result.rejects.set_index("track_7digitalid")["detail"]
    assert detail[12] == f"duplicate of {tid(3)}"


def test_output_columns(result):
    cols = list(result.table.columns)
    assert cols[:3] == ["track_id", "track_7digitalid", "file_path"]
    for c in ("song_id", "artist", "title", "release", "year", "duration", "file_size"):
        assert c in cols
    assert {"reason", "detail"} <= set(result.rejects.columns)
    assert result.counts() == {
        "no-summary-row": 1,
        "ambiguous-id": 4,  # 7digital id 5 joins two summary rows
        "mismatch": 1,
        "broken-audio": 2,
        "no-tags": 1,
        "duplicate": 2,
    }


def test_optional_steps_are_skipped(tmp_path):
    summary = msd.read_summary(write_summary(tmp_path / "s.h5", SUMMARY[:4]))
    out = wr.wrangle(scan_table([1, 2, 3, 4]), summary)
    assert out.table["track_id"].tolist() == [tid(1), tid(2), tid(3), tid(4)]
    assert out.rejects.empty and set(out.counts().values()) == {0}


def test_duplicate_groups_sharing_a_track_merge():
    ids = pd.Series([tid(3), tid(2), tid(1), tid(7)])
    keepers = wr.duplicate_keepers(ids, [[tid(3), tid(2)], [tid(2), tid(1)]])
    assert keepers.tolist()[:3] == [tid(1)] * 3
    assert pd.isna(keepers.iloc[3])


def test_lastfm_not_sqlite(tmp_path):
    bad = tmp_path / "l.db"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(OrpheusError, match="is not an SQLite database"):
        wr.tagged_track_ids(bad)


def test_lastfm_missing_tables(tmp_path):
    path = tmp_path / "l.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE tids (name TEXT)")
    con.close()
    with pytest.raises(OrpheusError) as err:
        wr.tagged_track_ids(path)
    assert "table `tids` has no column `tid`" in err.value.message
    with pytest.raises(OrpheusError, match="no Last.fm database at"):
        wr.tagged_track_ids(tmp_path / "none.db")


def test_lastfm_is_opened_read_only(tmp_path):
    path = lastfm_db(tmp_path / "l.db", [tid(1)])
    before = path.read_bytes()
    assert wr.tagged_track_ids(path).tolist() == [tid(1)]
    assert path.read_bytes() == before


# -- the command ------------------------------------------------------------------------------


def make_workspace(tmp_path, n: int = 6, seconds: float = 6.0):
    """A workspace whose config.json names a small corpus: n tagged tracks, 7digital id 100+i.

    Track 1 is a duplicate of track 0; track n-1 is listed as a mismatch.
    """
    from test_scan import write_mp3

    from orpheus.workspace import Workspace

    root = tmp_path / "audio"
    for i in range(n):
        write_mp3(root / msd.audio_relpath(100 + i), seconds=seconds)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_summary(
        inputs / "s.h5", [{"track_7digitalid": 100 + i, "track_id": tid(i)} for i in range(n)]
    )
    lastfm_db(inputs / "l.db", [tid(i) for i in range(n)])
    (inputs / "dup.txt").write_text(f"# header\n%1\n{tid(0)}\n{tid(1)}\n")
    (inputs / "mm.txt").write_text(f"ERROR: <SOAAAAA12AB0182807 {tid(n - 1)}> a != b\n")
    ws = Workspace.create(tmp_path / "ws")
    cfg = ws.config
    cfg["paths"] = {
        "audio_root": str(root),
        "msd_summary": str(inputs / "s.h5"),
        "lastfm_db": str(inputs / "l.db"),
        "duplicates": str(inputs / "dup.txt"),
        "mismatches": str(inputs / "mm.txt"),
    }
    ws.save_config(cfg)
    return ws, inputs


def test_wrangle_command_and_staleness(tmp_path):
    from test_scan import orpheus

    ws, inputs = make_workspace(tmp_path)
    w = str(ws.root)
    assert orpheus("-w", w, "scan", "-j", "1").exit_code == 0
    result = orpheus("-w", w, "wrangle")
    assert result.exit_code == 0, result.output
    assert "duplicate" in result.stdout and "4 of 6 kept" in result.stdout
    table = pd.read_parquet(ws.path("data/wrangle.parquet"))
    assert table["track_id"].tolist() == [tid(0), tid(2), tid(3), tid(4)]
    status = orpheus("-w", w, "status", "--json")
    states = {a["name"]: a["state"] for a in __import__("json").loads(status.stdout)["artifacts"]}
    assert states["scan"] == states["wrangle"] == "ok"

    (inputs / "dup.txt").write_text(f"# header\n%1\n{tid(0)}\n{tid(1)}\n{tid(2)}\n")
    assert ws.state("wrangle") == "stale"


def test_wrangle_command_skips_malformed_lines_with_exit_1(tmp_path):
    from test_scan import orpheus

    ws, inputs = make_workspace(tmp_path)
    (inputs / "mm.txt").write_text(f"no id here\n\nERROR: <SO1 {tid(5)}> a != b\nalso bad\n")
    assert orpheus("-w", str(ws.root), "scan", "-j", "1").exit_code == 0
    result = orpheus("-w", str(ws.root), "wrangle")
    assert result.exit_code == 1
    assert "mm.txt: skipped 2 malformed line(s): 1, 4" in result.stderr
    assert ws.state("wrangle") == "ok"


@pytest.mark.parametrize(
    ("flag", "content", "message"),
    [
        ("--msd-summary", b"\x89HDF garbage", "not an HDF5 file"),
        ("--lastfm-db", b"not sqlite" * 200, "is not an SQLite database"),
        ("--duplicates", None, "file not found"),
    ],
)
def test_wrangle_command_bad_inputs_are_one_line_errors(tmp_path, flag, content, message):
    from test_scan import orpheus

    ws, _ = make_workspace(tmp_path, n=2)
    w = str(ws.root)
    before = orpheus("-w", w, "wrangle")
    assert before.exit_code == 2 and "no scan yet" in before.stderr
    assert orpheus("-w", w, "scan", "-j", "1").exit_code == 0
    bad = tmp_path / "bad"
    if content is not None:
        bad.write_bytes(content)
    result = orpheus("-w", w, "wrangle", flag, str(bad))
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_wrangle_command_names_missing_summary_fields(tmp_path):
    from test_scan import orpheus

    ws, inputs = make_workspace(tmp_path, n=2)
    write_summary(
        inputs / "s.h5",
        [{"track_7digitalid": 100, "track_id": tid(0)}],
        drop=("analysis/songs.track_id",),
    )
    assert orpheus("-w", str(ws.root), "scan", "-j", "1").exit_code == 0
    result = orpheus("-w", str(ws.root), "wrangle")
    assert result.exit_code == 2
    assert "missing analysis/songs.track_id" in result.stderr


def test_scan_rejects_become_broken_audio_unless_claimed_earlier(tmp_path):
    summary = msd.read_summary(write_summary(tmp_path / "s.h5", SUMMARY[:4]))
    table = scan_table([1, 2])
    rejects = pd.DataFrame(
        {
            "track_7digitalid": pd.array([3, 4, 77, None], dtype="Int64"),
            "file_path": ["3.clip.mp3", "4.clip.mp3", "77.clip.mp3", "x.clip.mp3"],
            "file_size": [0, 10, 0, 5],
            "mtime_ns": 0,
            "reason": ["empty-file", "not-audio", "empty-file", "bad-name"],
            "detail": ["0 bytes", "can't sync", "0 bytes", "bad"],
        }
    )
    out = wr.wrangle(wr.scanned_files(table, rejects), summary, mismatches=[tid(4)])
    got = out.rejects.set_index("track_7digitalid")
    assert got["reason"].to_dict() == {77: "no-summary-row", 4: "mismatch", 3: "broken-audio"}
    assert got.loc[3, "detail"] == "scan: empty-file (0 bytes)"
    assert out.table["track_id"].tolist() == [tid(1), tid(2)]
    assert "scan_detail" not in out.table.columns and "scan_detail" not in out.rejects.columns
