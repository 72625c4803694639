"""Build a corpus folder all at once: into a temp sibling, renamed into place only on success."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from orpheus.errors import OrpheusError


@contextlib.contextmanager
def staged(dest: Path) -> Iterator[Path]:
    """Yield a temp folder beside `dest` (which must be absent or empty); on success it becomes
    `dest`, on any failure or interrupt it is removed, so nothing half-written is left."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise OrpheusError(
            f"{dest} already exists and is not empty", hint="choose another folder or remove it"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    except OSError as exc:
        raise OrpheusError(f"cannot write to {dest.parent}: {exc.strerror}") from None
    try:
        yield tmp
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
