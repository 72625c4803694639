"""The example corpus in the shapes people have today: MTG-Jamendo's files, or a music library.

The music is the MSD-shaped corpus's (`build`): the same rendered tracks, styles and planted
silence faults, laid out again and labelled the way each source labels them:

- `jamendo`: `audio/NN/ID.mp3` (NN the ID's last two digits) and, as MTG-Jamendo publishes them,
  `data/autotagging.tsv` plus `data/splits/split-0/autotagging-{train,validation,test}.tsv`:
  tab-separated `TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION` then one field per tag
  (`genre---rock`, `mood/theme---energetic`, `instrument---voice`), CRLF line endings. The
  split is by artist, as the published one is: no artist in two splits.
- `library`: `Music/Artist/Album/NN Title.ext` in MP3 (ID3v2.4 and v2.3), FLAC, Ogg Vorbis and
  AAC in MP4, with genre and mood written into each container's fields (`orpheus.tagfields`,
  the first key of each role); the tracks the MSD corpus leaves untagged carry no genre or mood.

Labels follow from the music (a style's genre, a mood and an instrument per style, a voice when
one sings), so a model can learn them. `truth.json` gives every track's ID, path, labels and
silence verdict, the config the corpus asks for, and the `labels import` that reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from orpheus.errors import OrpheusError
from orpheus.example.build import EXAMPLE_TRAINING_CONFIG, build
from orpheus.example.plan import AUDIO_FAULTS
from orpheus.io import staged_folder
from orpheus.labels.common import path_id
from orpheus.workspace import Workspace

MSD, JAMENDO, LIBRARY = "msd", "jamendo", "library"
LAYOUTS = (MSD, JAMENDO, LIBRARY)
VERSION = 1

# style -> Jamendo's genre, mood/theme and instrument tags (names from its published tag list).
GENRE = {"hip-hop": "hiphop"}  # the others keep the style's name
MOOD = {
    "rock": "energetic",
    "metal": "heavy",
    "electronic": "party",
    "hip-hop": "groovy",
    "jazz": "relaxing",
    "classical": "calm",
    "ambient": "meditative",
    "folk": "melancholic",
    "pop": "happy",
    "rnb": "romantic",
}
INSTRUMENT = {  # the part that carries each style's arrangement (orpheus.example.music)
    "rock": "electricguitar",
    "metal": "electricguitar",
    "electronic": "synthesizer",
    "hip-hop": "electricpiano",
    "jazz": "piano",
    "classical": "strings",
    "ambient": "pad",
    "folk": "acousticguitar",
    "pop": "piano",
    "rnb": "electricpiano",
}
SPLIT_FILES = {"train": "train", "valid": "validation", "test": "test"}
# A library's genre as its owner spells it (the labels import normalises case).
LIBRARY_GENRE = {"hip-hop": "Hip-Hop", "rnb": "R&B"}
LIBRARY_FORMATS = ("mp3-v24", "flac", "mp3-v23", "ogg", "m4a")  # round robin over the tracks
UNTAGGED = ("no-tags", "rubbish-tags-only")  # MSD-corpus faults that leave a track untagged
# How `orpheus labels import` reads each layout (paths relative to the example folder).
LABELS = {
    JAMENDO: {"source": "jamendo", "paths": ["data/splits/split-0"], "audio_root": "audio"},
    LIBRARY: {"source": "files", "paths": ["Music"], "audio_root": "Music"},
}


def labels_of(style: str, vocals: str) -> list[str]:
    """A track's Jamendo-style tags from its music.

    >>> labels_of("hip-hop", "rap")
    ['genre---hiphop', 'mood/theme---groovy', 'instrument---electricpiano', 'instrument---voice']
    """
    tags = [
        f"genre---{GENRE.get(style, style)}",
        f"mood/theme---{MOOD[style]}",
        f"instrument---{INSTRUMENT[style]}",
    ]
    return tags + (["instrument---voice"] if vocals != "instrumental" else [])


def build_layout(
    dest: Path,
    layout: str = MSD,
    *,
    tracks: int = 200,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the example corpus in `layout` into `dest` (absent or empty); its truth dict."""
    if layout not in LAYOUTS:
        raise OrpheusError(
            f"unknown example layout {layout!r}", hint="choose " + ", ".join(LAYOUTS)
        )
    if layout == MSD:
        return build(dest, tracks=tracks, seed=seed, workers=workers, progress=progress)
    dest = Path(dest)
    with staged_folder(dest) as tmp:
        msd = tmp / ".msd"
        build(msd, tracks=tracks, seed=seed, workers=workers, progress=progress)
        truth = write_layout(msd, tmp, layout, move=True)
        shutil.rmtree(msd)
    return truth


