"""The example corpus: formats MSD's readers rely on, every planted fault, tags that clean as
truth.json says, determinism, and bad input."""

from __future__ import annotations

import ctypes
import hashlib
import json
import re
import shlex
import sqlite3
from pathlib import Path

import h5py
import numpy as np
import pytest

from orpheus.errors import OrpheusError
from orpheus.example import build, build_scale_corpus
from orpheus.example import tags as T
from orpheus.example.lists import tag_lists
from orpheus.example.metadata import TABLES

# A real track file from the MSD's public subset, kept as a fixture so that the dtypes are
# compared with the real thing on every machine (see tests/fixtures/README.md).
REFERENCE_H5 = Path(__file__).parent / "fixtures" / "msd" / "TRAXLZU12903D05F94.h5"
TRACK_ID = re.compile(r"^TR[A-Z0-9]{16}$")
FAULTS = {
    "empty-file", "not-audio", "silent", "short-clip", "truncated-short", "truncated-small",
    "silent-gaps", "long-silent-gap", "mismatch", "no-tags", "rubbish-tags-only",
    "ambiguous-id", "duplicate", "duplicate-lone", "no-audio", "no-summary-row",
}  # fmt: skip


def truth_of(root: Path) -> dict:
    return json.loads((root / "truth.json").read_text())


def test_summary_dtypes_equal_the_real_msd_file(example_corpus: Path) -> None:
    with h5py.File(REFERENCE_H5) as ref, h5py.File(example_corpus / "msd_summary_file.h5") as ex:
        for name, dtype in TABLES.items():
            assert ref[name].dtype == dtype
            assert ex[name].dtype == ref[name].dtype


def test_summary_rows_are_aligned_and_complete(example_corpus: Path) -> None:
    truth = truth_of(example_corpus)
    rows = [t for t in truth["tracks"] if t["track_id"] is not None]
    with h5py.File(example_corpus / "msd_summary_file.h5") as f:
        meta, ana, mb = (f[n][:] for n in ("metadata/songs", "analysis/songs", "musicbrainz/songs"))
    assert len(meta) == len(ana) == len(mb) == truth["n_tracks"] == len(rows)
    assert [x.decode() for x in ana["track_id"]] == [t["track_id"] for t in rows]
    assert list(meta["track_7digitalid"]) == [t["track_7digitalid"] for t in rows]
    assert [x.decode() for x in meta["song_id"]] == [t["song_id"] for t in rows]
    assert all(TRACK_ID.match(t["track_id"]) for t in rows)
    assert all(meta["artist_name"]) and all(meta["title"]) and (ana["duration"] > 0).all()
    assert any(t["file_path"] is None for t in rows)  # rows without audio, as in MSD


def test_lastfm_db_schema_and_references(example_corpus: Path) -> None:
    truth = truth_of(example_corpus)
    con = sqlite3.connect(f"file:{example_corpus / 'lastfm_tags.db'}?mode=ro", uri=True)
    cols = {
        t: [(c[1], c[2]) for c in con.execute(f"PRAGMA table_info({t})")]
        for t in ("tids", "tags", "tid_tag")
    }
    assert cols == {
        "tids": [("tid", "TEXT")],
        "tags": [("tag", "TEXT")],
        "tid_tag": [("tid", "INT"), ("tag", "INT"), ("val", "FLOAT")],
    }
    n_tids = con.execute("SELECT max(rowid) FROM tids").fetchone()[0]
    n_tags = con.execute("SELECT max(rowid) FROM tags").fetchone()[0]
    lo, hi, vmin, vmax = con.execute(
        "SELECT min(tid), max(tid), min(val), max(val) FROM tid_tag"
    ).fetchone()
    assert 1 <= lo and hi <= n_tids and 0 < vmin and vmax <= 100
    assert con.execute("SELECT max(tag) FROM tid_tag").fetchone()[0] <= n_tags
    db = {}
    for tid, tag, val in con.execute(
        "SELECT tids.tid, tags.tag, val FROM tid_tag JOIN tids ON tids.rowid = tid_tag.tid "
        "JOIN tags ON tags.rowid = tid_tag.tag"
    ):
        db.setdefault(tid, {})[tag] = val
    expected = {t["track_id"]: t["raw_tags"] for t in truth["tracks"] if t["raw_tags"]}
    assert db == expected
    untagged = [t for t in truth["tracks"] if t["track_id"] and "no-tags" in t["faults"]]
    assert untagged and not any(t["track_id"] in db for t in untagged)


