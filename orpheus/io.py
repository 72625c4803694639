"""Atomic writes and JSON files: the one implementation every module uses.

A file is written under a temp name beside its destination (`.NAME.XXXX.tmp`, same folder so
the rename never crosses a filesystem), flushed to disk, then renamed over the destination:
readers see the old file or the whole new one, never half of it, and a killed writer leaves
only a temp file, which the next run ignores or sweeps.

Permissions: `tempfile.mkstemp` creates 0600 files. A new file gets instead what the user's
umask gives (0644 under the usual 022), and a replaced file keeps its own mode, so `-o`,
`--plot` and `--embeddings` outputs are as readable as a file `open(..., "w")` would make.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from orpheus.errors import OrpheusError


def umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The mode a new `path` should get: the existing file's, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; once the block has written it, fsync it and rename it
    over `path`. On any error or interrupt the temp file is removed and `path` is untouched.

    For writers that open files themselves (SQLite, Keras, TFRecord framing); plain bytes go
    through `write_atomic_via`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OrpheusError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, _mode_for(path))
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic_via(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(file)` on a temp file beside `path`, then rename it into place."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write `data` (text is UTF-8) to `path` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    write_atomic_via(path, lambda fh: fh.write(payload))


def write_json_atomic(path: str | Path, obj: Any, *, indent: int = 2) -> None:
    """`obj` as JSON (keys in insertion order, a final newline), written atomically."""
    write_atomic(path, json.dumps(obj, indent=indent) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON in `path`; a missing, unreadable or corrupt file is a one-line OrpheusError."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OrpheusError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OrpheusError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise OrpheusError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None


@contextlib.contextmanager
def staged_folder(dest: Path) -> Iterator[Path]:
    """Yield a temp folder beside `dest` (which must be absent or empty); on success it becomes
    `dest`, on any failure or interrupt it is removed, so nothing half-written is left."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise OrpheusError(
            f"{dest} already exists and is not empty", hint="choose another folder or remove it"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        os.chmod(tmp, 0o777 & ~umask())
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