def write_layout(corpus: Path, root: Path, layout: str, *, move: bool = False) -> dict:
    """Lay out the MSD-shaped corpus at `corpus` as `layout` into the folder `root`, with its
    truth.json; its audio files are moved when `move`, else linked or copied (never changed)."""
    truth = json.loads((Path(corpus) / "truth.json").read_text(encoding="utf-8"))
    members = _members(truth, Path(corpus))
    if layout == JAMENDO:
        entries, labels = _jamendo(members, Path(root), os.replace if move else _link)
    else:  # a library's MP3s get tags written into them: copied, never linked
        entries, labels = _library(members, Path(root), os.replace if move else shutil.copyfile)
    new = _truth(truth, layout, entries, labels)
    (Path(root) / "truth.json").write_text(json.dumps(new, indent=1) + "\n", encoding="utf-8")
    return new


def _link(source: Path, target: Path) -> None:
    """A hard link (the corpus stays as it is), or a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _members(truth: dict, corpus: Path) -> list[dict]:
    """The MSD corpus's tracks with readable audio, each file once, in the corpus's order, with
    their artist, release and title (from its summary) and their audio file."""
    from orpheus.msd import read_summary

    summary = read_summary(corpus / "msd_summary_file.h5").set_index("track_id")
    seen: set[str] = set()
    out = []
    for t in truth["tracks"]:
        if t["track_id"] is None or t["expected"]["scan"] != "ok" or t["file_path"] in seen:
            continue
        seen.add(t["file_path"])
        fault = next((f for f in t["faults"] if f in AUDIO_FAULTS), None)
        row = summary.loc[t["track_id"]]
        out.append(
            t
            | {k: str(row[k]) for k in ("artist", "release", "title")}
            | {
                "audio": corpus / "7digital" / t["file_path"],
                "fault": fault,
                "silence": "keep" if fault is None else f"drop:{AUDIO_FAULTS[fault]}",
            }
        )
    return out


def _artist_splits(members: list[dict]) -> dict[str, str]:
    """Artist -> split, per style so that every split hears every style: of a style's artists
    (in the order of a hash of their names), about 15% go to test and 15% to validation, one
    each at least when the style has three artists or more."""
    style_of: dict[str, str] = {}
    for t in members:
        style_of.setdefault(t["artist"], t["style"])
    out: dict[str, str] = {}
    for style in sorted(set(style_of.values())):
        artists = sorted(
            (a for a, s in style_of.items() if s == style),
            key=lambda a: hashlib.blake2b(a.encode("utf-8"), digest_size=8).digest(),
        )
        held = max(1, round(0.15 * len(artists))) if len(artists) >= 3 else 0
        for i, artist in enumerate(artists):
            out[artist] = "test" if i < held else "valid" if i < 2 * held else "train"
    return out


def _jamendo(members: list[dict], root: Path, place) -> tuple[list[dict], dict]:
    from mutagen.mp3 import MP3

    artist_ids: dict[str, str] = {}
    album_ids: dict[tuple[str, str], str] = {}
    splits = _artist_splits(members)
    rows: dict[str, list[str]] = {name: [] for name in SPLIT_FILES}
    entries = []
    for number, t in enumerate(members, 1):
        tid = f"track_{number:07d}"
        rel = f"{number % 100:02d}/{number}.mp3"
        target = root / "audio" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        place(t["audio"], target)
        artist = artist_ids.setdefault(t["artist"], f"artist_{len(artist_ids) + 1:06d}")
        album = album_ids.setdefault((t["artist"], t["release"]), f"album_{len(album_ids) + 1:06d}")
        tags = [] if any(f in UNTAGGED for f in t["faults"]) else labels_of(t["style"], t["vocals"])
        entries.append(_entry(t, tid, rel, tags, splits[t["artist"]]))
        if tags:  # MTG-Jamendo lists only tagged tracks
            seconds = f"{MP3(target).info.length:.1f}"
            rows[splits[t["artist"]]].append("\t".join([tid, artist, album, rel, seconds, *tags]))
    header = "\t".join(["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"])
    data = root / "data"
    _write_tsv(data / "autotagging.tsv", header, sorted(r for part in rows.values() for r in part))
    for split, name in SPLIT_FILES.items():
        _write_tsv(data / "splits/split-0" / f"autotagging-{name}.tsv", header, rows[split])
    return entries, LABELS[JAMENDO]


def _write_tsv(path: Path, header: str, rows: list[str]) -> None:
    """A TSV with CRLF line endings, as MTG-Jamendo publishes its files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode("utf-8"))


