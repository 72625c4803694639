"""`orpheus tags related` and `TagMatrix.related`: co-occurrence counts and lift, checked by hand
on a tiny Last.fm db and against plain SQL counts on the example corpus."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from cli_helpers import in_workspace

from orpheus.errors import OrpheusError
from orpheus.lastfm.db import LastFm
from orpheus.lastfm.matrix import TagMatrix, close_tags, related
from orpheus.workspace import Workspace

# Tagged tracks and their tags; T7 has none. TR1 carries `rock` on two rows (counted once).
TRACKS = {
    "TR1": ["rock", "indie", "rock"],
    "TR2": ["rock", "indie"],
    "TR3": ["rock", "indie", "pop"],
    "TR4": ["rock", "pop"],
    "TR5": ["pop", "jazz"],
    "TR6": ["jazz", "Rock", "a[/]b"],
    "TR7": [],
}
TAGS = ["rock", "indie", "pop", "jazz", "Rock", "unused", "a[/]b"]
# So: 6 tagged tracks; rock 4 (TR1-4), indie 3 (TR1-3), pop 3 (TR3-5), jazz 2 (TR5-6), Rock 1,
# a[/]b 1 (a name that is rich markup).
# Rows that point at no track must count nowhere: a NULL tid, a tid past the table, and the NULL
# placeholder track row 8 (old clean dbs keep rowids that way); and a row whose tag is missing.
STRAY_ROWS = [(None, 1), (99, 1), (8, 3), (1, 99)]


def make_db(
    path: Path,
    tracks: dict[str, list[str]] = TRACKS,
    tags: list[str] = TAGS,
    stray: list[tuple[int | None, int]] = STRAY_ROWS,
) -> Path:
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE tids(tid TEXT); CREATE TABLE tags(tag TEXT);"
        "CREATE TABLE tid_tag(tid INT, tag INT, val FLOAT);"
    )
    tids = list(tracks)
    con.executemany("INSERT INTO tids VALUES (?)", [(t,) for t in tids])
    con.execute("INSERT INTO tids VALUES (NULL)")  # rowid len(tids) + 1
    con.executemany("INSERT INTO tags VALUES (?)", [(t,) for t in tags])
    rows = [(tids.index(d) + 1, tags.index(g) + 1) for d, gs in tracks.items() for g in gs]
    rows += stray
    con.executemany("INSERT INTO tid_tag VALUES (?, ?, 50.0)", rows)
    con.commit()
    con.close()
    return path


def test_related_counts_and_lift_by_hand(tmp_path: Path) -> None:
    with LastFm(make_db(tmp_path / "raw.db")) as db:
        m = TagMatrix.from_db(db)
        rock = m.related("rock")
        pop = m.related("pop")
        assert related(db, "pop", top=2)["related"] == pop.head(2).to_dict("records")
        assert db.popularity().to_dict() == {t: m.count(t) for t in db.popularity().index}
    assert m.x.shape[0] == 6  # tagged tracks only: TR7 and the stray rows are not tracks
    # rock (4 tracks): indie on TR1-3 -> lift 3*6 / (4*3) = 1.5; pop on TR3-4 -> 2*6 / (4*3) = 1.
    assert rock["tag"].tolist() == ["indie", "pop"]  # jazz and Rock never meet rock
    assert rock["both"].tolist() == [3, 2] and rock["tracks"].tolist() == [3, 3]
    np.testing.assert_allclose(rock["share"], [3 / 4, 2 / 4], rtol=1e-12)
    np.testing.assert_allclose(rock["lift"], [1.5, 1.0], rtol=1e-12)
    # pop (3 tracks): rock 2 -> 2*6 / (3*4) = 1; jazz 1 -> 1*6 / (3*2) = 1; indie 1 -> 6/9.
    # Ties on `both` go to the higher lift: jazz before indie although indie is the older tag.
    assert pop["tag"].tolist() == ["rock", "jazz", "indie"]
    assert pop["both"].tolist() == [2, 1, 1] and pop["tracks"].tolist() == [4, 2, 3]
    np.testing.assert_allclose(pop["lift"], [1.0, 1.0, 6 / 9], rtol=1e-12)


def test_a_tag_on_no_track_relates_to_nothing(tmp_path: Path) -> None:
    with LastFm(make_db(tmp_path / "raw.db")) as db:
        result = related(db, "unused")
    assert (result["tracks"], result["total_tracks"], result["related"]) == (0, 6, [])


def test_unknown_tag_names_the_db_and_close_matches(tmp_path: Path) -> None:
    path = make_db(tmp_path / "raw.db")
    with LastFm(path) as db, pytest.raises(OrpheusError) as err:
        related(db, "ROCK")
    assert str(path) in err.value.message and "'ROCK'" in err.value.message
    assert err.value.hint == "did you mean 'rock', 'Rock'?"  # same up to case, in db order
    assert close_tags("jaz", TAGS) == ["jazz"]
    assert close_tags("qqqq", TAGS) == []


def test_explicit_zeros_are_not_tags() -> None:
    x = sp.coo_array(([1, 0, 2], ([0, 1, 1], [0, 0, 1])), shape=(2, 2))
    m = TagMatrix(x, ["a", "b"])
    assert m.x.toarray().tolist() == [[1, 0], [0, 1]]  # the stored 0 stays 0, the 2 becomes 1
    assert m.related("a").empty


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    Workspace.create(tmp_path / "ws")
    raw = make_db(tmp_path / "raw.db")
    assert (
        in_workspace(tmp_path / "ws", "config", "set", "paths.lastfm_db", str(raw)).exit_code == 0
    )
    return tmp_path / "ws"


def test_cli_json_and_table(ws: Path) -> None:
    r = in_workspace(ws, "tags", "related", "pop", "--json")  # no clean db: the input db, said so
    assert r.exit_code == 0, r.output
    assert "no clean db yet" in r.stderr
    out = json.loads(r.stdout)
    assert (out["tag"], out["tracks"], out["total_tracks"]) == ("pop", 3, 6)
    assert out["db"] == str((ws.parent / "raw.db").resolve())
    assert [(o["tag"], o["both"], o["tracks"]) for o in out["related"]] == [
        ("rock", 2, 4),
        ("jazz", 1, 2),
        ("indie", 1, 3),
    ]
    assert [o["lift"] for o in out["related"]] == pytest.approx([1.0, 1.0, 6 / 9], rel=1e-12)
    top = json.loads(in_workspace(ws, "tags", "related", "pop", "--top", "1", "--json").stdout)
    assert top["related"] == out["related"][:1]
    # Rich markup in a tag name is shown, not parsed (`[/]` used to end in an internal error).
    for args in (("related", "jazz"), ("related", "a[/]b"), ("top",), ("show", "TR6")):
        r = in_workspace(ws, "tags", *args)
        assert r.exit_code == 0 and "a[/]b" in r.stdout, (args, r.output)
    r = in_workspace(ws, "tags", "related", "unused")
    assert r.exit_code == 0 and "'unused'" in r.stdout and "rock" not in r.stdout
    assert in_workspace(ws, "tags", "related", "pop", "--top", "0").exit_code == 2


def test_cli_raw_or_clean_db(ws: Path) -> None:
    r = in_workspace(ws, "tags", "related", "rock", "--db", "clean")
    assert r.exit_code == 2 and "orpheus tags clean" in r.stderr
    clean = ws / "tags" / "clean_lastfm.db"  # stands in for a written clean db: same schema
    clean.parent.mkdir(exist_ok=True)
    make_db(clean, {"TR1": ["rock", "pop"], "TR2": ["rock"]}, ["rock", "pop"], stray=[])
    # In the clean db: rock 2 of 2 tracks, pop 1 -> lift 1*2 / (2*1) = 1.
    for args in ((), ("--db", "clean")):
        out = json.loads(in_workspace(ws, "tags", "related", "rock", "--json", *args).stdout)
        assert (out["db"], out["total_tracks"]) == (str(clean.resolve()), 2)
        assert out["related"] == [{"tag": "pop", "both": 1, "tracks": 1, "share": 0.5, "lift": 1.0}]
    out = json.loads(in_workspace(ws, "tags", "related", "rock", "--json", "--db", "raw").stdout)
    assert out["total_tracks"] == 6 and out["related"][0]["tag"] == "indie"
    assert in_workspace(ws, "tags", "related", "rock", "--db", "other").exit_code == 2


def test_cli_unknown_tag(ws: Path) -> None:
    r = in_workspace(ws, "tags", "related", "Jazz")
    assert r.exit_code == 2
    assert "'Jazz' is not a tag of" in r.stderr and "did you mean 'jazz'?" in r.stderr


def test_example_corpus_counts_equal_sql(example_corpus: Path, tmp_path: Path) -> None:
    """Every count `related` gives on the example's messy Last.fm db, against SQL COUNT DISTINCT."""
    db_path = shutil.copy(example_corpus / "lastfm_tags.db", tmp_path / "lastfm.db")
    con = sqlite3.connect(db_path)
    tracks_sql = (
        "SELECT COUNT(DISTINCT r.tid) FROM tid_tag r JOIN tids d ON d.rowid = r.tid"
        " JOIN tags g ON g.rowid = r.tag WHERE d.tid IS NOT NULL AND g.tag IS NOT NULL"
    )
    n = con.execute(tracks_sql).fetchone()[0]
    tag_sql = tracks_sql + " AND g.tag = ?"
    both_sql = (
        "SELECT COUNT(DISTINCT a.tid) FROM tid_tag a JOIN tid_tag b ON b.tid = a.tid"
        " JOIN tags ga ON ga.rowid = a.tag JOIN tags gb ON gb.rowid = b.tag"
        " JOIN tids d ON d.rowid = a.tid WHERE d.tid IS NOT NULL AND ga.tag = ? AND gb.tag = ?"
    )
    top = con.execute(
        "SELECT g.tag FROM tid_tag r JOIN tags g ON g.rowid = r.tag"
        " GROUP BY g.tag ORDER BY COUNT(DISTINCT r.tid) DESC, g.tag LIMIT 3"
    ).fetchall()
    with LastFm(db_path) as db:
        for (tag,) in top:
            result = related(db, tag)
            n_tag = con.execute(tag_sql, (tag,)).fetchone()[0]
            assert (result["tracks"], result["total_tracks"]) == (n_tag, n)
            assert result["related"], tag
            for row in result["related"]:
                both = con.execute(both_sql, (tag, row["tag"])).fetchone()[0]
                other = con.execute(tag_sql, (row["tag"],)).fetchone()[0]
                assert (row["both"], row["tracks"]) == (both, other)
                assert row["lift"] == pytest.approx(both * n / (n_tag * other), rel=1e-12)
            shared = con.execute(
                "SELECT COUNT(DISTINCT gb.tag) FROM tid_tag a JOIN tid_tag b ON b.tid = a.tid"
                " JOIN tags ga ON ga.rowid = a.tag JOIN tags gb ON gb.rowid = b.tag"
                " JOIN tids d ON d.rowid = a.tid WHERE d.tid IS NOT NULL"
                " AND ga.tag = ? AND gb.tag != ?",
                (tag, tag),
            ).fetchone()[0]
            assert len(result["related"]) == shared  # every co-occurring tag, none other
    con.close()
