"""What every label source shares: reading its text, checking its paths, counting its skips,
and writing the tag database and the track table.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from orpheus.errors import OrpheusError
from orpheus.lastfm import db
from orpheus.paths import confined

MAX_VAL = 100.0  # Last.fm's maximum `val`: what a present binary label gets
SPLITS = ("train", "valid", "test")
TRACK_COLUMNS = {
    "track_id": "str",
    "file_path": "str",
    "file_size": "int64",
    "artist": "str",
    "split": "str",
}
# The reasons a row or a file is skipped, counted and reported (never a silent drop).
OUTSIDE, MISSING, NO_TAGS, DUPLICATE, BAD_ROW, UNREADABLE = (
    "outside-root",
    "missing-audio",
    "no-tags",
    "duplicate",
    "bad-row",
    "unreadable-tags",
)
SHOWN = 5  # examples kept per skip reason


def path_id(rel: str) -> str:
    """A stable track ID for a file without one: `p` + 16 hex digits of BLAKE2b of the
    '/'-separated path relative to the audio root, so it survives moving the root.

    >>> path_id("Artist/Album/01 Song.flac")
    'p24c3055d21c448c7'
    """
    digest = hashlib.blake2b(rel.replace(os.sep, "/").encode("utf-8"), digest_size=8)
    return "p" + digest.hexdigest()


def read_text(path: Path) -> str:
    """A label file as text: UTF-8 (a BOM is dropped), any line endings; else a one-line error."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise OrpheusError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise OrpheusError(
            f"{path} is not UTF-8 (byte 0x{data[exc.start]:02x} on line {line})",
            hint="save it as UTF-8, e.g. iconv -f latin1 -t utf-8",
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class Skips:
    """How many rows or files were skipped per reason, with the first few as examples."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < SHOWN:
            shown.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class Imported:
    """The outcome of one import: the track table, the (track, tag, val) rows, the skips."""

    tracks: pd.DataFrame
    rows: pd.DataFrame
    skipped: Skips

    @property
    def tags(self) -> int:
        return int(self.rows["tag"].nunique())


class Collector:
    """Takes tracks and labels from a source, checks each path once, and builds `Imported`.

    A path is kept only when it stays inside the audio root (`orpheus.paths.confined`; an
    absolute path under the root is made relative) and names an existing file.
    """

    def __init__(self, audio_root: Path):
        self.root = Path(audio_root)
        self.skipped = Skips()
        self._tracks: dict[str, tuple[str, int, str | None, str | None]] = {}
        self._tags: dict[str, dict[str, float]] = {}
        self._where: dict[str, str] = {}

    def __contains__(self, tid: str) -> bool:
        return tid in self._tracks

    def relative(self, path: str) -> str:
        """`path` relative to the root when it is absolute and lies under it, else as given."""
        if os.path.isabs(path):
            rel = os.path.relpath(os.path.normpath(path), self.root)
            return rel if not rel.startswith(os.pardir) else path
        return path

    def track(
        self,
        where: str,
        tid: str,
        rel: str,
        *,
        artist: str | None = None,
        split: str | None = None,
    ) -> bool:
        """Add a track (False, counted, when its path is refused or missing)."""
        if tid in self._tracks:
            return True
        rel = self.relative(rel)
        full = confined(self.root, rel)
        if full is None:
            self.skipped.add(OUTSIDE, f"{where}: {rel!r}")
            return False
        try:
            size = full.stat().st_size
        except OSError:
            size = -1
        if size < 0 or not full.is_file():
            self.skipped.add(MISSING, f"{where}: {rel}")
            return False
        norm = os.path.normpath(rel).replace(os.sep, "/")
        self._tracks[tid] = (norm, size, artist or None, split)
        self._tags[tid] = {}
        self._where[tid] = where
        return True

    def tag(self, where: str, tid: str, tag: str, val: float = MAX_VAL) -> None:
        """Label track `tid` with `tag`; the same pair twice is a counted duplicate."""
        tags = self._tags[tid]
        if tag in tags:
            self.skipped.add(DUPLICATE, f"{where}: {tag!r} again for {tid}")
            return
        tags[tag] = float(val)

    def result(self) -> Imported:
        """The tracks that have at least one tag, their rows; untagged ones are counted."""
        rows: dict[str, list] = {"track_id": [], "tag": [], "val": []}
        kept: dict[str, list] = {c: [] for c in TRACK_COLUMNS}
        for tid in sorted(self._tracks):
            tags = self._tags[tid]
            if not tags:
                self.skipped.add(NO_TAGS, f"{self._where[tid]}: {tid}")
                continue
            rel, size, artist, split = self._tracks[tid]
            for column, value in zip(TRACK_COLUMNS, (tid, rel, size, artist, split), strict=True):
                kept[column].append(value)
            for tag, val in tags.items():
                rows["track_id"].append(tid)
                rows["tag"].append(tag)
                rows["val"].append(val)
        tracks = pd.DataFrame(kept).astype(TRACK_COLUMNS)
        frame = pd.DataFrame(rows).astype({"track_id": "str", "tag": "str", "val": "float64"})
        return Imported(tracks, frame, self.skipped)


def save_tag_rows(path: Path, rows: pd.DataFrame) -> None:
    """Write (track_id, tag, val) rows as a tag db in the Last.fm schema, atomically.

    `tids(tid)` and `tags(tag)` are numbered from 1 in sorted order; `tid_tag` refers to them
    by rowid, exactly as in the MSD's `lastfm_tags.db`.
    """
    tids, tid_code = np.unique(rows["track_id"].to_numpy(dtype=object), return_inverse=True)
    tags, tag_code = np.unique(rows["tag"].to_numpy(dtype=object), return_inverse=True)
    numbered = zip(
        (tid_code + 1).tolist(), (tag_code + 1).tolist(), rows["val"].tolist(), strict=True
    )
    db.write_tag_db(path, tids.tolist(), tags.tolist(), numbered)