def _library(members: list[dict], root: Path, place) -> tuple[list[dict], dict]:
    """Transcode each fault-free track into the next format; a planted silence fault stays an
    MP3 (its verdict, e.g. too small in bytes, belongs to the MP3 the fault was made in)."""
    numbers: dict[str, int] = {}
    entries = []
    for i, t in enumerate(members):
        kind = "mp3-v24" if t["fault"] else LIBRARY_FORMATS[i % len(LIBRARY_FORMATS)]
        ext = {"mp3-v24": "mp3", "mp3-v23": "mp3"}.get(kind, kind)
        album = f"{_safe(t['artist'])}/{_safe(t['release'])}"
        numbers[album] = numbers.get(album, 0) + 1
        rel = f"{album}/{numbers[album]:02d} {_safe(t['title'])}.{ext}"
        target = root / "Music" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if ext == "mp3":
            place(t["audio"], target)
        else:
            _transcode(t["audio"], target, ext)
        untagged = any(f in UNTAGGED for f in t["faults"])
        genre = LIBRARY_GENRE.get(t["style"], t["style"].title())
        fields = {"artist": [t["artist"]]}
        if not untagged:
            fields |= {"genre": [genre], "mood": [MOOD[t["style"]].title()]}
        write_fields(target, fields, id3v23=kind == "mp3-v23")
        tags = [] if untagged else [f"genre---{genre.lower()}", f"mood---{MOOD[t['style']]}"]
        entries.append(_entry(t, path_id(rel), rel, tags, None))
    return entries, LABELS[LIBRARY]


def _safe(name: str) -> str:
    """A folder or file name from a corpus name (no separators, no leading dot)."""
    return name.replace("/", "-").replace(os.sep, "-").lstrip(".") or "_"


def _transcode(source: Path, target: Path, ext: str) -> None:
    """Decode the MP3 and write it as FLAC or Ogg Vorbis (libsndfile) or AAC in MP4 (FFmpeg)."""
    import soundfile as sf

    from orpheus.audio import read_audio
    from orpheus.example.encoding import write_aac

    y, sr = read_audio(source)
    if ext == "m4a":
        write_aac(target, y, sr)
    else:
        sf.write(target, y, sr, format={"flac": "FLAC", "ogg": "OGG"}[ext])


