"""`orpheus labels import`: every label source through the pipeline, the splits, bad input.

Fixtures are written here in each source's format (MTG-Jamendo's own files are CC BY-NC-SA and
not shipped), with the audio of the example corpus linked or copied into each layout.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import in_workspace, ok, orpheus
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TCON, TMOO, TPE1, TXXX

from orpheus.labels.common import path_id
from orpheus.records import split_of
from orpheus.tagfields import ORPHEUS_FIELD, read_fields
from orpheus.workspace import Workspace

LOUD = {"metal", "rock", "electronic", "hip-hop", "pop"}  # the other styles are "calm"
SPLIT = [50, 25, 25]  # 21 kept tracks: every split holds a few of each tag
TINY = {  # a tiny, fast model: one epoch of a few steps
    "model": {"n_filters": 2, "n_dense_units": 8, "n_backend_filters": 8},
    "model-training": {"window_length": 1, "batch_size": 4, "epochs": 1, "split": SPLIT},
    "tags": {"top": None, "with": [], "without": []},
}


def kept_tracks(corpus: Path) -> list[dict]:
    """The example corpus's tracks that silence keeps, with their audio file and style."""
    truth = json.loads((corpus / "truth.json").read_text())
    out = []
    for t in truth["tracks"]:
        if t["expected"]["silence"] == "keep":
            audio = corpus / "7digital" / t["file_path"]
            out.append({"tid": t["track_id"], "audio": audio, "style": t["style"]})
    assert len(out) >= 20  # the corpus is built with every style kept at least twice
    return out


def artists_covering_splits(n: int) -> list[str]:
    """n artist names whose hash splits cover train, valid and test (two each at least)."""
    names, seen = [], {"train": 0, "valid": 0, "test": 0}
    i = 0
    while len(names) < n or min(seen.values()) < 2:
        name = f"artist {i}"
        i += 1
        where = split_of(name, SPLIT)
        if seen[where] >= 2 and min(seen.values()) < 2 and len(names) >= n - 2:
            continue
        seen[where] += 1
        names.append(name)
    return names


def new_workspace(root: Path) -> Path:
    ws = root / "ws"
    ok(orpheus("init", ws))
    w = Workspace.open(ws)
    cfg = w.config
    for section, values in TINY.items():
        cfg[section].update(values)
    w.save_config(cfg)
    return ws


def run_pipeline(ws: Path) -> dict:
    """silence -> tags clean -> tfrecords build -> train -> test; the test metrics."""
    for args in (
        ["silence", "-j", "1"],  # no process pool inside the test process: pools have their tests
        ["tags", "clean", "--min-tracks", "2"],
        ["tfrecords", "build", "-j", "1", "--shards", "3"],
        ["train", "--run-name", "r", "--frontend", "log-mel"],
        ["test", "--run", "r", "--json"],
    ):
        done = in_workspace(ws, *args)
        assert done.exit_code == 0, (args, done.output[-3000:])
    return json.loads(done.stdout[done.stdout.index("{") :])


def link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(src)


# -- the sources, end to end ------------------------------------------------------------------


