"""The Last.fm query layer and the sparse co-occurrence matrix, on small hand-built dbs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from orpheus.errors import OrpheusError
from orpheus.lastfm.db import LastFm
from orpheus.lastfm.matrix import TagMatrix

# (tid, tag, val); TR3 has `rock` twice (a duplicate row); TR4 has no tags.
ROWS = [
    ("TR1", "rock", 100.0),
    ("TR1", "indie", 40.0),
    ("TR2", "rock", 60.0),
    ("TR2", "pop", 0.0),
    ("TR3", "rock", 10.0),
    ("TR3", "rock", 20.0),
    ("TR3", "indie", 80.0),
    ("TR3", "pop", 5.0),
]
TIDS = ["TR1", "TR2", "TR3", "TR4"]
TAGS = ["rock", "indie", "pop", "unused"]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "lastfm.db"
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE tids(tid TEXT); CREATE TABLE tags(tag TEXT);"
        "CREATE TABLE tid_tag(tid INT, tag INT, val FLOAT);"
    )
    con.executemany("INSERT INTO tids VALUES (?)", [(t,) for t in TIDS])
    con.executemany("INSERT INTO tags VALUES (?)", [(t,) for t in TAGS])
    con.executemany(
        "INSERT INTO tid_tag VALUES (?, ?, ?)",
        [(TIDS.index(d) + 1, TAGS.index(g) + 1, v) for d, g, v in ROWS],
    )
    con.commit()
    con.close()
    return path


def test_numbers_and_names(db_path: Path) -> None:
    with LastFm(db_path) as db:
        assert db.vocabulary() == TAGS
        assert (db.tag_to_num("pop"), db.num_to_tag(2), db.tag_to_num("jazz")) == (3, "indie", None)
        assert (db.tid_to_num("TR3"), db.num_to_tid(1), db.num_to_tid(99)) == (3, "TR1", None)
        assert db.tids() == TIDS


def test_per_track_and_per_tag(db_path: Path) -> None:
    with LastFm(db_path) as db:
        assert db.tags_of("TR3") == ["indie", "rock", "pop"]  # strongest first, rock once
        assert db.tags_with_val("TR3")[1] == ("rock", 20.0)  # max val of the duplicate rows
        assert db.tags_of("TR2", val=0) == ["rock"]  # strict: val 0 is not above 0
        assert db.tags_of("TR4") == [] and db.tags_of("nope") == []
        assert db.tracks_with("rock") == ["TR1", "TR2", "TR3"]
        assert db.tracks_with("pop", val=1) == ["TR3"]
        got = db.tags_of_tracks(["TR3", "TR1", "TR4", "TRX", "TR1"])
        assert got == {"TR3": ["rock", "indie", "pop"], "TR1": ["rock", "indie"], "TR4": [],
                       "TRX": []}  # fmt: skip
        assert db.tags_of_tracks(["TR2"], val=0) == {"TR2": ["rock"]}


def test_popularity_is_distinct_tracks(db_path: Path) -> None:
    with LastFm(db_path) as db:
        pop = db.popularity()
        assert pop.to_dict() == {"rock": 3, "indie": 2, "pop": 2}  # TR3's 2 rock rows count once
        assert list(pop.index) == ["rock", "indie", "pop"]  # ties keep tag-number order
        assert db.popularity(val=5).to_dict() == {"rock": 3, "indie": 2}
        assert db.tids_with_tags() == {"TR1", "TR2", "TR3"}
        assert db.tids_with_tags(val=90) == {"TR1"}
        stats = db.stats()
        assert (stats["rows"], stats["duplicate_rows"], stats["tagged_tracks"]) == (8, 1, 3)


def test_rows_as_arrays_and_nulls(db_path: Path) -> None:
    con = sqlite3.connect(db_path)
    con.execute("INSERT INTO tid_tag VALUES (NULL, 1, NULL)")
    con.commit()
    con.close()
    with LastFm(db_path) as db:
        tid, tag, val = db.rows()
        assert tid.dtype == np.int64 and tid.size == 9 and tid[-1] == -1 and np.isnan(val[-1])
        assert db.rows(val=50)[0].tolist() == [1, 2, 3]
        assert db.popularity()["rock"] == 3  # the NULL row points at no track


def test_read_only(db_path: Path) -> None:
    before = db_path.read_bytes()
    with LastFm(db_path) as db:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.conn.execute("DELETE FROM tid_tag")
        db.tags_of_tracks(["TR1"])  # its temp table lives outside the file
    assert db_path.read_bytes() == before


def test_schema_errors(tmp_path: Path) -> None:
    with pytest.raises(OrpheusError, match="no Last.fm database"):
        LastFm(tmp_path / "missing.db")
    bad = tmp_path / "bad.db"
    con = sqlite3.connect(bad)
    con.executescript(
        "CREATE TABLE tids(tid TEXT); CREATE TABLE tags(name TEXT);"
        "CREATE TABLE tid_tag(tid INT, tag INT, val FLOAT);"
    )
    con.close()
    with pytest.raises(OrpheusError, match="table `tags` has no column `tag`"):
        LastFm(bad)


def test_matrix_counts(db_path: Path) -> None:
    with LastFm(db_path) as db:
        m = TagMatrix.from_db(db, ["rock", "indie", "pop"])
    assert m.x.shape == (3, 3)
    assert m.count("rock") == 3 and m.tags_and(["rock", "indie"]) == 2
    assert m.tags_and(["indie", "pop"]) == 1 and m.tags_or(["indie", "pop"]) == 3
    assert m.with_one_without_many("rock", ["indie"]) == 1
    assert m.with_many_without_one(["rock", "indie"], "pop") == 1
    co = m.cooccurrence()
    assert co.tolist() == [[3, 2, 2], [2, 2, 1], [2, 1, 2]]
    c = m.correlation_matrix()
    assert c[1, 0] == 1.0 and c[0, 1] == pytest.approx(2 / 3)
    c3 = m.correlation_matrix_3d()
    assert c3[0, 1, 2] == 1.0 and c3[1, 2, 2] == 0.5  # rock -> indie or pop; indie -> pop
    assert m.are_equivalent(0.6) == [("rock", "indie"), ("rock", "pop")]
    assert ("indie", "rock") in m.all_tag_is(0.9) and ("rock", "indie") not in m.all_tag_is(0.9)
    assert m.all_tag_is_either(0.9) == [("rock", "indie", "pop")]
    with pytest.raises(OrpheusError, match="'jazz'"):
        m.count("jazz")
