"""File paths read from tables, confined to the folder they are declared relative to.

The scan, wrangle and silence tables store each audio file's path relative to the audio root.
Those tables are files a user can edit or receive from elsewhere, so a stage that opens the
audio must not follow a row to `../../etc/passwd` or `/etc/passwd`. The check is lexical (no
symlink resolution), so a 7digital tree that links to folders on other disks still works.
"""

from __future__ import annotations

import os
from pathlib import Path


def confined(root: str | Path, rel: str) -> Path | None:
    """`root / rel` when `rel` is a relative path that stays inside `root`, else None."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        return None
    if os.path.isabs(rel) or Path(rel).drive:
        return None
    norm = os.path.normpath(rel)
    if norm in (".", os.pardir) or norm.startswith(os.pardir + os.sep):
        return None
    return Path(root) / norm


def outside_message(rel: object) -> str:
    """The one reason every stage gives for a row whose path leaves its root."""
    return f"file path {rel!r} is outside the audio root (refused)"