def test_errata_files_parse_in_msd_format(example_corpus: Path) -> None:
    truth = truth_of(example_corpus)
    ids = {t["track_id"] for t in truth["tracks"]}
    lines = (example_corpus / "msd_duplicates.txt").read_text().splitlines()
    assert all(line.startswith("#") for line in lines[:7]) and lines[7].startswith("%")
    groups: list[list[str]] = []
    for line in lines[7:]:
        if line.startswith("%"):
            groups.append([])
        else:
            assert TRACK_ID.match(line) and line in ids
            groups[-1].append(line)
    assert len(groups) >= 3 and all(len(g) >= 2 for g in groups)
    pattern = re.compile(r"^ERROR: <(SO[A-Z0-9]{16}) (TR[A-Z0-9]{16})> .+  -  .+  !=  .+  -  .+$")
    mismatches = (example_corpus / "sid_mismatches.txt").read_text().splitlines()
    assert mismatches and all(pattern.match(line) for line in mismatches)
    flagged = {pattern.match(line).group(2) for line in mismatches}
    assert {t["track_id"] for t in truth["tracks"] if "mismatch" in t["faults"]} == flagged


def test_every_fault_is_planted_and_files_match(example_corpus: Path) -> None:
    truth = truth_of(example_corpus)
    planted = {f for t in truth["tracks"] for f in t["faults"]}
    assert planted == FAULTS
    assert {t["style"] for t in truth["tracks"] if not t["faults"]} == set(T.STYLES)
    audio = example_corpus / "7digital"
    for t in truth["tracks"]:
        if t["file_path"] is None:
            assert not list(audio.rglob(f"{t['track_7digitalid']}.clip.mp3"))
            continue
        d7 = str(t["track_7digitalid"])
        assert t["file_path"] == f"{d7[0]}/{d7[1]}/{d7}.clip.mp3"
        data = (audio / t["file_path"]).read_bytes()
        if "empty-file" in t["faults"]:
            assert data == b""
        elif "not-audio" in t["faults"]:
            assert data and b"\xff" not in data
        elif not {"truncated-small"} & set(t["faults"]):
            assert len(data) > truth["config"]["silence"]["min_size"]
    rates = {}
    import soundfile as sf

    for t in truth["tracks"]:
        if t["expected"]["scan"] == "ok":
            info = sf.info(str(audio / t["file_path"]))
            rates[(info.samplerate, info.channels)] = (
                rates.get((info.samplerate, info.channels), 0) + 1
            )
    assert {(44100, 2), (44100, 1), (22050, 1)} <= set(rates)
    assert rates[(44100, 2)] > len(rates) and rates[(44100, 2)] > sum(rates.values()) / 2


def test_silence_verdicts_hold_on_the_decoded_audio(example_corpus: Path) -> None:
    """Run librosa's split (the silence stage's definition) on every file that reaches it."""
    import librosa

    from orpheus.audio import read_audio, to_mono

    truth = truth_of(example_corpus)
    cfg = truth["config"]["silence"]
    for t in truth["tracks"]:
        verdict = t["expected"]["silence"]
        if verdict is None:
            continue
        path = example_corpus / "7digital" / t["file_path"]
        data, sr = read_audio(path)
        y = to_mono(data)
        spans = librosa.effects.split(y, top_db=cfg["top_db"], frame_length=2048, hop_length=512)
        if np.abs(y).max() == 0:
            got = "drop:silent"
        else:
            s = spans / sr
            gaps = s[1:, 0] - s[:-1, 1]
            trim, tot, mx = s[-1, 1] - s[0, 0], gaps.sum(), gaps.max(initial=0.0)
            got = (
                "drop:too-short" if trim < cfg["filter_trim_length"]
                else "drop:total-silence" if tot > cfg["filter_tot_silence"]
                else "drop:max-silence" if mx > cfg["filter_max_silence"]
                else "drop:too-small" if path.stat().st_size <= cfg["min_size"]
                else "keep"
            )  # fmt: skip
        assert got == verdict, t["faults"]