@pytest.mark.slow
def test_csv_import_runs_the_whole_pipeline_with_an_artist_split(example_corpus, tmp_path):
    tracks = kept_tracks(example_corpus)
    artists = artists_covering_splits(7)
    lines = ["path,tags,artist"]
    for i, t in enumerate(tracks):
        rel = f"music/{i:02d} {t['style']}.mp3"
        link(t["audio"], tmp_path / "lib" / rel)
        tag = "loud" if t["style"] in LOUD else "calm"
        lines.append(f"{rel},{tag};{t['style']}:0.5,{artists[i % len(artists)]}")
    lines.append(lines[1])  # a duplicate row: its two labels are counted skips
    (tmp_path / "lib/labels.csv").write_text("\n".join(lines) + "\n")
    ws = new_workspace(tmp_path)

    done = in_workspace(ws, "labels", "import", "--from", "csv", str(tmp_path / "lib/labels.csv"))
    assert done.exit_code == 0, done.output
    assert "duplicate" in done.stdout
    with sqlite3.connect(ws / "tags/labels.db") as con:
        vals = dict(
            con.execute(
                "SELECT g.tag, max(r.val) FROM tid_tag r JOIN tags g ON g.rowid = r.tag"
                " GROUP BY g.tag"
            )
        )
    assert vals["loud"] == 100.0 and vals["rock"] == 50.0  # weight 0.5 of at most 1 -> 50
    table = pd.read_parquet(ws / "data/labels.parquet")
    assert table["track_id"].iloc[0] == path_id(table["file_path"].iloc[0])
    entry = Workspace.open(ws).entry("labels")
    assert entry["params"]["source"] == "csv" and entry["params"]["split_source"] == "artist"
    status = in_workspace(ws, "status", "--json")
    assert json.loads(status.stdout)["next"] == "orpheus silence"

    result = run_pipeline(ws)
    assert set(result["per_tag"]) >= {"loud", "calm"}
    index = json.loads((ws / "tfrecords/log-mel/index.json").read_text())
    split_of_tid = {tid: s["split"] for s in index["shards"] for tid in s["tids"]}
    artist_splits = table.assign(split=table["track_id"].map(split_of_tid)).groupby("artist")
    assert (artist_splits["split"].nunique() == 1).all()  # no artist in two splits
    assert set(split_of_tid.values()) == {"train", "valid", "test"}
    tf_entry = Workspace.open(ws).entry("tfrecords/log-mel")
    assert tf_entry["params"]["split_source"] == "artist"


@pytest.mark.slow
def test_jamendo_split_folder_gives_the_split_and_keeps_categories(example_corpus, tmp_path):
    tracks = kept_tracks(example_corpus)
    header = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
    files = {"train": [header], "validation": [header], "test": [header]}
    want = {}
    for i, t in enumerate(tracks):
        tid, rel = f"track_{i:07d}", f"{i % 100:02d}/{i}.mp3"
        link(t["audio"], tmp_path / "audio" / rel)
        part = ("train", "train", "validation", "test")[i % 4]
        want[tid] = {"validation": "valid"}.get(part, part)
        mood = "mood/theme---happy" if t["style"] in LOUD else "mood/theme---sad"
        files[part].append(
            f"{tid}\tartist_{i:06d}\talbum_{i:06d}\t{rel}\t30.0\tgenre---{t['style']}\t{mood}"
        )
    split_dir = tmp_path / "splits/split-0"
    split_dir.mkdir(parents=True)
    for part, lines in files.items():  # the published files end their lines with CRLF
        (split_dir / f"autotagging-{part}.tsv").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    ws = new_workspace(tmp_path)

    done = in_workspace(
        ws,
        "labels",
        "import",
        "--from",
        "jamendo",
        str(split_dir),
        "--audio-root",
        str(tmp_path / "audio"),
    )
    assert done.exit_code == 0, done.output
    status = json.loads(in_workspace(ws, "status", "--json").stdout)
    assert status["next"] == "orpheus silence"
    assert "wrangle" not in {a["name"] for a in status["artifacts"]}
    result = run_pipeline(ws)
    assert "mood/theme---happy" in result["per_tag"]  # the category survives tags clean
    index = json.loads((ws / "tfrecords/log-mel/index.json").read_text())
    got = {tid: s["split"] for s in index["shards"] for tid in s["tids"]}
    assert got == want  # the dataset's own split, not the hash
    assert Workspace.open(ws).entry("tfrecords/log-mel")["params"]["split_source"] == "dataset"


