"""Label sources other than the MSD + Last.fm: a CSV of `path,tags`, MTG-Jamendo's TSVs,
MagnaTagATune's `annotations_final.csv`, and the genre/mood/grouping tags already in the files.

Every source ends as the same two artifacts, so the later stages never learn where labels
came from: a tag database in the Last.fm schema (`orpheus.labels.common.save_tag_rows`) and a
track table in the role `wrangle`'s output has on the MSD path (`track_id`, `file_path`
relative to the audio root, `file_size`, and where known `artist` and the dataset's `split`).
One module per source reads its format into a `Collector`, which checks paths and counts
what it skips; `splits` decides train/valid/test from the dataset, the artists or the hash.
"""

from __future__ import annotations

from pathlib import Path

from orpheus.errors import OrpheusError

SOURCES = ("csv", "jamendo", "mtat", "files")


def read_source(source: str, paths: list[Path], audio_root: Path, *, workers: int | None = None):
    """Read one source's label files (or, for `files`, its audio roots) into an `Imported`."""
    from orpheus.labels import csvfile, embedded, jamendo, mtat
    from orpheus.labels.common import Collector

    if source not in SOURCES:
        raise OrpheusError(f"unknown label source {source!r}", hint="choose " + ", ".join(SOURCES))
    for path in paths:
        if not path.exists():
            raise OrpheusError(f"file not found: {path}")
    into = Collector(audio_root)
    if source == "files":
        embedded.read(paths, into, workers=workers)
    else:
        {"csv": csvfile, "jamendo": jamendo, "mtat": mtat}[source].read(paths, into)
    return into.result()
