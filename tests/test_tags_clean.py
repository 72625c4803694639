"""Tag cleaning (seed-inventory §2.6-2.7): every rule on its own, every fixed bug, bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from cli_helpers import in_workspace

from orpheus.errors import OrpheusError
from orpheus.lastfm import cleaning
from orpheus.lastfm.cleaning import CleaningParams, clean_database, load_lists, search_key
from orpheus.lastfm.db import LastFm
from orpheus.workspace import Workspace


def make_db(path: Path, tags: dict[str, int], extra: list[tuple[str, str, float]] = ()) -> Path:
    """A Last.fm-shaped db where raw tag `t` is on `tags[t]` distinct tracks (val 50).

    Tracks are numbered so that tags overlap on the first tracks; `extra` adds (tid, tag, val)
    rows verbatim (duplicates allowed).
    """
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE tids(tid TEXT); CREATE TABLE tags(tag TEXT);"
        "CREATE TABLE tid_tag(tid INT, tag INT, val FLOAT);"
    )
    names = list(dict.fromkeys([*tags, *(t for _, t, _ in extra)]))
    n_tracks = max([*tags.values(), 1]) + 5
    tids = [f"TR{i:016d}" for i in range(n_tracks)]
    tids += sorted({d for d, _, _ in extra} - set(tids))
    con.executemany("INSERT INTO tids(tid) VALUES (?)", [(t,) for t in tids])
    con.executemany("INSERT INTO tags(tag) VALUES (?)", [(t,) for t in names])
    tnum = {t: i + 1 for i, t in enumerate(tids)}
    gnum = {t: i + 1 for i, t in enumerate(names)}
    rows = [(i + 1, gnum[t], 50.0) for t, n in tags.items() for i in range(n)]
    rows += [(tnum[d], gnum[t], v) for d, t, v in extra]
    con.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


def tid(i: int) -> str:
    return f"TR{i:016d}"


# One tag per rule, thresholds scaled down: threshold 5 tracks, sub-threshold 2 tracks.
RULE_TAGS = {
    "rock": 20,  # a genre target (kept line of the genre list)
    "Rock": 3,  # clean_1 spelling -> rock
    "rocks": 2,  # plural stripping -> rock
    "rockss": 2,  # `ss` is not a plural -> no match
    "ROCKS": 2,  # plural stripping is case-sensitive (only a lowercase final s)
    "rock!": 1,  # below the sub-threshold: not in the search pool
    "Hip-Hop": 12,  # two targets collide: the more popular spelling names the clean tag
    "hip hop": 7,
    "hiphop": 2,
    "rnb": 11,  # target
    "r&b": 6,  # target with `&`: clean_2 `rnb` collides with rnb
    "RB": 2,  # clean_1 key of r&b (`rb`)
    "r and b": 2,  # clean_3 key of r&b (`randb`)
    "rhythm and blues": 5,  # target with ` and `, then combined into rnb
    "rhythm n blues": 2,  # clean_4 key of `rhythm and blues`
    "80s": 9,  # decade target
    "80-s": 2,  # clean_1 + plural (`80`)
    "1980's": 2,  # clean_5 (`1980s`)
    "80's": 2,  # `-80's` in the genre list: out of the search pool, so discarded (as the original)
    "1980s": 2,  # `-1980s` in the genre list: idem
    "00s": 8,
    "2000s": 6,  # clean_6 of 00s (`2000s`): collides with the more popular 00s
    "00": 2,  # merged by plural stripping, then dropped (bare number)
    "80": 2,  # idem
    "funk": 10,
    "funky": 6,  # combined into funk
    "Funky": 2,  # spelling of funky -> funk
    "seen live": 15,  # `-seen live` in the genre list: rejected although popular
    "Seen Live": 3,  # pool tag whose only match would be the rejected one
    "emo": 4,  # not rejected, but below the threshold
    "female": 9,  # vocal: canonical tag (even though `-female` is in its list)
    "female vocalists": 4,  # vocal list line
    "Female rebel society": 3,  # `-` line of the female list: rejected
    "male vocalist": 2,
    "Gangsta Rap": 2,
    "rapcore": 2,  # `-rapcore` in the rap list
    "rap": 6,
    "instrumental": 5,
}
PARAMS = CleaningParams(threshold=5, sub_threshold=2)


@pytest.fixture(scope="module")
def rules_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("rules")
    raw = make_db(d / "raw.db", RULE_TAGS)
    clean = d / "clean.db"
    clean_database(raw, clean, PARAMS)
    return raw, clean


def mapping(clean: Path) -> dict[str, str | None]:
    con = sqlite3.connect(clean)
    out = dict(con.execute("SELECT raw_tag, clean_tag FROM audit"))
    con.close()
    return out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("rock", "rock"),
        ("Rock", "rock"),
        ("rocks", "rock"),
        ("rockss", None),
        ("ROCKS", None),
        ("rock!", None),
        ("Hip-Hop", "hip-hop"),
        ("hip hop", "hip-hop"),
        ("hiphop", "hip-hop"),
        ("rnb", "rnb"),
        ("r&b", "rnb"),
        ("RB", "rnb"),
        ("r and b", "rnb"),
        ("rhythm and blues", "rnb"),
        ("rhythm n blues", "rnb"),
        ("80s", "80s"),
        ("80-s", "80s"),
        ("1980's", "80s"),
        ("80's", None),
        ("1980s", None),
        ("00s", "00s"),
        ("2000s", "00s"),
        ("00", None),
        ("80", None),
        ("funk", "funk"),
        ("funky", "funk"),
        ("Funky", "funk"),
        ("seen live", None),
        ("Seen Live", None),
        ("emo", None),
        ("female", "female"),
        ("female vocalists", "female"),
        ("Female rebel society", None),
        ("male vocalist", "male"),
        ("Gangsta Rap", "rap"),
        ("rapcore", None),
        ("rap", "rap"),
        ("instrumental", "instrumental"),
    ],
)
def test_each_rule(rules_db: tuple[Path, Path], raw: str, expected: str | None) -> None:
    assert mapping(rules_db[1])[raw] == expected


def test_rule_reasons_in_audit(rules_db: tuple[Path, Path]) -> None:
    with LastFm(rules_db[1]) as db:
        why = {r: cleaning.explain(db, r)["raw"] for r in RULE_TAGS}
    assert (why["rock"]["rule"], why["Rock"]["rule"]) == ("genre", "spelling")
    assert (why["Rock"]["source"], why["Rock"]["via"]) == ("clean_1", "rock")
    assert why["hip hop"]["rule"] == "collision" and why["hip hop"]["via"] == "Hip-Hop"
    assert why["r&b"]["source"] == "clean_2" and why["r and b"]["source"] == "clean_3"
    assert why["rhythm n blues"]["source"] == "clean_4"
    assert why["1980's"]["source"] == "clean_5" and why["2000s"]["source"] == "clean_6"
    assert why["rhythm and blues"]["rule"] == "combine" and why["funky"]["via"] == "funk"
    assert why["00"]["rule"] == "drop"
    assert why["seen live"]["rule"] == why["80's"]["rule"] == "rejected"
    assert why["rock!"]["rule"] == "below-sub-threshold"
    assert why["ROCKS"]["rule"] == "no-match"
    assert why["female vocalists"]["source"] == "female_list_filtered.txt"


def test_clean_db_schema_and_tags(rules_db: tuple[Path, Path]) -> None:
    with LastFm(rules_db[1]) as db:
        vocab = db.vocabulary()
        assert sorted(vocab) == sorted(
            [
                "rock",
                "hip-hop",
                "rnb",
                "80s",
                "00s",
                "funk",
                "female",
                "male",
                "rap",
                "instrumental",
            ]
        )
        pop = db.popularity()
        assert list(pop.index) == vocab  # tag numbers follow popularity
        assert pop["rock"] == 20 and pop["hip-hop"] == 12  # distinct tracks, merged spellings
        assert pop["rnb"] == 11 and pop["male"] == 2
        con = db.conn
        dup = con.execute(
            "SELECT COUNT(*) FROM (SELECT tid, tag FROM tid_tag"
            " GROUP BY tid, tag HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        assert dup == 0


def test_threshold_is_honoured(tmp_path: Path) -> None:
    raw = make_db(tmp_path / "raw.db", RULE_TAGS)
    clean_database(raw, tmp_path / "c4.db", CleaningParams(threshold=4, sub_threshold=2))
    assert mapping(tmp_path / "c4.db")["emo"] == "emo"
    clean_database(raw, tmp_path / "c9.db", CleaningParams(threshold=9, sub_threshold=2))
    m = mapping(tmp_path / "c9.db")
    # hip hop (7) is no longer a target; hiphop joins Hip-Hop's own clean_1 key anyway
    assert (m["hip hop"], m["hiphop"], m["r&b"], m["funky"]) == ("hip-hop", "hip-hop", None, None)
    # below 6 tracks `funky` is no target, so the default funky->funk combine is a no-op


def test_sub_threshold_is_honoured(tmp_path: Path) -> None:
    raw = make_db(tmp_path / "raw.db", RULE_TAGS)
    clean_database(raw, tmp_path / "c.db", CleaningParams(threshold=5, sub_threshold=1))
    assert mapping(tmp_path / "c.db")["rock!"] == "rock"
    clean_database(raw, tmp_path / "c3.db", CleaningParams(threshold=5, sub_threshold=3))
    assert mapping(tmp_path / "c3.db")["rocks"] is None


def test_popularity_counts_distinct_tracks_not_rows(tmp_path: Path) -> None:
    """Fixed bug: duplicate rows inflated popularity (jazz: 4 tracks, 8 rows, threshold 5)."""
    dup = [(tid(i), "jazz", 50.0) for i in range(4)] * 2
    raw = make_db(tmp_path / "raw.db", {"rock": 6}, dup)
    with LastFm(raw) as db:
        assert db.popularity()["jazz"] == 4
    clean_database(raw, tmp_path / "c.db", PARAMS)
    assert mapping(tmp_path / "c.db")["jazz"] is None


def test_val_threshold_and_max_val(tmp_path: Path) -> None:
    """Rows at or below --val go; merged spellings keep the max val and one row per track."""
    extra = [
        (tid(0), "hip hop", 80.0),  # track 0 also has Hip-Hop (val 50): one row, val 80
        (tid(1), "hip hop", 5.0),
        (tid(30), "Hip-Hop", 10.0),  # only this row: gone with --val 10
    ]
    raw = make_db(tmp_path / "raw.db", {"Hip-Hop": 6, "hip hop": 0}, extra)
    clean_database(raw, tmp_path / "c.db", CleaningParams(threshold=5, sub_threshold=1, val=10))
    with LastFm(tmp_path / "c.db") as db:
        assert db.tags_with_val(tid(0)) == [("hip-hop", 80.0)]
        assert db.tags_with_val(tid(1)) == [("hip-hop", 50.0)]
        assert db.tags_of(tid(30)) == []
        assert db.conn.execute("SELECT COUNT(*) FROM tid_tag").fetchone()[0] == 6


def test_user_combine_and_drop(tmp_path: Path) -> None:
    raw = make_db(tmp_path / "raw.db", RULE_TAGS)
    p = CleaningParams(threshold=5, sub_threshold=2, combine=(("rap", "hip-hop"),), drop=("80s",))
    clean_database(raw, tmp_path / "c.db", p)
    m = mapping(tmp_path / "c.db")
    assert m["rap"] == m["Gangsta Rap"] == m["hiphop"] == "hip-hop"  # more popular absorbs
    assert m["80s"] is None and m["1980's"] is None
    with LastFm(tmp_path / "c.db") as db:
        assert db.popularity()["hip-hop"] == 12
        assert cleaning.explain(db, "rap")["raw"]["rule"] == "combine"


def test_lists_option_and_plural_key() -> None:
    assert search_key(["Rocks", "ROCKS", "bass", "80's rock"], "clean_1") == [
        "rock",
        "rocks",
        "bass",
        "80srock",
    ]
    assert search_key(["80's rock", "00s"], "clean_5", plural=False) == ["1980srock", "1900s"]
    assert search_key(["r & b"], "clean_3") == ["randb"]
    lists = load_lists()
    assert (
        "female" not in lists.vocal["female"]
        and "Female rebel society" not in lists.vocal["female"]
    )
    assert "seen live" in lists.rejected and "rock" in lists.genre


# -- bad input: one-line errors, input never modified ---------------------------------------


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_missing_table_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    con = sqlite3.connect(bad)
    con.executescript("CREATE TABLE tids(tid TEXT); CREATE TABLE tags(tag TEXT);")
    con.close()
    before = digest(bad)
    with pytest.raises(OrpheusError, match="no table `tid_tag`"):
        clean_database(bad, tmp_path / "c.db")
    con = sqlite3.connect(bad)
    con.execute("CREATE TABLE tid_tag(tid INT, tag INT)")
    con.commit()
    con.close()
    before = digest(bad)
    with pytest.raises(OrpheusError, match="`tid_tag` has no column `val`"):
        clean_database(bad, tmp_path / "c.db")
    assert digest(bad) == before and not (tmp_path / "c.db").exists()


def test_empty_and_non_sqlite(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(OrpheusError, match="empty database"):
        clean_database(empty, tmp_path / "c.db")
    assert empty.read_bytes() == b""
    no_rows = make_db(tmp_path / "norows.db", {})
    with pytest.raises(OrpheusError, match="empty Last.fm db"):
        clean_database(no_rows, tmp_path / "c.db")
    text = tmp_path / "text.db"
    text.write_text("hello, not a database\n" * 100)
    with pytest.raises(OrpheusError, match="not an SQLite database"):
        clean_database(text, tmp_path / "c.db")


def test_list_folder_missing_file(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    shutil.copytree(Path(cleaning.__file__).parent / "lists", lists)
    (lists / "male_list_filtered.txt").unlink()
    with pytest.raises(OrpheusError, match="has no male_list_filtered.txt"):
        load_lists(lists)


def test_unknown_combine_and_drop(tmp_path: Path) -> None:
    raw = make_db(tmp_path / "raw.db", RULE_TAGS)
    before = digest(raw)
    for p in (
        CleaningParams(threshold=5, sub_threshold=2, combine=(("rock", "polka"),)),
        CleaningParams(threshold=5, sub_threshold=2, drop=("polka",)),
    ):
        with pytest.raises(OrpheusError, match="'polka' is not a clean tag"):
            clean_database(raw, tmp_path / "c.db", p)
    assert digest(raw) == before and not (tmp_path / "c.db").exists()


def test_refuses_to_overwrite_input(tmp_path: Path) -> None:
    raw = make_db(tmp_path / "raw.db", RULE_TAGS)
    with pytest.raises(OrpheusError, match="refusing to overwrite"):
        clean_database(raw, raw, PARAMS)


def test_no_tag_reaches_threshold(tmp_path: Path) -> None:
    raw = make_db(tmp_path / "raw.db", {"polka": 3})
    with pytest.raises(OrpheusError, match="no clean tags"):
        clean_database(raw, tmp_path / "c.db", CleaningParams(threshold=2000))


# -- the commands ------------------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    Workspace.create(tmp_path / "ws")
    make_db(tmp_path / "raw.db", RULE_TAGS)
    return tmp_path / "ws"


def test_clean_command_registers_and_queries(ws: Path) -> None:
    raw = ws.parent / "raw.db"
    assert in_workspace(ws, "config", "set", "paths.lastfm_db", str(raw)).exit_code == 0
    r = in_workspace(
        ws, "tags", "top", "-n", "2", "--json"
    )  # no clean db yet: the input db, said so
    assert r.exit_code == 0 and json.loads(r.stdout)[1] == {"rank": 2, "tag": "seen live",
                                                             "tracks": 15}  # fmt: skip
    r = in_workspace(ws, "tags", "clean", "--threshold", "5", "--sub-threshold", "2", "--json",
            "--combine", "rap,hip-hop", "--drop", "80s")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["clean_tags"] == 8
    entry = Workspace.open(ws).entry("clean-tags")
    assert entry["path"] == "tags/clean_lastfm.db" and entry["params"]["threshold"] == 5
    assert entry["params"]["combine"] == [["rap", "hip-hop"]] and "lastfm_db" in entry["inputs"]
    assert Workspace.open(ws).state("clean-tags") == "ok"
    top = json.loads(in_workspace(ws, "tags", "top", "--json").stdout)
    assert [t["tag"] for t in top[:3]] == ["rock", "hip-hop", "rnb"]
    show = json.loads(in_workspace(ws, "tags", "show", tid(0), "--json").stdout)
    assert {t["tag"] for t in show["tags"]} >= {"rock", "hip-hop", "female"}
    raw_show = json.loads(in_workspace(ws, "tags", "show", tid(0), "--raw", "--json").stdout)
    assert {t["tag"] for t in raw_show["tags"]} >= {"Hip-Hop", "hip hop", "80's"}
    stats = json.loads(in_workspace(ws, "tags", "stats", "--json").stdout)
    assert stats["duplicate_rows"] == 0 and stats["cleaning"]["params"]["drop"] == ["80s"]
    why = json.loads(in_workspace(ws, "tags", "explain", "hip hop", "--json").stdout)
    assert why["raw"]["clean_tag"] == "hip-hop" and why["raw"]["rule"] == "collision"
    r = in_workspace(ws, "tags", "explain", "hip hop")
    assert r.exit_code == 0 and "Hip-Hop" in r.stdout
    assert in_workspace(ws, "tags", "explain", "no such tag").exit_code == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--combine", "rock,polka"], "'polka' is not a clean tag"),
        (["--drop", "polka"], "'polka' is not a clean tag"),
        (["--lists", "nowhere"], "tag list folder nowhere does not exist"),
        (["--lastfm-db", "missing.db"], "file not found"),
        (["--threshold", "0"], "--threshold must be >= 1"),
    ],
)
def test_clean_command_bad_input(ws: Path, args: list[str], message: str) -> None:
    raw = ws.parent / "raw.db"
    before = digest(raw)
    r = in_workspace(ws, "tags", "clean", "--lastfm-db", str(raw), "--threshold", "5", *args)
    assert r.exit_code == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert digest(raw) == before and not (ws / "tags" / "clean_lastfm.db").exists()


def test_commands_without_any_db(ws: Path) -> None:
    r = in_workspace(ws, "tags", "top")
    assert r.exit_code == 2 and "no Last.fm db given" in r.stderr
    assert in_workspace(ws, "tags", "explain", "rock").exit_code == 2


# -- the example corpus --------------------------------------------------------------------------


def test_example_corpus_recovers_truth(example_corpus: Path, tmp_path: Path) -> None:
    """The clean db holds exactly truth.json's clean tags per track; variants find their tag."""
    truth = json.loads((example_corpus / "truth.json").read_text(encoding="utf-8"))
    cfg = truth["config"]["tags-cleaning"]
    params = CleaningParams(cfg["threshold"], cfg["sub_threshold"], cfg["val"])
    raw = example_corpus / "lastfm_tags.db"
    before = digest(raw)
    clean_database(raw, tmp_path / "clean.db", params)
    expected = {t: sorted(tags) for t, tags in truth["expected"]["clean_tags"].items()}
    with LastFm(tmp_path / "clean.db") as db:
        got = {t: sorted(tags) for t, tags in db.tags_of_tracks(expected).items()}
        assert set(db.tids()) == {t for t, tags in expected.items() if tags}
        audit = dict(db.conn.execute("SELECT raw_tag, clean_tag FROM audit WHERE tracks >= ?",
                                     (params.sub_threshold,)).fetchall())  # fmt: skip
    assert {t: v for t, v in got.items() if v != expected[t]} == {}
    canonical = {"hip hop": "hip-hop", "hiphop": "hip-hop", "Hip Hop": "hip-hop",
                 "RnB": "rnb", "rhythm and blues": "rnb", "funky": "funk", "2000s": "00s",
                 "90's": "90s", "chill out": "chillout", "Pop-Rock": "pop rock"}  # fmt: skip
    present = {k: v for k, v in canonical.items() if k in audit}
    assert present and {k: audit[k] for k in present} == present
    assert digest(raw) == before