@pytest.mark.slow
def test_mtat_annotations_run_the_whole_pipeline(example_corpus, tmp_path):
    tracks = kept_tracks(example_corpus)
    tags = ["guitar", "loud", "calm"]
    lines = ["\t".join(f'"{c}"' for c in ["clip_id", *tags, "mp3_path"])]
    for i, t in enumerate(tracks):
        rel = f"{i % 16:x}/band_{i % 7}-album-{i:02d}-song-30-59.mp3"
        link(t["audio"], tmp_path / "mtat" / rel)
        loud = t["style"] in LOUD
        flags = [
            "1" if t["style"] in {"rock", "metal", "folk"} else "0",
            str(int(loud)),
            str(int(not loud)),
        ]
        lines.append("\t".join(f'"{v}"' for v in [str(i), *flags, rel]))
    lines.append("\t".join(f'"{v}"' for v in ["999", "0", "0", "0", "0/none-a-01-b-0-29.mp3"]))
    link(tracks[0]["audio"], tmp_path / "mtat/0/none-a-01-b-0-29.mp3")
    (tmp_path / "mtat/annotations_final.csv").write_text("\n".join(lines) + "\n")
    ws = new_workspace(tmp_path)

    done = in_workspace(
        ws, "labels", "import", "--from", "mtat", str(tmp_path / "mtat/annotations_final.csv")
    )
    assert done.exit_code == 0, done.output
    assert "no-tags" in done.stdout  # clip 999 has no tag
    table = pd.read_parquet(ws / "data/labels.parquet")
    assert "999" not in set(table["track_id"]) and set(table["artist"]) == {
        f"band_{k}" for k in range(7)
    }
    result = run_pipeline(ws)
    assert set(result["per_tag"]) >= {"loud", "calm"}


def write_library(example_corpus: Path, root: Path) -> list[dict]:
    """An `Artist/NN Title.ext` library with genre and mood in ID3v2.4, ID3v2.3 and FLAC tags."""
    import soundfile as sf

    out = []
    for i, t in enumerate(kept_tracks(example_corpus)):
        artist = f"Band {i % 7}"
        genre = "Loud" if t["style"] in LOUD else "Calm"
        if i % 5 == 4:  # a FLAC with Vorbis comments, genre repeated per value
            path = root / artist / f"{i:02d} {t['style']}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            y, sr = sf.read(t["audio"])
            sf.write(path, y, sr, format="FLAC")
            f = FLAC(path)
            f["GENRE"] = [genre, t["style"].title()]
            f["ARTIST"] = artist
            f.save()
        else:
            path = root / artist / f"{i:02d} {t['style']}.mp3"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(t["audio"], path)
            tags = ID3()
            tags.add(TPE1(encoding=3, text=[artist]))
            if i % 2:
                tags.add(TCON(encoding=3, text=[genre, t["style"]]))
                tags.add(TMOO(encoding=3, text=["  Energetic "]))
                tags.save(path, v2_version=4)
            else:  # ID3v2.3: values joined by '/', mood in TXXX:MOOD
                tags.add(TCON(encoding=3, text=[f"{genre}/{t['style']}"]))
                tags.add(TXXX(encoding=3, desc="MOOD", text=["energetic"]))
                tags.save(path, v2_version=3)
        out.append({"path": path, "genre": genre.lower(), "style": t["style"]})
    return out


@pytest.mark.slow
def test_file_tags_run_the_whole_pipeline(example_corpus, tmp_path):
    library = write_library(example_corpus, tmp_path / "Music")
    ws = new_workspace(tmp_path)
    done = in_workspace(ws, "labels", "import", "--from", "files", str(tmp_path / "Music"))
    assert done.exit_code == 0, done.output
    with sqlite3.connect(ws / "tags/labels.db") as con:
        n = con.execute("SELECT count(*) FROM tids").fetchone()[0]
        tags = {r[0] for r in con.execute("SELECT tag FROM tags")}
    assert n == len(library)
    assert {"genre---loud", "genre---calm", "mood---energetic", "genre---rock"} <= tags
    assert Workspace.open(ws).entry("labels")["params"]["split_source"] == "artist"
    result = run_pipeline(ws)
    assert {"genre---loud", "genre---calm"} <= set(result["per_tag"])


# -- tag fields --------------------------------------------------------------------------------


