"""Scan of an audio tree: which audio files exist, their headers, and which are broken.

A tree has a layout, recognised from its file names (or given):
- `7digital` (the MSD previews): any `<7digital id>.clip.mp3` in the tree. Only those files
  are scanned, and each row's ID is its 7digital ID (`track_7digitalid`; `wrangle` maps it to
  the MSD track ID through the summary).
- `jamendo` (MTG-Jamendo's audio folder): every audio file is `NN/ID.mp3` or `NN/ID.low.mp3`.
  The ID is the dataset's own, as its TSVs write it: `15/215.mp3` -> `track_0000215`.
- `files` (any other tree, a music library): every file with an extension in
  `orpheus.audio.AUDIO_EXTENSIONS`. The ID is `path_id` of the '/'-separated path relative
  to the root (`Artist/Album/01 Song.flac` -> `p24c3055d21c448c7`): the same on every run and
  machine, and after the root moves, as `labels import --from files|csv` derives it too.
The last two give a `track_id` column where the first has `track_7digitalid`.

The scan reads headers (mutagen; PyAV for the containers mutagen does not know), not audio, so
it runs at thousands of files per second; `verify=True` also decodes each file with the one
decoder (`orpheus.audio.read_audio`). A file that cannot be read is a *reject* with a reason
(`empty-file`, `not-audio`, `unreadable`, ...), never a crash; so is a folder that cannot be
listed, a dangling link, or a link to a folder already scanned. Symlinked folders are followed
(a tree may link to other disks). A tree with no audio file at all is an error.

Paths are stored relative to the root (through the links); the root is the caller's to record.
A previous scan's tables, and the rows an interrupted scan saved through `checkpoint`, make the
scan resumable: a file whose size and mtime are unchanged is not re-read.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orpheus.audio import AUDIO_EXTENSIONS, PROTECTED_CODECS
from orpheus.errors import OrpheusError
from orpheus.labels.common import path_id
from orpheus.labels.jamendo import id_from_path as jamendo_id
from orpheus.msd import SUFFIX, id_from_filename
from orpheus.workspace import walk_tree

SEVEN_DIGITAL, JAMENDO, FILES = "7digital", "jamendo", "files"
LAYOUTS = (SEVEN_DIGITAL, JAMENDO, FILES)
_JAMENDO_PATH = re.compile(r"^[0-9]{2}/[0-9]+(?:\.low)?\.mp3$")

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
    "track_id": "str",
    "clip_length": "float64",
    "channels": "Int64",
    "sample_rate": "Int64",
}
KEY = ["file_path", "file_size", "mtime_ns"]  # a file is re-read when any of these changes
CHUNK = 1024  # files per task: ~0.07 s of headers, against ~2 ms of inter-process traffic
VERIFY_CHUNK = 16  # with --verify a file takes ~20 ms to decode: keep a task well under a second
PRELOAD = (
    "orpheus.scan",
    "mutagen.mp3",
    "mutagen",
)  # what a worker needs, imported once by the fork server
VERIFY_PRELOAD = (*PRELOAD, "orpheus.audio", "soundfile")

Progress = Callable[[int, int], None]  # (files done, files total)
Checkpoint = Callable[[list[dict]], None]  # each batch of newly read rows, as soon as it is read


def columns(layout: str) -> tuple[dict[str, str], dict[str, str]]:
    """The (table, rejects) columns of a layout: its ID column first (module docstring)."""
    if layout == SEVEN_DIGITAL:
        return TABLE_COLUMNS, REJECT_COLUMNS
    return _with_track_id(TABLE_COLUMNS), _with_track_id(REJECT_COLUMNS)


def _with_track_id(cols: dict[str, str]) -> dict[str, str]:
    return {"track_id": "str", **{k: v for k, v in cols.items() if k != "track_7digitalid"}}


def is_candidate(rel: str, layout: str) -> bool:
    """Whether a file at `rel` is one the layout scans (a name that does not fit is a reject)."""
    if layout == SEVEN_DIGITAL:
        return rel.endswith(SUFFIX)
    return os.path.splitext(rel)[1].lower() in AUDIO_EXTENSIONS


def detect_layout(rels: list[str]) -> str:
    """The layout of a tree from its files' relative paths (module docstring)."""
    audio = [r for r in rels if is_candidate(r, FILES)]
    if any(r.endswith(SUFFIX) for r in audio):
        return SEVEN_DIGITAL
    if audio and all(_JAMENDO_PATH.match(r) for r in audio):
        return JAMENDO
    return FILES


