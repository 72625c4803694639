"""Scan of a 7digital preview tree: which `*.clip.mp3` exist, their headers, and which are broken.

The scan reads MP3 headers (mutagen), not audio, so it runs at thousands of files per second;
`verify=True` also decodes each file with the one decoder (`orpheus.audio.read_audio`). A file
that cannot be read is a *reject* with a reason (`empty-file`, `not-audio`), never a crash.

Paths are stored relative to the root; the root is the caller's to record. A previous scan's
tables make the scan resumable: a file whose size and mtime are unchanged is not re-read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orpheus.errors import OrpheusError
from orpheus.msd import SUFFIX, id_from_filename

EMPTY_FILE = "empty-file"
NOT_AUDIO = "not-audio"
BAD_NAME = "bad-name"
REASONS = (EMPTY_FILE, NOT_AUDIO, BAD_NAME)

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
KEY = ["file_path", "file_size", "mtime_ns"]  # a file is re-read when any of these changes
CHUNK = 256  # files per task: large enough to amortise inter-process traffic

Progress = Callable[[int, int], None]  # (files done, files total)


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


def walk(root: str | Path) -> list[FileEntry]:
    """Every `*.clip.mp3` under `root`, sorted by relative path, with size and mtime."""
    root = Path(root)
    if not root.exists():
        raise OrpheusError(f"audio root not found: {root}", hint="pass the 7digital folder")
    if not root.is_dir():
        raise OrpheusError(f"audio root is not a folder: {root}")
    found = list(_walk(str(root), ""))
    found.sort(key=lambda e: e.path)
    return found


def _walk(top: str, prefix: str) -> Iterator[FileEntry]:
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        rel = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, rel + "/")
        elif entry.name.endswith(SUFFIX):
            try:
                st = entry.stat()
            except OSError:
                continue
            yield FileEntry(rel, st.st_size, st.st_mtime_ns)


def scan(
    root: str | Path,
    *,
    previous: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    workers: int | None = None,
    verify: bool = False,
    progress: Progress | None = None,
) -> ScanResult:
    """Scan `root`; re-use rows of `previous` (table, rejects) whose size and mtime match.

    `previous` must come from a scan of the same root (and the same `verify`).
    """
    root = Path(root).resolve()
    files = walk(root)
    listing = pd.DataFrame(
        {
            "file_path": pd.array([e.path for e in files], dtype="str"),
            "file_size": np.array([e.size for e in files], dtype="int64"),
            "mtime_ns": np.array([e.mtime_ns for e in files], dtype="int64"),
        }
    )
    kept_table, kept_rejects, fresh_mask = _reuse(listing, previous)
    fresh = [e for e, is_fresh in zip(files, fresh_mask, strict=True) if is_fresh]
    reused = len(files) - len(fresh)
    if progress:
        progress(reused, len(files))
    rows: list[dict] = []
    for chunk_rows in _run(root, fresh, workers, verify):
        rows.extend(chunk_rows)
        if progress:
            progress(reused + len(rows), len(files))
    table, rejects = _split(rows)
    table = _concat(kept_table, table, TABLE_COLUMNS)
    rejects = _concat(kept_rejects, rejects, REJECT_COLUMNS)
    return ScanResult(table, rejects, reused=reused, read=len(fresh))


def _reuse(
    listing: pd.DataFrame, previous: tuple[pd.DataFrame, pd.DataFrame] | None
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Rows of the previous (table, rejects) still valid for `listing`, and which files to read."""
    table, rejects = previous if previous is not None else (None, None)
    kept_table = _still_valid(table, TABLE_COLUMNS, listing)
    kept_rejects = _still_valid(rejects, REJECT_COLUMNS, listing)
    known = _key_index(pd.concat([kept_table[KEY], kept_rejects[KEY]]))
    return kept_table, kept_rejects, ~_key_index(listing).isin(known)


def _still_valid(
    frame: pd.DataFrame | None, columns: dict[str, str], listing: pd.DataFrame
) -> pd.DataFrame:
    """The rows of `frame` whose path, size and mtime match a file in `listing`."""
    if frame is None or frame.empty or not set(columns) <= set(frame.columns):
        return _frame([], columns)
    return frame[list(columns)].astype(columns).merge(listing[KEY], on=KEY, how="inner")


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
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield _probe_chunk(str(root), chunk, verify)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
        futures = [pool.submit(_probe_chunk, str(root), c, verify) for c in chunks]
        for future in as_completed(futures):
            yield future.result()


def _split(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ok = [r for r in rows if r.get("reason") is None]
    bad = [r for r in rows if r.get("reason") is not None]
    table = _frame(ok, TABLE_COLUMNS)
    rejects = _frame(bad, REJECT_COLUMNS)
    return table, rejects


def _frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    frame = frame.astype(columns)
    return frame.sort_values("file_path", ignore_index=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