def test_tag_fields_split_normalise_and_skip_orpheus_values(example_corpus, tmp_path):
    audio = kept_tracks(example_corpus)[0]["audio"]
    v23 = tmp_path / "v23.mp3"
    shutil.copyfile(audio, v23)
    tags = ID3()
    tags.add(TCON(encoding=3, text=["Hip-Hop/Jazz;  Soul "]))
    tags.add(TXXX(encoding=3, desc="MOOD", text=["Happy"]))
    tags.add(TXXX(encoding=3, desc=ORPHEUS_FIELD, text=["jazz"]))  # a value Orpheus wrote
    tags.save(v23, v2_version=3)
    got = read_fields(v23)
    assert got["genre"] == ["hip-hop", "soul"] and got["mood"] == ["happy"]
    v24 = tmp_path / "v24.mp3"
    shutil.copyfile(audio, v24)
    tags = ID3()
    tags.add(TCON(encoding=3, text=["(17)", "AC/DC Rock"]))  # v2.4 never splits on '/'
    tags.save(v24, v2_version=4)
    assert read_fields(v24)["genre"] == ["rock", "ac/dc rock"]


# -- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def lib(example_corpus, tmp_path):
    """A workspace and an audio root with three linked tracks a.mp3, b.mp3, c.mp3."""
    audio = kept_tracks(example_corpus)
    for name, t in zip("abc", audio, strict=False):
        link(t["audio"], tmp_path / "lib" / f"{name}.mp3")
    return new_workspace(tmp_path), tmp_path / "lib"


def import_csv(ws: Path, lib: Path, data: bytes, name: str = "labels.csv"):
    (lib / name).write_bytes(data)
    return in_workspace(ws, "labels", "import", "--from", "csv", str(lib / name))


def test_missing_column_is_a_one_line_error_naming_the_file(lib):
    ws, root = lib
    done = import_csv(ws, root, b"file,tags\na.mp3,rock\n")
    assert done.exit_code == 2
    assert "labels.csv: no column 'path'" in done.output and "Traceback" not in done.output


def test_non_utf8_file_is_a_one_line_error(lib):
    ws, root = lib
    done = import_csv(ws, root, "path,tags\na.mp3,caf\u00e9\n".encode("latin-1"))
    assert done.exit_code == 2 and "is not UTF-8 (byte 0xe9 on line 2)" in done.output


def test_crlf_and_bom_read_like_plain_utf8(lib):
    ws, root = lib
    done = import_csv(ws, root, "\ufeffpath,tags\r\na.mp3,rock;jazz\r\nb.mp3,rock\r\n".encode())
    assert done.exit_code == 0, done.output
    table = pd.read_parquet(ws / "data/labels.parquet")
    assert sorted(table["file_path"]) == ["a.mp3", "b.mp3"]
    with sqlite3.connect(ws / "tags/labels.db") as con:
        assert {r[0] for r in con.execute("SELECT tag FROM tags")} == {"rock", "jazz"}


def test_missing_outside_untagged_duplicate_and_short_rows_are_counted(lib):
    ws, root = lib
    rows = [
        "path,tags",
        "a.mp3,rock",
        "a.mp3,rock",  # duplicate label
        "a.mp3,jazz",  # a repeated row adds a tag
        "gone.mp3,rock",  # missing audio
        "../outside.mp3,rock",  # leaves the root
        "/etc/passwd,rock",  # absolute, outside
        "b.mp3,",  # no tags
        "c.mp3",  # too few fields
    ]
    done = import_csv(ws, root, ("\n".join(rows) + "\n").encode())
    assert done.exit_code == 1, done.output  # malformed or refused rows: partial
    entry = Workspace.open(ws).entry("labels")
    assert entry["summary"] == {"tracks": 1, "tags": 2, "rows": 2, "skipped": 6}
    for reason in ("duplicate", "missing-audio", "outside-root", "no-tags", "bad-row"):
        assert reason in done.stdout