def test_expected_summaries_agree_with_tracks(example_corpus: Path) -> None:
    truth = truth_of(example_corpus)
    exp = truth["expected"]
    ts = truth["tracks"]
    assert exp["wrangle_keep"] == sorted(
        t["track_id"] for t in ts if t["expected"]["wrangle"] == "keep"
    )
    reasons = set(exp["wrangle_drops"].values())
    assert reasons == {
        "no-summary-row",
        "ambiguous-id",
        "mismatch",
        "broken-audio",
        "no-tags",
        "duplicate",
    }
    assert set(exp["silence_drops"].values()) == {
        "silent", "too-small", "too-short", "total-silence", "max-silence"
    }  # fmt: skip
    assert set(exp["silence_keep"]) < set(exp["wrangle_keep"])
    assert set(exp["scan_rejects"].values()) == {"empty-file", "not-audio"}
    # the lone survivor of a duplicate group whose other member has no audio is kept
    lone = [t for t in ts if "duplicate-lone" in t["faults"]]
    assert lone and all(t["expected"]["wrangle"] == "keep" for t in lone)
    by_id = {t["track_id"]: t for t in ts if t["track_id"]}
    assert exp["clean_tags"] == {k: by_id[k]["tags"] for k in exp["clean_tags"]}
    cfg = truth["config"]["tags-cleaning"]
    assert cfg["sub_threshold"] <= cfg["threshold"] and cfg["val"] > 0


def _key(tag: str) -> str:
    """clean_1 then plural stripping (seed-inventory §2.6), the key variants share."""
    key = re.sub(r"[^A-Za-z0-9]", "", tag).lower()
    return key[:-1] if len(key) >= 2 and key.endswith("s") and key[-2] != "s" else key


def test_tag_design_follows_the_lists_and_rules() -> None:
    lists = tag_lists()
    clean = set(lists.clean_155)
    for primary, secondaries in T.STYLE_TAGS.values():
        for canon in (primary, *secondaries):
            assert canon in lists.genre_kept and T.clean_name(canon) in clean
    for decade in T.DECADES:
        assert decade in lists.genre_kept and decade in clean
    for canon, variants in T.VARIANTS.items():
        for v in variants:
            assert v not in lists.genre_rejected and v != canon
            assert _key(v) == _key(canon), v
    for spellings in T.REJECTED_SPELLINGS.values():
        assert set(spellings) <= set(lists.genre_rejected)
    for merged in (*T.MERGED_REPLACING.values(), *T.MERGED_ADDED.values()):
        assert merged in lists.genre_kept
    for vocal, variants in T.VOCAL_VARIANTS.items():
        assert set(variants) <= set(lists.vocal_kept[vocal])
        assert T.VOCAL_PRIMARY[vocal] in lists.genre_rejected  # never a genre target
    rubbish = {t for ts in T.STYLE_RUBBISH.values() for t in ts} | set(T.GENERIC_RUBBISH)
    assert rubbish <= set(lists.genre_rejected)


