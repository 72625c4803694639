"""Million Song Dataset inputs: the summary HDF5, 7digital paths, and the two errata files.

The summary file holds three row-aligned compound tables (`metadata/songs`, `analysis/songs`,
`musicbrainz/songs`); row i describes the same track in all three. It is read in blocks of rows,
all needed fields of a table at once, so each compressed chunk is decompressed once and the
1,000,000-row file never sits in memory as fixed-width 1 KiB strings.

The errata parsers never stop on a bad line: they return what they could read plus the line
numbers they skipped, so the caller can report them (the original crashed on a blank line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from orpheus.errors import OrpheusError

SUFFIX = ".clip.mp3"
TRACK_ID = re.compile(r"TR[A-Z0-9]{16}")

# table -> (hdf5 field, output column). These are the only fields Orpheus needs.
SUMMARY_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "metadata/songs": (
        ("track_7digitalid", "track_7digitalid"),
        ("song_id", "song_id"),
        ("artist_name", "artist"),
        ("title", "title"),
        ("release", "release"),
    ),
    "analysis/songs": (("track_id", "track_id"), ("duration", "duration")),
    "musicbrainz/songs": (("year", "year"),),
}
SUMMARY_COLUMNS = [col for fields in SUMMARY_FIELDS.values() for _, col in fields]
TEXT_COLUMNS = {"song_id", "artist", "title", "release", "track_id"}
BLOCK_ROWS = 16384


# --- 7digital paths ---------------------------------------------------------------------------


def audio_relpath(track_7digitalid: int) -> str:
    """Where a preview lives under the audio root: `<d1>/<d2>/<id>.clip.mp3` (first two digits)."""
    digits = str(int(track_7digitalid))
    d2 = digits[1] if len(digits) > 1 else "0"
    return f"{digits[0]}/{d2}/{digits}{SUFFIX}"


def id_from_filename(name: str) -> int | None:
    """The 7digital ID of a preview file name (`2573962.clip.mp3` -> 2573962), None if not one."""
    if not name.endswith(SUFFIX):
        return None
    stem = name[: -len(SUFFIX)]
    if not stem.isascii() or not stem.isdigit():
        return None
    return int(stem)


# --- summary HDF5 -----------------------------------------------------------------------------


def read_summary(path: str | Path) -> pd.DataFrame:
    """The summary's track table: one row per HDF5 row, columns `SUMMARY_COLUMNS`.

    Raises OrpheusError naming every missing table or field, or when the file is not HDF5 or
    the tables are not row-aligned.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise OrpheusError(f"MSD summary not found: {path}", hint="pass --msd-summary H5")
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise OrpheusError(f"{path}: not an HDF5 file") from None
    with h5:
        _check_summary(h5, path)
        n = h5["metadata/songs"].shape[0]
        columns: dict[str, object] = {}
        for table, fields in SUMMARY_FIELDS.items():
            columns.update(_read_fields(h5[table], fields, n))
    frame = pd.DataFrame(columns, columns=SUMMARY_COLUMNS)
    frame["track_7digitalid"] = frame["track_7digitalid"].astype("int64")
    frame["year"] = frame["year"].astype("int64")
    frame["duration"] = frame["duration"].astype("float64")
    return frame


def _check_summary(h5, path: Path) -> None:
    """Name everything missing (tables, then fields) in one message, and check the row counts."""
    missing: list[str] = []
    lengths: dict[str, int] = {}
    for table, fields in SUMMARY_FIELDS.items():
        ds = h5.get(table)
        if ds is None or not hasattr(ds, "dtype") or ds.dtype.names is None:
            missing.append(f"table {table}")
            continue
        lengths[table] = ds.shape[0]
        for name, col in fields:
            if name not in ds.dtype.names:
                missing.append(f"{table}.{name}")
            elif (ds.dtype[name].kind == "S") != (col in TEXT_COLUMNS):
                want = "text" if col in TEXT_COLUMNS else "a number"
                missing.append(f"{table}.{name} as {want} (found {ds.dtype[name]})")
    if missing:
        raise OrpheusError(
            f"{path}: not an MSD summary file: missing {', '.join(missing)}",
            hint="expected the msd_summary_file.h5 layout (metadata/analysis/musicbrainz songs)",
        )
    if len(set(lengths.values())) > 1:
        counts = ", ".join(f"{t} {n}" for t, n in lengths.items())
        raise OrpheusError(f"{path}: the summary tables are not row-aligned ({counts} rows)")


def _read_fields(ds, fields: tuple[tuple[str, str], ...], n: int) -> dict[str, object]:
    import pyarrow as pa

    names = [name for name, _ in fields]
    parts: dict[str, list] = {col: [] for _, col in fields}
    for start in range(0, n, BLOCK_ROWS):
        block = ds.fields(names)[start : start + BLOCK_ROWS]
        for name, col in fields:
            values = block[name] if block.dtype.names else block
            # copy numbers: a view would keep the whole block (all fields) alive
            parts[col].append(_decode(values) if values.dtype.kind == "S" else values.copy())
        del block
    out: dict[str, object] = {}
    for name, col in fields:
        if ds.dtype[name].kind == "S":
            out[col] = pd.array(pa.chunked_array(parts[col], type=pa.string()), dtype="str")
        else:
            out[col] = np.concatenate(parts[col]) if parts[col] else np.array([])
    return out


def _decode(values: np.ndarray):
    """Fixed-width NUL-padded bytes -> an Arrow string array (invalid UTF-8 replaced)."""
    import pyarrow as pa

    raw = pa.array(values, type=pa.binary())
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array([b.decode("utf-8", "replace") for b in values.tolist()], pa.string())


# --- errata files -----------------------------------------------------------------------------


@dataclass
class Errata:
    """What a parser read, and the (line number, text) of every line it had to skip."""

    skipped: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Duplicates(Errata):
    groups: list[list[str]] = field(default_factory=list)


@dataclass
class Mismatches(Errata):
    track_ids: list[str] = field(default_factory=list)


def read_duplicates(path: str | Path) -> Duplicates:
    """Parse msd_duplicates.txt: `#` comments, `%` lines open a group, then one track ID a line.

    A member line before any `%` line or without a track ID is skipped and reported; blank
    lines are ignored. Groups with no members are dropped.
    """
    out = Duplicates()
    current: list[str] | None = None
    for number, line in _lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("%"):
            current = []
            out.groups.append(current)
            continue
        match = TRACK_ID.match(text)
        if match is None or current is None:
            out.skipped.append((number, text))
            continue
        current.append(match.group())
    out.groups = [g for g in out.groups if g]
    return out


def read_mismatches(path: str | Path) -> Mismatches:
    """Parse sid_mismatches.txt: the track ID on each line (the first `TR` + 16 characters).

    Lines without a track ID are skipped and reported; blank and `#` lines are ignored.
    """
    out = Mismatches()
    for number, line in _lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = TRACK_ID.search(text)
        if match is None:
            out.skipped.append((number, text))
        else:
            out.track_ids.append(match.group())
    return out


def _lines(path: str | Path):
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise OrpheusError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise OrpheusError(f"{path}: is a directory, expected a text file") from None
    except OSError as exc:
        raise OrpheusError(f"{path}: cannot read ({exc.strerror})") from None
    return enumerate(text.splitlines(), start=1)
