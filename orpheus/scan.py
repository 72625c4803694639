"""Scan of a 7digital preview tree: which `*.clip.mp3` exist, their headers, and which are broken.

The scan reads MP3 headers (mutagen), not audio, so it runs at thousands of files per second;
`verify=True` also decodes each file with the one decoder (`orpheus.audio.read_audio`). A file
that cannot be read is a *reject* with a reason (`empty-file`, `not-audio`, `unreadable`, ...),
never a crash; so is a folder that cannot be listed, a dangling link, or a link to a folder
already scanned. Symlinked folders are followed (a tree may link to other disks).

Paths are stored relative to the root (through the links); the root is the caller's to record.
A previous scan's tables, and the rows an interrupted scan saved through `checkpoint`, make the
scan resumable: a file whose size and mtime are unchanged is not re-read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orpheus.errors import OrpheusError
from orpheus.msd import SUFFIX, id_from_filename
from orpheus.workspace import walk_tree

EMPTY_FILE = "empty-file"
NOT_AUDIO = "not-audio"
BAD_NAME = "bad-name"
UNREADABLE = "unreadable"
ALREADY_WALKED = "already-walked"  # a link to a folder already scanned under another path
REASONS = (EMPTY_FILE, NOT_AUDIO, BAD_NAME, UNREADABLE, ALREADY_WALKED)

TABLE_COLUMNS = {
    "track_7digitalid": "int64",
    "file_path": "str",
    "file_size": "int64",
    "mtime_ns": "int64",
    "clip_length": "float64",
    "channels": "int64",
    "sample_rate": "int64",
}
REJECT_COLUMNS = {
    "track_7digitalid": "Int64",
    "file_path": "str",
    "file_size": "int64",
    "mtime_ns": "int64",
    "reason": "str",
    "detail": "str",
}
# One row of either table, as `checkpoint` hands them out and `scan(partial=...)` takes them back.
ROW_COLUMNS = REJECT_COLUMNS | {
    "clip_length": "float64",
    "channels": "Int64",
    "sample_rate": "Int64",
}
KEY = ["file_path", "file_size", "mtime_ns"]  # a file is re-read when any of these changes
CHUNK = 1024  # files per task: ~0.07 s of headers, against ~2 ms of inter-process traffic
VERIFY_CHUNK = 16  # with --verify a file takes ~20 ms to decode: keep a task well under a second
PRELOAD = ("orpheus.scan", "mutagen.mp3")  # what a worker needs, imported once by the fork server
VERIFY_PRELOAD = (*PRELOAD, "orpheus.audio", "soundfile")

Progress = Callable[[int, int], None]  # (files done, files total)
Checkpoint = Callable[[list[dict]], None]  # each batch of newly read rows, as soon as it is read


@dataclass
class ScanResult:
    """The readable files, the rejects (with `reason`, `detail`), and how many were re-used."""

    table: pd.DataFrame
    rejects: pd.DataFrame
    reused: int
    read: int


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the root, '/'-separated
    size: int
    mtime_ns: int


def walk(root: str | Path) -> tuple[list[FileEntry], pd.DataFrame]:
    """Every `*.clip.mp3` under `root` (through symlinked folders), sorted by relative path, with
    size and mtime; and the rejects of the walk: `unreadable` entries (that could not be listed
    or stat'ed), and `already-walked` links (to a folder already scanned: not followed twice).

    A non-regular file is a reject only when it is named like a preview; an entry of unknown
    type (a dangling link, say) always is, since it may be a folder of previews.
    """
    root = Path(root)
    if not root.exists():
        raise OrpheusError(f"audio root not found: {root}", hint="pass the 7digital folder")
    if not root.is_dir():
        raise OrpheusError(f"audio root is not a folder: {root}")
    files, problems = [], []
    try:
        for entry in walk_tree(root):
            is_preview = entry.rel.endswith(SUFFIX)
            if entry.problem is None:
                if is_preview:
                    files.append(FileEntry(entry.rel, entry.stat.st_size, entry.stat.st_mtime_ns))
            elif entry.stat is not None and stat.S_ISDIR(entry.stat.st_mode):
                problems.append(_problem(entry.rel, ALREADY_WALKED, entry.problem))
            elif entry.stat is None or is_preview:
                problems.append(_problem(entry.rel, UNREADABLE, entry.problem))
    except OSError as exc:
        raise OrpheusError(f"cannot read the audio root {root}: {exc.strerror or exc}") from None
    files.sort(key=lambda e: e.path)
    return files, _frame(problems, REJECT_COLUMNS)


def _problem(rel: str, reason: str, detail: str) -> dict:
    name = rel.rsplit("/", 1)[-1]
    track = id_from_filename(name)
    return {
        "track_7digitalid": track,
        "file_path": rel,
        "file_size": -1,  # unknown, as for a file that vanished (silence uses -1 too)
        "mtime_ns": -1,
        "reason": reason,
        "detail": detail,
    }


def scan(
    root: str | Path,
    *,
    previous: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    partial: pd.DataFrame | None = None,
    workers: int | None = None,
    verify: bool = False,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> ScanResult:
    """Scan `root`; re-use rows of `previous` (table, rejects) and of `partial` whose size and
    mtime match.

    `previous` must come from a scan of the same root (and the same `verify`); `partial` holds
    the rows (ROW_COLUMNS) an interrupted scan handed to its `checkpoint`, and wins over
    `previous`. `checkpoint`, if given, receives every batch of newly read rows as soon as it is
    read (a batch is at most `CHUNK` files, `VERIFY_CHUNK` with `verify`), so the caller can
    save them and a killed scan loses only the batches in flight.
    """
    root = Path(root).resolve()
    if (workers or os.cpu_count() or 1) > 1:  # the pool's imports run while the tree is walked
        from orpheus import pool

        pool.start(VERIFY_PRELOAD if verify else PRELOAD)
    files, unreadable = walk(root)
    listing = pd.DataFrame(
        {
            "file_path": pd.array([e.path for e in files], dtype="str"),
            "file_size": np.array([e.size for e in files], dtype="int64"),
            "mtime_ns": np.array([e.mtime_ns for e in files], dtype="int64"),
        }
    )
    kept_table, kept_rejects, fresh_mask = _reuse(listing, previous, partial)
    fresh = [e for e, is_fresh in zip(files, fresh_mask, strict=True) if is_fresh]
    reused = len(files) - len(fresh)
    if progress:
        progress(reused, len(files))
    rows: list[dict] = []
    for chunk_rows in _run(root, fresh, workers, verify):
        rows.extend(chunk_rows)
        if checkpoint:
            checkpoint(chunk_rows)
        if progress:
            progress(reused + len(rows), len(files))
    table, rejects = split_rows(rows_frame(rows))
    table = _concat(kept_table, table, TABLE_COLUMNS)
    rejects = _concat(_concat(kept_rejects, rejects, REJECT_COLUMNS), unreadable, REJECT_COLUMNS)
    return ScanResult(table, rejects, reused=reused, read=len(fresh))


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of either table (as `checkpoint` receives them) as one typed frame (ROW_COLUMNS)."""
    frame = pd.DataFrame.from_records(rows, columns=list(ROW_COLUMNS))
    return frame.astype(ROW_COLUMNS)


def split_rows(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A frame of ROW_COLUMNS as (table, rejects): a row with a `reason` is a reject."""
    bad = rows["reason"].notna()
    table = rows.loc[~bad, list(TABLE_COLUMNS)].astype(TABLE_COLUMNS)
    rejects = rows.loc[bad, list(REJECT_COLUMNS)].astype(REJECT_COLUMNS)
    return (
        table.sort_values("file_path", ignore_index=True),
        rejects.sort_values("file_path", ignore_index=True),
    )


def _reuse(
    listing: pd.DataFrame,
    previous: tuple[pd.DataFrame, pd.DataFrame] | None,
    partial: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Rows of `previous` and `partial` still valid for `listing`, and which files to read."""
    frames = (*(previous or ()), partial)
    parts = [_as_rows(f) for f in frames if f is not None and not f.empty and _complete(f)]
    if not parts:
        return _frame([], TABLE_COLUMNS), _frame([], REJECT_COLUMNS), np.ones(len(listing), bool)
    known = pd.concat(parts, ignore_index=True).drop_duplicates(KEY, keep="last")
    valid = known.merge(listing[KEY], on=KEY, how="inner")
    kept_table, kept_rejects = split_rows(valid)
    return kept_table, kept_rejects, ~_key_index(listing).isin(_key_index(valid))


def _complete(frame: pd.DataFrame) -> bool:
    """Whether `frame` has every column of the table or of the rejects (else it is not re-used)."""
    return any(set(columns) <= set(frame.columns) for columns in (TABLE_COLUMNS, REJECT_COLUMNS))


def _as_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Either table (or rows) reindexed to ROW_COLUMNS; a table has no `reason` (all missing)."""
    return frame.reindex(columns=list(ROW_COLUMNS)).astype(ROW_COLUMNS)


def _key_index(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[KEY])


def _concat(a: pd.DataFrame, b: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    parts = [f for f in (a, b) if not f.empty]
    if not parts:
        return _frame([], columns)
    frame = pd.concat(parts, ignore_index=True).astype(columns)
    return frame.sort_values("file_path", ignore_index=True)


def probe(root: str, entry: FileEntry, verify: bool) -> dict:
    """One file's row: header facts, or a `reason` and `detail` when it cannot be read."""
    from mutagen import MutagenError
    from mutagen.mp3 import MP3

    row = {"file_path": entry.path, "file_size": entry.size, "mtime_ns": entry.mtime_ns}
    name = entry.path.rsplit("/", 1)[-1]
    track = id_from_filename(name)
    row["track_7digitalid"] = track
    if track is None:
        return row | {"reason": BAD_NAME, "detail": f"'{name}' is not <7digital id>{SUFFIX}"}
    if entry.size == 0:
        return row | {"reason": EMPTY_FILE, "detail": "0 bytes"}
    full = os.path.join(root, entry.path)
    try:
        info = MP3(full).info
    except (MutagenError, OSError, ValueError, EOFError) as exc:
        if isinstance(exc, OSError) or isinstance(exc.__cause__, OSError):
            return row | {"reason": UNREADABLE, "detail": _first_line(exc)}
        return row | {"reason": NOT_AUDIO, "detail": _first_line(exc)}
    if not info.length or info.length <= 0:
        return row | {"reason": NOT_AUDIO, "detail": "no MPEG frames"}
    if verify:
        from orpheus.audio import AudioError, read_audio

        try:
            read_audio(full)
        except AudioError as exc:
            return row | {"reason": NOT_AUDIO, "detail": exc.message}
    return row | {
        "clip_length": float(info.length),
        "channels": int(info.channels),
        "sample_rate": int(info.sample_rate),
    }


def _probe_chunk(root: str, entries: list[FileEntry], verify: bool) -> list[dict]:
    return [probe(root, e, verify) for e in entries]


def _run(root: Path, files: list[FileEntry], workers: int | None, verify: bool):
    """Chunks of rows as they are read: here when 1 worker, else from one pool made once."""
    from orpheus import pool

    size = VERIFY_CHUNK if verify else CHUNK
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield _probe_chunk(str(root), chunk, verify)
        return
    preload = VERIFY_PRELOAD if verify else PRELOAD
    with pool.executor(min(workers, len(chunks)), preload) as ex:
        futures = [ex.submit(_probe_chunk, str(root), c, verify) for c in chunks]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:  # an error, or a caller that stops early: do not read the chunks left
            ex.shutdown(cancel_futures=True)


def _frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    frame = frame.astype(columns)
    return frame.sort_values("file_path", ignore_index=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