def test_truth_tags_cover_styles_variants_and_vocals(example_corpus: Path) -> None:
    truth = truth_of(example_corpus)
    cfg = truth["config"]["tags-cleaning"]
    counts: dict[str, int] = {}
    for t in truth["tracks"]:
        for tag, val in t["raw_tags"].items():
            counts[tag] = counts.get(tag, 0) + (val > T.NOISE_VAL_MAX)
    lists = tag_lists()
    listed = set(lists.genre_kept) | set(lists.genre_rejected)
    assert all(n < cfg["threshold"] for tag, n in counts.items() if tag not in listed)
    variants = {v for vs in T.VARIANTS.values() for v in vs}
    assert len(variants & set(counts)) >= 8
    assert {"2000s", "rhythm and blues", "funky"} <= set(counts)
    assert any(val <= T.NOISE_VAL_MAX for t in truth["tracks"] for val in t["raw_tags"].values())
    all_clean = {tag for t in truth["tracks"] for tag in t["tags"]}
    assert all_clean <= set(lists.clean_155)
    assert {"female", "male", "rap", "instrumental"} <= all_clean
    for t in truth["tracks"]:
        if t["tags"] and "rubbish-tags-only" not in t["faults"]:
            assert T.clean_name(T.STYLE_TAGS[t["style"]][0]) in t["tags"] or t["style"] == "hip-hop"


def test_same_seed_gives_identical_files_serial_or_parallel(tmp_path: Path) -> None:
    def digest(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    # Another library's C rand() calls in this process must not change the rendered audio.
    libc = ctypes.CDLL(None)
    for _ in range(5):
        libc.rand()
    a = build(tmp_path / "a", tracks=8, seed=7, workers=1)
    b = build(tmp_path / "b", tracks=8, seed=7, workers=2)
    assert a == b
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert [p.name for p in tmp_path.iterdir()] and sorted(p.name for p in tmp_path.iterdir()) == [
        "a",
        "b",
    ]


@pytest.mark.parametrize(("sr", "channels", "bit_rate"), [(44100, 2, 96_000), (22050, 1, 80_000)])
def test_mp3s_are_constant_bit_rate_gapless_and_tagless(
    tmp_path: Path, sr: int, channels: int, bit_rate: int
) -> None:
    """What the previews need of the encoder, read back by mutagen and libsndfile: the bit rate
    asked for (the faults' sizes depend on it), every frame of audio and no more, no ID3 tag."""
    import soundfile as sf
    from mutagen.mp3 import MP3, BitrateMode

    from orpheus.example.encoding import write_mp3

    t = np.arange(int(2.5 * sr)) / sr
    y = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None].repeat(channels, axis=1)
    path = tmp_path / "a.mp3"
    write_mp3(path, y, sr, bit_rate)
    info = MP3(path).info  # its bit rate is worked out from the length and size: 96001 for 96k
    assert (round(info.bitrate, -3), info.bitrate_mode, info.sample_rate) == (
        bit_rate,
        BitrateMode.CBR,
        sr,
    )
    assert MP3(path).tags is None
    decoded, rate = sf.read(path)
    assert rate == sr and len(decoded) == len(y)
    assert np.corrcoef(decoded.reshape(len(y), -1)[:, 0], y[:, 0])[0, 1] > 0.99
    write_mp3(tmp_path / "b.mp3", y, sr, bit_rate)
    assert (tmp_path / "b.mp3").read_bytes() == path.read_bytes()


def test_bad_input_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    for n in (0, -3):
        with pytest.raises(OrpheusError):
            build(tmp_path / "x", tracks=n)
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(OrpheusError, match="not empty"):
        build(full, tracks=1)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OrpheusError, match="cannot write"):
        build(blocker / "corpus", tracks=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]
    assert [p.name for p in full.iterdir()] == ["keep.txt"]


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    build(tmp_path / "c", tracks=1, seed=1, workers=1, progress=lambda d, n: seen.append((d, n)))
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)  # the track and the orphan file