def track_ids(rel: str, layout: str) -> tuple[int | None, str | None]:
    """(7digital ID, track ID) of the file at `rel` in `layout`; None where it has none.

    >>> track_ids("1/2/1234.clip.mp3", "7digital"), track_ids("15/215.low.mp3", "jamendo")
    ((1234, None), (None, 'track_0000215'))
    """
    name = rel.rsplit("/", 1)[-1]
    if layout == SEVEN_DIGITAL:
        return id_from_filename(name), None
    if layout == JAMENDO:
        return None, jamendo_id(rel)
    return None, path_id(rel)


@dataclass
class ScanResult:
    """The readable files, the rejects (with `reason`, `detail`), how many were re-used, and
    the tree's layout (its tables' ID column: `columns(layout)`)."""

    table: pd.DataFrame
    rejects: pd.DataFrame
    reused: int
    read: int
    layout: str = SEVEN_DIGITAL


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the root, '/'-separated
    size: int
    mtime_ns: int


def walk(root: str | Path, layout: str | None = None) -> tuple[list[FileEntry], pd.DataFrame, str]:
    """The files `layout` scans under `root` (through symlinked folders), sorted by relative
    path, with size and mtime; the rejects of the walk: `unreadable` entries (that could not be
    listed or stat'ed), and `already-walked` links (to a folder already scanned: not followed
    twice); and the layout (`detect_layout` when None is given).

    A non-regular file is a reject only when it is named like a file the layout scans; an
    entry of unknown type (a dangling link, say) always is, since it may be a folder of audio.
    Raises OrpheusError when the tree holds no such file and no reject.
    """
    root = Path(root)
    if not root.exists():
        raise OrpheusError(f"audio root not found: {root}", hint="pass the folder of your audio")
    if not root.is_dir():
        raise OrpheusError(f"audio root is not a folder: {root}")
    if layout is not None and layout not in LAYOUTS:
        raise OrpheusError(f"unknown layout {layout!r}", hint="choose " + ", ".join(LAYOUTS))
    files, problems = [], []
    try:
        for entry in walk_tree(root):
            if entry.problem is None:
                if is_candidate(entry.rel, FILES):
                    files.append(FileEntry(entry.rel, entry.stat.st_size, entry.stat.st_mtime_ns))
            elif entry.stat is not None and stat.S_ISDIR(entry.stat.st_mode):
                problems.append((entry.rel, ALREADY_WALKED, entry.problem, True))
            elif entry.stat is None or is_candidate(entry.rel, FILES):
                problems.append((entry.rel, UNREADABLE, entry.problem, entry.stat is None))
    except OSError as exc:
        raise OrpheusError(f"cannot read the audio root {root}: {exc.strerror or exc}") from None
    layout = layout or detect_layout([e.path for e in files])
    files = sorted((e for e in files if is_candidate(e.path, layout)), key=lambda e: e.path)
    rejects = [
        _problem(rel, reason, detail, layout)
        for rel, reason, detail, always in problems
        if always or is_candidate(rel, layout)
    ]
    if not files and not rejects:
        wanted = f"*{SUFFIX}" if layout == SEVEN_DIGITAL else ", ".join(sorted(AUDIO_EXTENSIONS))
        raise OrpheusError(
            f"no audio files under {root}",
            hint=f"the scan looked for {wanted} files (through folder links); pass the folder"
            " that holds your audio",
        )
    return files, _frame(rejects, columns(layout)[1]), layout


