"""MTG-Jamendo's TSVs: `TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION` then one field per tag,
written `category---tag` (`genre---rock`, `mood/theme---happy`), lines ending in CRLF.

Tags are kept as written, category included, so `tags.top`, `tags.with` and `tags.without`
select them by their full name. Track IDs are the dataset's (`track_0000215`); the artist ID
drives the artist split. A split file (`autotagging[_SUBSET]-{train,validation,test}.tsv`, as
in `data/splits/split-N/`) gives its tracks that split; a `split-N` folder stands for the
three files of its full `autotagging` set (or of its only set). PATH is relative to the audio
root; when the full-quality `NN/ID.mp3` is absent, the low-quality `NN/ID.low.mp3` is used.
"""

from __future__ import annotations

import re
from pathlib import Path

from orpheus.errors import OrpheusError
from orpheus.labels.common import BAD_ROW, DUPLICATE, Collector, read_text
from orpheus.paths import confined

HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION")
SPLIT_FILE = re.compile(r"^(autotagging(?:_[a-z0-9]+)?)-(train|validation|test)\.tsv$")
SPLIT_NAME = {"train": "train", "validation": "valid", "test": "test"}
FULL_SET = "autotagging"  # all 195 tags; the others are subsets (top50tags, genre, ...)
_AUDIO_NAME = re.compile(r"^([0-9]+)(?:\.low)?\.mp3$")


def id_from_path(rel: str) -> str | None:
    """The dataset's track ID of an audio path, as its TSVs write it; None if not `NN/ID.mp3`.

    >>> id_from_path("15/215.mp3"), id_from_path("15/215.low.mp3")
    ('track_0000215', 'track_0000215')
    """
    hit = _AUDIO_NAME.match(rel.rsplit("/", 1)[-1])
    return f"track_{int(hit.group(1)):07d}" if hit else None


def expand(paths: list[Path]) -> list[Path]:
    """TSV files as given; a folder stands for its one set of split files, or for the full
    `autotagging` set when it holds several (pass a subset's three files to use that subset)."""
    out: list[Path] = []
    for path in paths:
        if not path.is_dir():
            out.append(path)
            continue
        found: dict[str, list[Path]] = {}
        for item in sorted(path.iterdir()):
            hit = SPLIT_FILE.match(item.name)
            if hit:
                found.setdefault(hit.group(1), []).append(item)
        if len(found) > 1 and FULL_SET in found:  # the published split-N holds five subsets
            found = {FULL_SET: found[FULL_SET]}
        if len(found) != 1:
            names = ", ".join(sorted(found)) or "none"
            raise OrpheusError(
                f"{path}: expected one set of autotagging[_SUBSET]-train/validation/test.tsv"
                f" files, found {len(found)} ({names})",
                hint="pass the three TSV files of the subset you want instead of the folder",
            )
        out += next(iter(found.values()))
    return out


def read(paths: list[Path], into: Collector) -> None:
    """Read the TSVs (or split folders) into `into`."""
    for path in expand(paths):
        hit = SPLIT_FILE.match(path.name)
        _read_one(path, into, SPLIT_NAME[hit.group(2)] if hit else None)


def _read_one(path: Path, into: Collector, split: str | None) -> None:
    lines = read_text(path).split("\n")
    header = tuple(f.strip() for f in lines[0].split("\t"))
    if header[: len(HEADER)] != HEADER:
        raise OrpheusError(
            f"{path}: not an MTG-Jamendo TSV (header {lines[0][:80]!r})",
            hint="the first line must be TRACK_ID, ARTIST_ID, ALBUM_ID, PATH, DURATION, TAGS",
        )
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        fields = line.split("\t")
        if len(fields) < len(HEADER):
            into.skipped.add(BAD_ROW, f"{where}: {len(fields)} fields, at least 5 expected")
            continue
        tid, artist, _album, rel = (f.strip() for f in fields[:4])
        if tid in into:
            into.skipped.add(DUPLICATE, f"{where}: track {tid} again")
            continue
        if not into.track(where, tid, _present(into.root, rel), artist=artist, split=split):
            continue
        for tag in fields[len(HEADER) :]:
            if tag.strip():
                into.tag(where, tid, tag.strip())


def _present(root: Path, rel: str) -> str:
    """`rel`, or its low-quality twin `NN/ID.low.mp3` when only that one exists."""
    full = confined(root, rel)  # never look outside the root, even to choose
    if full is not None and rel.endswith(".mp3") and not full.exists():
        low = full.with_name(full.name[: -len(".mp3")] + ".low.mp3")
        if low.exists():
            return rel[: -len(".mp3")] + ".low.mp3"
    return rel