def test_scale_corpus_small(tmp_path: Path) -> None:
    info = build_scale_corpus(
        tmp_path / "s", tracks=20_000, lastfm_tracks=10_100, tags=10_440, rows=172_000, seed=1
    )
    with h5py.File(tmp_path / "s" / "msd_summary_file.h5") as f:
        for name, dtype in TABLES.items():
            assert f[name].dtype == dtype and len(f[name]) == 20_000
        track_ids = {x.decode() for x in f["analysis/songs"]["track_id"]}
        assert len(track_ids) == len(set(f["metadata/songs"]["track_7digitalid"])) == 20_000
    con = sqlite3.connect(tmp_path / "s" / "lastfm_tags.db")
    tids = [r[0] for r in con.execute("SELECT tid FROM tids")]
    assert len(tids) == 10_100 and set(tids) <= track_ids
    assert con.execute("SELECT count(*) FROM tags").fetchone()[0] == 10_440
    n, distinct = con.execute(
        "SELECT count(*), count(DISTINCT tid || '-' || tag) FROM tid_tag"
    ).fetchone()
    assert n == distinct == info["rows"] and 0.99 * 172_000 < n <= 172_000
    pop = [r[0] for r in con.execute(
        "SELECT tags.tag FROM tid_tag JOIN tags ON tags.rowid = tid_tag.tag "
        "GROUP BY tid_tag.tag ORDER BY count(*) DESC LIMIT 5")]  # fmt: skip
    assert pop[0] == "rock"
    used = con.execute("SELECT count(DISTINCT tid) FROM tid_tag").fetchone()[0]
    assert used == 10_100


# -- the same music in MTG-Jamendo's shape and as a music library ---------------------------


@pytest.fixture(scope="module")
def jamendo(example_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from orpheus.example.layouts import write_layout

    root = tmp_path_factory.mktemp("jamendo")
    write_layout(example_corpus, root, "jamendo")
    return root


@pytest.fixture(scope="module")
def library(example_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from orpheus.example.layouts import write_layout

    root = tmp_path_factory.mktemp("library")
    write_layout(example_corpus, root, "library")
    return root


def read_tsv(path: Path) -> list[list[str]]:
    data = path.read_bytes()
    lines = data.split(b"\r\n")
    assert lines[-1] == b"" and b"\n" not in data.replace(b"\r\n", b"")  # CRLF, as published
    return [line.decode("utf-8").split("\t") for line in lines[:-1]]


def test_jamendo_layout_has_the_published_files_format_and_artist_split(
    jamendo: Path, example_corpus: Path
) -> None:
    rows = read_tsv(jamendo / "data/autotagging.tsv")
    assert rows[0] == ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]
    body = rows[1:]
    assert len(body) >= 20
    for tid, artist, album, rel, seconds, *tags in body:
        number = int(re.fullmatch(r"track_(\d{7})", tid).group(1))
        assert rel == f"{number % 100:02d}/{number}.mp3"  # NN/ID.mp3, NN its last two digits
        assert re.fullmatch(r"artist_\d{6}", artist) and re.fullmatch(r"album_\d{6}", album)
        assert 5.0 < float(seconds) < 31.0
        assert tags and all(
            re.fullmatch(r"(genre|mood/theme|instrument)---[a-z]+", t) for t in tags
        )
        assert sum(t.startswith("genre---") for t in tags) == 1
    by_split = {}
    for name in ("train", "validation", "test"):
        part = read_tsv(jamendo / f"data/splits/split-0/autotagging-{name}.tsv")
        assert part[0] == rows[0]
        by_split[name] = part[1:]
    assert sorted(r for p in by_split.values() for r in p) == sorted(body)  # a partition
    artists = {name: {r[1] for r in part} for name, part in by_split.items()}
    assert not (artists["train"] & artists["test"]) and not (
        artists["train"] & artists["validation"]
    )
    assert not (artists["validation"] & artists["test"])
    assert by_split["test"] and by_split["validation"]
    # the audio is the corpus's, byte for byte: a file of the MSD layout with the same content
    sources = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (example_corpus / "7digital").rglob("*.clip.mp3")
    }
    for row in body[:5]:
        assert hashlib.sha256((jamendo / "audio" / row[3]).read_bytes()).hexdigest() in sources