def test_jamendo_wrong_header_and_unreadable_tag_block(lib, tmp_path):
    ws, root = lib
    tsv = tmp_path / "autotagging.tsv"
    tsv.write_text("ID\tPATH\ttags\n1\ta.mp3\tgenre---rock\n")
    done = in_workspace(
        ws, "labels", "import", "--from", "jamendo", str(tsv), "--audio-root", str(root)
    )
    assert done.exit_code == 2 and "autotagging.tsv: not an MTG-Jamendo TSV" in done.output
    tagged = root / "tagged.mp3"
    shutil.copyfile(root / "a.mp3", tagged)
    ID3().save(tagged)
    tags = ID3(tagged)
    tags.add(TCON(encoding=3, text=["Rock"]))
    tags.save()
    broken = root / "broken.mp3"
    broken.write_bytes(b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\x00" * 64)  # a tag size past the end
    done = in_workspace(ws, "labels", "import", "--from", "files", str(root))
    assert done.exit_code == 1, done.output
    assert "unreadable-tags" in done.stdout and "broken.mp3" in done.stdout


# -- cleaning profile and split report ----------------------------------------------------------


def test_passthrough_profile_merges_spellings_keeps_categories_and_needs_min_tracks(tmp_path):
    from orpheus.labels.common import save_tag_rows
    from orpheus.lastfm.cleaning import CleaningParams, clean_database
    from orpheus.lastfm.db import LastFm

    rows = [("t1", "Hip-Hop"), ("t2", "Hip-Hop"), ("t3", "hip hop"), ("t1", "hip hop")]
    rows += [("t1", "mood/theme---happy"), ("t2", "mood/theme---happy"), ("t4", "rock")]
    frame = pd.DataFrame(rows, columns=["track_id", "tag"]).assign(val=100.0)
    save_tag_rows(tmp_path / "raw.db", frame)
    params = CleaningParams(profile="passthrough", min_tracks=2)
    clean_database(tmp_path / "raw.db", tmp_path / "clean.db", params)
    with LastFm(tmp_path / "clean.db") as db:
        assert db.popularity().to_dict() == {"hip-hop": 3, "mood/theme---happy": 2}
        audit = {r[0]: r[1:] for r in db.conn.execute("SELECT raw_tag, rule, clean_tag FROM audit")}
    assert audit["hip hop"] == ("spelling", "hip-hop")
    assert audit["rock"] == ("kept", None)  # 1 track < 2: kept by the rules, then dropped


def test_tfrecords_build_reports_empty_splits_with_a_hint(lib):
    ws, root = lib
    ids, i = [], 0
    while len(ids) < 3:  # track IDs that all hash into train
        if split_of(f"t{i}", SPLIT) == "train":
            ids.append(f"t{i}")
        i += 1
    rows = [f"{name}.mp3,rock,{tid}" for name, tid in zip("abc", ids, strict=True)]
    done = import_csv(ws, root, ("path,tags,track_id\n" + "\n".join(rows) + "\n").encode())
    assert done.exit_code == 0, done.output
    for args in (["silence", "-j", "1"], ["tags", "clean", "--min-tracks", "1"]):
        assert in_workspace(ws, *args).exit_code == 0
    done = in_workspace(ws, "tfrecords", "build", "-j", "1")
    assert done.exit_code == 0, done.output
    assert "the valid split is empty" in done.output and "the test split is empty" in done.output
    assert "hint: more tracks, a larger share" in done.output


def test_jamendo_split_folder_means_its_full_set_or_its_only_one(tmp_path):
    from orpheus.errors import OrpheusError
    from orpheus.labels.jamendo import expand

    folder = tmp_path / "split-0"
    folder.mkdir()
    for subset in ("autotagging_top50tags", "autotagging_genre"):
        for part in ("train", "validation", "test"):
            (folder / f"{subset}-{part}.tsv").touch()
    with pytest.raises(OrpheusError, match="found 2"):
        expand([folder])
    for part in ("train", "validation", "test"):
        (folder / f"autotagging-{part}.tsv").touch()
    names = sorted(p.name for p in expand([folder]))
    assert names == ["autotagging-test.tsv", "autotagging-train.tsv", "autotagging-validation.tsv"]


# -- the example corpus in MTG-Jamendo's shape and as a library, as `init --example` writes it --


def laid_out(example_corpus: Path, tmp_path: Path, layout: str) -> tuple[Path, dict]:
    """A workspace pointed at the example corpus laid out as `layout`, its labels imported."""
    from orpheus.example.layouts import import_command, use_example, write_layout

    folder = tmp_path / "example"
    folder.mkdir()
    truth = write_layout(example_corpus, folder, layout)
    ws = new_workspace(tmp_path)
    use_example(Workspace.open(ws), folder, truth)
    w = Workspace.open(ws)
    cfg = w.config
    for section, values in TINY.items():  # the tiny model again, over the example's config
        cfg[section].update(values)
    w.save_config(cfg)
    done = in_workspace(ws, *import_command(tmp_path, layout))
    assert done.exit_code == 0, done.output
    return ws, truth


@pytest.mark.slow
def test_example_in_jamendo_shape_runs_the_pipeline_on_its_published_split(
    example_corpus, tmp_path
):
    ws, truth = laid_out(example_corpus, tmp_path, "jamendo")
    table = pd.read_parquet(ws / "data/labels.parquet")
    tagged = {t["track_id"]: t for t in truth["tracks"] if t["tags"]}
    assert sorted(table["track_id"]) == sorted(tagged)
    assert Workspace.open(ws).entry("labels")["params"]["split_source"] == "dataset"
    result = run_pipeline(ws)
    assert any(t.startswith("mood/theme---") for t in result["per_tag"])
    assert any(t.startswith("genre---") for t in result["per_tag"])
    index = json.loads((ws / "tfrecords/log-mel/index.json").read_text())
    got = {tid: s["split"] for s in index["shards"] for tid in s["tids"]}
    assert got == {tid: tagged[tid]["split"] for tid in got}  # the split files', not the hash
    assert set(got) == set(truth["expected"]["silence_keep"])  # silence drops what it planted


@pytest.mark.slow
def test_example_as_a_library_runs_the_pipeline_from_the_tags_in_its_files(
    example_corpus, tmp_path
):
    ws, truth = laid_out(example_corpus, tmp_path, "library")
    with sqlite3.connect(ws / "tags/labels.db") as con:
        rows = con.execute(
            "SELECT t.tid, g.tag FROM tid_tag r JOIN tids t ON t.rowid = r.tid"
            " JOIN tags g ON g.rowid = r.tag"
        ).fetchall()
    got: dict[str, set] = {}
    for tid, tag in rows:
        got.setdefault(tid, set()).add(tag)
    assert got == {t["track_id"]: set(t["tags"]) for t in truth["tracks"] if t["tags"]}
    formats = {Path(p).suffix for p in pd.read_parquet(ws / "data/labels.parquet")["file_path"]}
    assert formats == {".mp3", ".flac", ".ogg", ".m4a"}
    result = run_pipeline(ws)
    assert any(t.startswith("genre---") for t in result["per_tag"])
    assert any(t.startswith("mood---") for t in result["per_tag"])


def test_tags_clean_takes_its_minimum_track_count_from_the_config(lib):
    ws, root = lib
    rows = "path,tags\na.mp3,rock;jazz\nb.mp3,rock;jazz\nc.mp3,rock\n"
    assert import_csv(ws, root, rows.encode()).exit_code == 0
    assert in_workspace(ws, "config", "set", "tags-cleaning.min_tracks", "3").exit_code == 0
    assert in_workspace(ws, "tags", "clean").exit_code == 0
    entry = Workspace.open(ws).entry("clean-tags")
    assert entry["params"]["min_tracks"] == 3 and entry["summary"]["clean_tags"] == 1  # rock
    assert in_workspace(ws, "tags", "clean", "--min-tracks", "2").exit_code == 0  # the flag wins
    assert Workspace.open(ws).entry("clean-tags")["summary"]["clean_tags"] == 2
    bad = in_workspace(ws, "config", "set", "tags-cleaning.min_tracks", "0")
    assert bad.exit_code == 2 and "must be > 0" in bad.stderr
