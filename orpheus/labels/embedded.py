"""The labels already in a library's files: genre, mood and grouping, read with mutagen through
`orpheus.tagfields` (the same field table the tag writer uses).

Every value becomes a tag `<role>---<value>` (`genre---rock`, `mood---happy`), so the role stays
selectable in `tags.with` / `tags.without` and a predicted tag knows which field it belongs in.
Values are split on the container's separators and normalised (`normalise`); values Orpheus
wrote (listed in its own field) are skipped. The first artist drives the artist split. Track
IDs are `path_id` of the path relative to the root. Metadata is read by a process pool.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from orpheus.audio import audio_files
from orpheus.errors import OrpheusError
from orpheus.labels.common import UNREADABLE, Collector, path_id
from orpheus.tagfields import ARTIST, LABEL_ROLES, TagReadError, read_fields

CHUNK = 64  # files per task


def read(paths: list[Path], into: Collector, workers: int | None = None) -> None:
    """Read the tags of every audio file under each root into `into`."""
    for root in paths:
        if not root.is_dir():
            raise OrpheusError(f"{root} is not a folder", hint="--from files takes audio roots")
        files, _others, problems = audio_files(root)
        for problem in problems:
            into.skipped.add(UNREADABLE, problem)
        rels = [into.relative(str(f)) for f in files]
        for rel, fields in zip(rels, _read_all([str(f) for f in files], workers), strict=True):
            if isinstance(fields, str):
                into.skipped.add(UNREADABLE, f"{rel}: {fields}")
                continue
            tid = path_id(rel)
            artist = fields[ARTIST][0] if fields[ARTIST] else None
            if not into.track(rel, tid, rel, artist=artist):
                continue
            for role in LABEL_ROLES:
                for value in fields[role]:
                    into.tag(rel, tid, f"{role}---{value}")


def _read_all(files: list[str], workers: int | None) -> list[dict | str]:
    """Each file's fields, or the reason its tags cannot be read; in parallel when large."""
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    if workers <= 1:
        return [r for chunk in chunks for r in _read_chunk(chunk)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [r for part in pool.map(_read_chunk, chunks) for r in part]


def _read_chunk(files: list[str]) -> list[dict | str]:
    out: list[dict | str] = []
    for path in files:
        try:
            out.append(read_fields(path))
        except TagReadError as exc:
            out.append(exc.reason)
    return out