def test_jamendo_truth_matches_its_files(jamendo: Path) -> None:
    truth = truth_of(jamendo)
    rows = read_tsv(jamendo / "data/autotagging.tsv")[1:]
    listed = {r[0]: r[5:] for r in rows}
    tagged = {t["track_id"]: t["tags"] for t in truth["tracks"] if t["tags"]}
    assert tagged == listed
    untagged = [t for t in truth["tracks"] if not t["tags"]]
    assert untagged and all((jamendo / "audio" / t["file_path"]).is_file() for t in untagged)
    keep, drops = truth["expected"]["silence_keep"], truth["expected"]["silence_drops"]
    assert set(keep) | set(drops) == set(listed) and drops  # the planted silence faults too
    assert truth["labels"] == {
        "source": "jamendo",
        "paths": ["data/splits/split-0"],
        "audio_root": "audio",
    }


def test_library_layout_mixes_formats_with_tags_in_each_containers_fields(library: Path) -> None:
    from mutagen.flac import FLAC
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4
    from mutagen.oggvorbis import OggVorbis

    from orpheus.audio import read_audio

    truth = truth_of(library)
    files = sorted(p for p in (library / "Music").rglob("*") if p.is_file())
    assert {p.suffix for p in files} == {".mp3", ".flac", ".ogg", ".m4a"}
    assert len(files) == len(truth["tracks"])
    seen_v23 = False
    for t in truth["tracks"]:
        path = library / "Music" / t["file_path"]
        artist, album, name = t["file_path"].split("/")
        assert re.fullmatch(r"\d\d .+\.(mp3|flac|ogg|m4a)", name) and artist == t["artist"]
        if path.suffix == ".mp3":
            tags = ID3(path)
            seen_v23 |= tags.version[:2] == (2, 3)
            genre = [g for f in tags.getall("TCON") for g in f.text]
            mood = [m for key in ("TMOO", "TXXX:MOOD") for f in tags.getall(key) for m in f.text]
        elif path.suffix == ".m4a":
            tags = MP4(path).tags or {}
            genre = list(tags.get("\xa9gen", []))
            mood = [bytes(v).decode() for v in tags.get("----:com.apple.iTunes:MOOD", [])]
        else:
            tags = (FLAC if path.suffix == ".flac" else OggVorbis)(path)
            genre, mood = tags.get("GENRE", []), tags.get("MOOD", [])
        expected = [t.split("---", 1)[1] for t in t["tags"]]
        assert [v.lower() for v in genre + mood] == expected, t["file_path"]
    assert seen_v23
    assert sum(not t["tags"] for t in truth["tracks"]) >= 1  # some files are untagged
    for suffix in (".flac", ".ogg", ".m4a"):  # each format decodes to about 30 s
        path = next(p for p in files if p.suffix == suffix)
        y, sr = read_audio(path)
        assert 29.0 < len(y) / sr < 31.0


def test_unknown_layout_is_refused(tmp_path: Path, example_corpus: Path) -> None:
    from orpheus.example.layouts import build_layout

    with pytest.raises(OrpheusError, match="unknown example layout"):
        build_layout(tmp_path / "x", "itunes", tracks=2)
    assert not (tmp_path / "x").exists()


def test_init_writes_a_library_example_and_names_the_import_that_reads_it(tmp_path: Path) -> None:
    from cli_helpers import orpheus

    from orpheus.example.layouts import import_command
    from orpheus.workspace import Workspace

    ws = tmp_path / "ws"
    done = orpheus("init", ws, "--example", "--layout", "library", "--tracks", "3")
    assert done.exit_code == 0, done.output
    cfg = Workspace.open(ws).config
    assert cfg["paths"]["audio_root"] == "example/Music" and cfg["paths"]["msd_summary"] is None
    assert cfg["tags-cleaning"]["min_tracks"] == 2
    args = ["-w", str(ws), *import_command(ws, "library")]
    assert f"next: orpheus {shlex.join(args)}" in " ".join(done.stderr.split())
    imported = orpheus(*args)
    assert imported.exit_code == 0, imported.output
    assert "imported 3 tracks" in imported.stdout
    assert not list((ws / "example").glob(".*"))  # the MSD-shaped build it came from is gone
    assert orpheus("init", tmp_path / "x", "--layout", "jamendo").exit_code == 2
