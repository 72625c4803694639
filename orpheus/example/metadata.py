"""Writers for the MSD-shaped metadata of the example and scale corpora: the summary HDF5 (the
real MSD compound dtypes, field for field), the Last.fm SQLite db, and the two errata files in
MSD's own text formats.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from orpheus.lastfm.db import write_tag_db

# Field names, order and dtypes of the real MSD files (see reference TRAXLZU12903D05F94.h5).
METADATA_SONGS = np.dtype(
    [
        ("analyzer_version", "S32"),
        ("artist_7digitalid", "<i4"),
        ("artist_familiarity", "<f8"),
        ("artist_hotttnesss", "<f8"),
        ("artist_id", "S32"),
        ("artist_latitude", "<f8"),
        ("artist_location", "S1024"),
        ("artist_longitude", "<f8"),
        ("artist_mbid", "S40"),
        ("artist_name", "S1024"),
        ("artist_playmeid", "<i4"),
        ("genre", "S1024"),
        ("idx_artist_terms", "<i4"),
        ("idx_similar_artists", "<i4"),
        ("release", "S1024"),
        ("release_7digitalid", "<i4"),
        ("song_hotttnesss", "<f8"),
        ("song_id", "S32"),
        ("title", "S1024"),
        ("track_7digitalid", "<i4"),
    ]
)
ANALYSIS_SONGS = np.dtype(
    [
        ("analysis_sample_rate", "<i4"),
        ("audio_md5", "S32"),
        ("danceability", "<f8"),
        ("duration", "<f8"),
        ("end_of_fade_in", "<f8"),
        ("energy", "<f8"),
        *[
            (f"idx_{name}", "<i4")
            for name in (
                "bars_confidence",
                "bars_start",
                "beats_confidence",
                "beats_start",
                "sections_confidence",
                "sections_start",
                "segments_confidence",
                "segments_loudness_max",
                "segments_loudness_max_time",
                "segments_loudness_start",
                "segments_pitches",
                "segments_start",
                "segments_timbre",
                "tatums_confidence",
                "tatums_start",
            )
        ],
        ("key", "<i4"),
        ("key_confidence", "<f8"),
        ("loudness", "<f8"),
        ("mode", "<i4"),
        ("mode_confidence", "<f8"),
        ("start_of_fade_out", "<f8"),
        ("tempo", "<f8"),
        ("time_signature", "<i4"),
        ("time_signature_confidence", "<f8"),
        ("track_id", "S32"),
    ]
)
MUSICBRAINZ_SONGS = np.dtype([("idx_artist_mbtags", "<i4"), ("year", "<i4")])
TABLES = {
    "metadata/songs": METADATA_SONGS,
    "analysis/songs": ANALYSIS_SONGS,
    "musicbrainz/songs": MUSICBRAINZ_SONGS,
}

DUPLICATES_HEADER = (
    "# MSD duplicates: groups of track IDs that are the same song",
    "# (same artist, title and audio, different releases or uploads).",
    "# Format: a line starting with '%' opens a group; each following line",
    "# holds one track ID of that group.",
    "# Keep one track per group when training or evaluating.",
    "# This file belongs to an Orpheus example corpus (synthetic data).",
    "#",
)


def empty_tables(n: int) -> dict[str, np.ndarray]:
    """Zero-filled row-aligned tables for n tracks, ready to fill field by field."""
    return {name: np.zeros(n, dtype) for name, dtype in TABLES.items()}


def write_summary(
    path: Path,
    tables: dict[str, np.ndarray] | Iterable[dict[str, np.ndarray]],
    n: int | None = None,
) -> None:
    """Write the three compound tables (gzip, chunked like MSD), from one block or a stream."""
    import h5py

    blocks: Iterator[dict[str, np.ndarray]] = iter([tables] if isinstance(tables, dict) else tables)
    first = next(blocks)
    total = n if n is not None else len(first["metadata/songs"])
    with h5py.File(path, "w") as f:
        sets = {
            name: f.create_dataset(
                name,
                shape=(total,),
                dtype=TABLES[name],
                maxshape=(None,),
                chunks=(min(max(total, 1), 512),),
                compression="gzip",
                compression_opts=1,
            )
            for name in TABLES
        }
        start = 0
        for block in itertools.chain([first], blocks):
            k = len(block["metadata/songs"])
            for name, ds in sets.items():
                ds[start : start + k] = block[name]
            start += k


def write_lastfm(
    path: Path, tids: list[str], tags: list[str], rows: Iterable[tuple[int, int, float]]
) -> None:
    """Last.fm's schema as downloaded (no indexes): rowids of `tids` and `tags` are the numbers
    `tid_tag` refers to."""
    write_tag_db(path, tids, tags, rows, indexes=False)


def write_duplicates(path: Path, groups: list[tuple[str, list[str]]]) -> None:
    """MSD's duplicates format: a 7-line `#` header, `%` lines opening groups, one ID a line."""
    lines = list(DUPLICATES_HEADER)
    for k, (label, ids) in enumerate(groups, 1):
        lines.append(f"%{k} {label}")
        lines.extend(ids)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def mismatch_line(song_id: str, track_id: str, echo: tuple[str, str], msd: tuple[str, str]) -> str:
    """One line of MSD's `sid_mismatches.txt` (its own spacing)."""
    return f"ERROR: <{song_id} {track_id}> {echo[0]}  -  {echo[1]}  !=  {msd[0]}  -  {msd[1]}"
