"""A spreadsheet of `path,tags`: the labels a user keeps beside a library.

The first line names the columns (any case): `path` and `tags` are required; `artist` (used
for the split) and `track_id` are optional. Commas separate the columns, or tabs when the
header has a tab. `tags` holds tags separated by `;`; a track's tags may also come on
repeated rows. A tag may carry a weight as a trailing `:NUMBER` (`rock:0.8`, `happy:35`):
weights are scaled so that the file's largest maps to 100 (weights of at most 1 are read as
fractions: 0.8 -> 80); a tag without a weight is present, 100. Paths are relative to the audio
root (absolute ones must lie under it). Without a `track_id` column, IDs are `path_id(path)`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from orpheus.errors import OrpheusError
from orpheus.labels.common import BAD_ROW, MAX_VAL, Collector, path_id, read_text
from orpheus.tagfields import normalise

REQUIRED = ("path", "tags")
_WEIGHT = re.compile(r"^(.*\S)\s*:\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")


def read(paths: list[Path], into: Collector) -> None:
    """Read every CSV/TSV file into `into`."""
    for path in paths:
        _read_one(path, into)


def _read_one(path: Path, into: Collector) -> None:
    text = read_text(path)
    header = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in header else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    names = [n.strip().lower() for n in next(reader, [])]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise OrpheusError(
            f"{path}: no column {', '.join(repr(c) for c in missing)} in the header"
            f" (found {', '.join(repr(n) for n in names) or 'nothing'})",
            hint="the first line must name the columns: path,tags (optional: artist, track_id)",
        )
    col = {n: names.index(n) for n in (*REQUIRED, "artist", "track_id") if n in names}
    parsed = []
    largest = 1.0
    for number, fields in enumerate(reader, 2):
        if not any(f.strip() for f in fields):
            continue
        where = f"{path.name}:{number}"
        if len(fields) != len(names):
            into.skipped.add(BAD_ROW, f"{where}: {len(fields)} fields, {len(names)} expected")
            continue
        rel = fields[col["path"]].strip()
        artist = fields[col["artist"]].strip() if "artist" in col else None
        tid = fields[col["track_id"]].strip() if "track_id" in col else ""
        tags = [_weighted(t) for t in fields[col["tags"]].split(";") if t.strip()]
        largest = max([largest, *(w for _, w in tags if w is not None)])
        tid = tid or path_id(os.path.normpath(into.relative(rel)))
        parsed.append((where, tid, rel, artist, tags))
    for where, tid, rel, artist, tags in parsed:
        if not into.track(where, tid, rel, artist=artist or None):
            continue
        for tag, weight in tags:
            val = MAX_VAL if weight is None else MAX_VAL * weight / largest
            into.tag(where, tid, tag, val)


def _weighted(item: str) -> tuple[str, float | None]:
    """('rock', 0.8) from 'rock:0.8'; ('rock', None) from 'rock'; names normalised."""
    hit = _WEIGHT.match(item.strip())
    if hit is None:
        return normalise(item), None
    return normalise(hit.group(1)), float(hit.group(2))