def write_fields(path: Path, values: dict[str, list[str]], *, id3v23: bool = False) -> None:
    """Write roles' values (`genre`, `mood`, `artist`) into a file's tags, each in the first
    field `orpheus.tagfields.FIELDS` lists for its container; several values as separate
    values (ID3v2.3, which has no multi-value frames for them, joins them with '/')."""
    import mutagen

    from orpheus.tagfields import FIELDS, ID3, MP4, VORBIS

    if path.suffix.lower() == ".mp3":
        from mutagen import id3

        tags = id3.ID3()
        for role, items in values.items():
            key = FIELDS[ID3][role][0]
            text = ["/".join(items)] if id3v23 else list(items)
            if id3v23 and key == "TMOO":
                key = FIELDS[ID3][role][1]  # v2.3 has no TMOO: TXXX:MOOD
            if key.startswith("TXXX:"):
                tags.add(id3.TXXX(encoding=3, desc=key[5:], text=text))
            else:
                tags.add(getattr(id3, key)(encoding=3, text=text))
        tags.save(path, v2_version=3 if id3v23 else 4)
        return
    media = mutagen.File(path)
    kind = MP4 if path.suffix.lower() in (".m4a", ".mp4") else VORBIS
    if media.tags is None:
        media.add_tags()
    for role, items in values.items():
        key = FIELDS[kind][role][0]
        if key.startswith("----:"):
            media.tags[key] = [mutagen.mp4.MP4FreeForm(v.encode("utf-8")) for v in items]
        else:
            media.tags[key] = list(items)
    media.save()


def _entry(t: dict, tid: str | None, rel: str, tags: list[str], split: str | None) -> dict:
    return {
        "track_id": tid,
        "file_path": rel,
        "artist": t["artist"],
        "style": t["style"],
        "vocals": t["vocals"],
        "tags": tags,
        "split": split,
        "faults": [f for f in t["faults"] if f in AUDIO_FAULTS or f in UNTAGGED],
        "expected": {"silence": t["silence"] if tags else None},
    }


def _truth(msd: dict, layout: str, entries: list[dict], labels: dict) -> dict:
    tagged = [e for e in entries if e["tags"]]
    return {
        "layout": layout,
        "seed": msd["seed"],
        "n_tracks": msd["n_tracks"],
        "version": VERSION,
        "paths": {"audio_root": labels["audio_root"]},
        "labels": labels,
        "config": {
            "silence": msd["config"]["silence"],
            **EXAMPLE_TRAINING_CONFIG,
            "tags": {"top": EXAMPLE_TRAINING_CONFIG["tags"]["top"], "without": []},
            # a tag of one style has about a tenth of the tracks; half of that is kept
            "tags-cleaning": {"min_tracks": max(2, round(msd["n_tracks"] / 20))},
        },
        "tracks": entries,
        "expected": {
            "silence_keep": sorted(
                e["track_id"] for e in tagged if e["expected"]["silence"] == "keep"
            ),
            "silence_drops": {
                e["track_id"]: e["expected"]["silence"].split(":", 1)[1]
                for e in tagged
                if e["expected"]["silence"] != "keep"
            },
        },
    }


# Where the MSD-shaped corpus puts each input, as `paths` keys of config.json.
MSD_PATHS = {
    "audio_root": "7digital",
    "msd_summary": "msd_summary_file.h5",
    "lastfm_db": "lastfm_tags.db",
    "duplicates": "msd_duplicates.txt",
    "mismatches": "sid_mismatches.txt",
}


def add_example(
    ws: Workspace,
    layout: str = MSD,
    *,
    tracks: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the example corpus in `layout` into the workspace's `example/` folder and point
    the workspace at it (`use_example`); its truth dict."""
    truth = build_layout(ws.path("example"), layout, tracks=tracks, seed=seed, progress=progress)
    use_example(ws, Path("example"), truth)
    return truth


def use_example(ws: Workspace, folder: Path, truth: dict) -> None:
    """Point the workspace's `paths` at an example corpus (relative to the workspace, or
    absolute) and apply the config the corpus asks for (thresholds and model size)."""
    cfg = ws.config
    names = truth.get("paths", MSD_PATHS)
    cfg["paths"].update({key: str(Path(folder) / name) for key, name in names.items()})
    for section, values in truth.get("config", {}).items():
        cfg[section].update(values)
    ws.save_config(cfg)


def import_command(root: Path, layout: str, folder: Path = Path("example")) -> list[str]:
    """The `orpheus labels import` arguments that read an example laid out as `layout` in the
    workspace at `root` (paths through the workspace, so that they work from where one stands).
    """
    labels = LABELS[layout]
    base = Path(root) / folder
    return [
        "labels",
        "import",
        "--from",
        labels["source"],
        *(str(base / p) for p in labels["paths"]),
        "--audio-root",
        str(base / labels["audio_root"]),
    ]
