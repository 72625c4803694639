"""MagnaTagATune's `annotations_final.csv`: tab-separated, every field in double quotes;
`clip_id`, one 0/1 column per tag (188), `mp3_path` last (`f/artist-album-01-title-30-59.mp3`).

Track IDs are the clip IDs. The annotations name no artist, but every clip's file name starts
with it (`american_bach_soloists-j_s__bach_solo_cantatas-01-...`): that prefix is taken as the
artist, so that the clips of one song, and of one artist, stay in one split.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from orpheus.errors import OrpheusError
from orpheus.labels.common import BAD_ROW, DUPLICATE, Collector, read_text


def read(paths: list[Path], into: Collector) -> None:
    """Read annotation files into `into`."""
    for path in paths:
        _read_one(path, into)


def _read_one(path: Path, into: Collector) -> None:
    reader = csv.reader(io.StringIO(read_text(path)), delimiter="\t", quotechar='"')
    header = [h.strip() for h in next(reader, [])]
    if len(header) < 3 or header[0] != "clip_id" or header[-1] != "mp3_path":
        first, last = (header[0], header[-1]) if header else ("", "")
        raise OrpheusError(
            f"{path}: not a MagnaTagATune annotations file (columns {first!r} ... {last!r})",
            hint="expected tab-separated columns clip_id, the 0/1 tag columns, mp3_path",
        )
    tags = header[1:-1]
    for number, fields in enumerate(reader, 2):
        if not any(f.strip() for f in fields):
            continue
        where = f"{path.name}:{number}"
        if len(fields) != len(header) or any(f.strip() not in ("0", "1") for f in fields[1:-1]):
            into.skipped.add(BAD_ROW, f"{where}: not clip_id, {len(tags)} 0/1 values, mp3_path")
            continue
        tid, rel = fields[0].strip(), fields[-1].strip()
        if tid in into:
            into.skipped.add(DUPLICATE, f"{where}: clip {tid} again")
            continue
        if not rel:  # MTAT has a few clips with no file
            into.skipped.add(BAD_ROW, f"{where}: clip {tid} has no mp3_path")
            continue
        artist = Path(rel).name.split("-", 1)[0] or None
        if not into.track(where, tid, rel, artist=artist):
            continue
        for tag, flag in zip(tags, fields[1:-1], strict=True):
            if flag.strip() == "1":
                into.tag(where, tid, tag)