def _problem(rel: str, reason: str, detail: str, layout: str) -> dict:
    d7, tid = track_ids(rel, layout)
    return {
        "track_7digitalid": d7,
        "track_id": tid,
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
    layout: str | None = None,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> ScanResult:
    """Scan `root` in `layout` (None: recognise it); re-use rows of `previous` (table, rejects)
    and of `partial` whose size and mtime match.

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
    files, unreadable, layout = walk(root, layout)
    listing = pd.DataFrame(
        {
            "file_path": pd.array([e.path for e in files], dtype="str"),
            "file_size": np.array([e.size for e in files], dtype="int64"),
            "mtime_ns": np.array([e.mtime_ns for e in files], dtype="int64"),
        }
    )
    kept_table, kept_rejects, fresh_mask = _reuse(listing, previous, partial, layout)
    fresh = [e for e, is_fresh in zip(files, fresh_mask, strict=True) if is_fresh]
    reused = len(files) - len(fresh)
    if progress:
        progress(reused, len(files))
    rows: list[dict] = []
    for chunk_rows in _run(root, fresh, workers, verify, layout):
        rows.extend(chunk_rows)
        if checkpoint:
            checkpoint(chunk_rows)
        if progress:
            progress(reused + len(rows), len(files))
    table, rejects = split_rows(rows_frame(rows), layout)
    table_columns, reject_columns = columns(layout)
    table = _concat(kept_table, table, table_columns)
    rejects = _concat(_concat(kept_rejects, rejects, reject_columns), unreadable, reject_columns)
    return ScanResult(table, rejects, reused=reused, read=len(fresh), layout=layout)


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows of either table (as `checkpoint` receives them) as one typed frame (ROW_COLUMNS)."""
    frame = pd.DataFrame.from_records(rows, columns=list(ROW_COLUMNS))
    return frame.astype(ROW_COLUMNS)


def split_rows(rows: pd.DataFrame, layout: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A frame of ROW_COLUMNS as (table, rejects) of `layout`: a row with a `reason` is a
    reject. The IDs are derived again from the paths, so rows saved by a scan that read the
    tree in another layout still fit."""
    ids = [track_ids(rel, layout) for rel in rows["file_path"]]
    rows = rows.assign(
        track_7digitalid=pd.array([d7 for d7, _ in ids], dtype="Int64"),
        track_id=pd.array([tid for _, tid in ids], dtype="str"),
    )
    table_columns, reject_columns = columns(layout)
    bad = rows["reason"].notna()
    table = rows.loc[~bad, list(table_columns)].astype(table_columns)
    rejects = rows.loc[bad, list(reject_columns)].astype(reject_columns)
    return (
        table.sort_values("file_path", ignore_index=True),
        rejects.sort_values("file_path", ignore_index=True),
    )


def _reuse(
    listing: pd.DataFrame,
    previous: tuple[pd.DataFrame, pd.DataFrame] | None,
    partial: pd.DataFrame | None,
    layout: str,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Rows of `previous` and `partial` still valid for `listing`, and which files to read."""
    frames = (*(previous or ()), partial)
    parts = [_as_rows(f) for f in frames if f is not None and not f.empty and _complete(f)]
    if not parts:
        table_columns, reject_columns = columns(layout)
        return _frame([], table_columns), _frame([], reject_columns), np.ones(len(listing), bool)
    known = pd.concat(parts, ignore_index=True).drop_duplicates(KEY, keep="last")
    valid = known.merge(listing[KEY], on=KEY, how="inner")
    kept_table, kept_rejects = split_rows(valid, layout)
    return kept_table, kept_rejects, ~_key_index(listing).isin(_key_index(valid))


def _complete(frame: pd.DataFrame) -> bool:
    """Whether `frame` has every column of the table or of the rejects, IDs aside (they are
    derived again from the paths); else it is not re-used."""
    ids = {"track_7digitalid", "track_id"}
    return any(set(c) - ids <= set(frame.columns) for c in (TABLE_COLUMNS, REJECT_COLUMNS))


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


def probe(root: str, entry: FileEntry, verify: bool, layout: str = SEVEN_DIGITAL) -> dict:
    """One file's row: header facts, or a `reason` and `detail` when it cannot be read."""
    row = {"file_path": entry.path, "file_size": entry.size, "mtime_ns": entry.mtime_ns}
    name = entry.path.rsplit("/", 1)[-1]
    row["track_7digitalid"], row["track_id"] = track_ids(entry.path, layout)
    if layout == SEVEN_DIGITAL and row["track_7digitalid"] is None:
        return row | {"reason": BAD_NAME, "detail": f"'{name}' is not <7digital id>{SUFFIX}"}
    if layout == JAMENDO and not _JAMENDO_PATH.match(entry.path):
        return row | {"reason": BAD_NAME, "detail": f"'{entry.path}' is not NN/ID.mp3"}
    if entry.size == 0:
        return row | {"reason": EMPTY_FILE, "detail": "0 bytes"}
    full = os.path.join(root, entry.path)
    try:
        length, channels, rate = _header(full)
    except _NotAudio as exc:
        return row | {"reason": NOT_AUDIO, "detail": str(exc)}
    except OSError as exc:
        return row | {"reason": UNREADABLE, "detail": _first_line(exc)}
    if verify:
        from orpheus.audio import AudioError, read_audio

        try:
            read_audio(full)
        except AudioError as exc:
            return row | {"reason": NOT_AUDIO, "detail": exc.message}
    return row | {"clip_length": length, "channels": channels, "sample_rate": rate}


class _NotAudio(Exception):
    """A file whose header says it holds no audio Orpheus can use."""


def _header(full: str) -> tuple[float, int, int]:
    """(seconds, channels, sample rate) from a file's header: mutagen for the formats it knows
    (MP3 read as MP3 alone, the fast path of a 7digital tree), PyAV for the others."""
    from mutagen import File, MutagenError
    from mutagen.mp3 import MP3

    try:
        media = MP3(full) if full.lower().endswith(".mp3") else File(full)
    except (MutagenError, OSError, ValueError, EOFError) as exc:
        if isinstance(exc, OSError) or isinstance(exc.__cause__, OSError):
            raise OSError(_first_line(exc)) from None
        raise _NotAudio(_first_line(exc)) from None
    if media is None:
        return _av_header(full)
    info = media.info
    if getattr(info, "codec", "") in PROTECTED_CODECS:
        raise _NotAudio("protected (encrypted) audio")
    length = float(getattr(info, "length", 0) or 0)
    channels, rate = getattr(info, "channels", 0), getattr(info, "sample_rate", 0)
    if length <= 0 or not channels or not rate:
        if isinstance(media, MP3):
            raise _NotAudio("no MPEG frames")
        return _av_header(full)  # e.g. an MP4 whose header leaves the audio facts out
    return length, int(channels), int(rate)


def _av_header(full: str) -> tuple[float, int, int]:
    """The header facts through FFmpeg (PyAV), for the containers mutagen does not read."""
    import av

    try:
        with av.open(full) as container:
            if not container.streams.audio:
                raise _NotAudio("no audio stream")
            stream = container.streams.audio[0]
            if (stream.codec_context.codec_tag or "").strip().lower() in PROTECTED_CODECS:
                raise _NotAudio("protected (encrypted) audio")
            if container.duration:
                length = container.duration / av.time_base
            else:
                length = float((stream.duration or 0) * (stream.time_base or 0))
            ctx = stream.codec_context
            if length <= 0 or not ctx.channels or not ctx.sample_rate:
                raise _NotAudio("no audio length in the header")
            return float(length), int(ctx.channels), int(ctx.sample_rate)
    except av.error.FileNotFoundError as exc:
        raise OSError(_first_line(exc)) from None
    except (av.error.FFmpegError, ValueError) as exc:
        raise _NotAudio(_first_line(exc)) from None


def _probe_chunk(root: str, entries: list[FileEntry], verify: bool, layout: str) -> list[dict]:
    return [probe(root, e, verify, layout) for e in entries]


def _run(root: Path, files: list[FileEntry], workers: int | None, verify: bool, layout: str):
    """Chunks of rows as they are read: here when 1 worker, else from one pool made once."""
    from orpheus import pool

    size = VERIFY_CHUNK if verify else CHUNK
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield _probe_chunk(str(root), chunk, verify, layout)
        return
    preload = VERIFY_PRELOAD if verify else PRELOAD
    with pool.executor(min(workers, len(chunks)), preload) as ex:
        futures = [ex.submit(_probe_chunk, str(root), c, verify, layout) for c in chunks]
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
