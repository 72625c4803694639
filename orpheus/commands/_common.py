"""What every command shares: the global options, the workspace, consoles and progress bars."""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from orpheus.errors import OrpheusError
from orpheus.workspace import Workspace

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class GlobalOptions:
    """The options given before the command name (`orpheus -w WS -q scan ...`)."""

    workspace: Path | None = None
    verbose: bool = False
    quiet: bool = False


def options(ctx: typer.Context) -> GlobalOptions:
    root = ctx.find_root()
    if not isinstance(root.obj, GlobalOptions):
        root.obj = GlobalOptions()
    return root.obj


def workspace(ctx: typer.Context) -> Workspace:
    """The workspace named by -w, $ORPHEUS_WORKSPACE or the current folder (or an error)."""
    return Workspace.open(options(ctx).workspace)


def info(ctx: typer.Context, message: str) -> None:
    """A progress message on stderr, silenced by -q."""
    if not options(ctx).quiet:
        err_console.print(message)


def progress(ctx: typer.Context | None = None) -> Progress:
    """A rich progress bar with count, rate and ETA on stderr (hidden with -q)."""
    quiet = ctx is not None and options(ctx).quiet
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
        transient=False,
    )


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout, plain (no colour, no wrapping)."""
    typer.echo(json.dumps(obj, indent=2, default=str))


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports one module with the process's stderr (fd 2) sent to /dev/null.

    TensorFlow's C++ runtime prints start-up lines (oneDNN, CUDA stubs) straight to fd 2 while
    it is imported, ignoring TF_CPP_MIN_LOG_LEVEL; a CLI should not. Python exceptions raised by
    the import still propagate.
    """

    def __init__(self, name: str):
        self.name = name
        self.loader: importlib.abc.Loader | None = None

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        if sys.stderr is None:  # started with stderr closed (`2>&-`): nothing to silence
            self.loader.exec_module(module)
            return
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            self.loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's native start-up logging for the rest of this process (not with -v)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _QuietImport) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


# libmpg123's lines about a damaged MP3 (libsndfile decodes MP3 with it, and it writes to fd 2).
DECODER_NOTES = re.compile(
    rb"(Note|Warning|\[[^\]]*\] warning): ("
    rb"Illegal Audio-MPEG-Header|Trying to resync|Hit end of \(available\) data|Skipped \d+ bytes"
    rb"|Xing stream size|Encountered more data after announced end|Big change \(MPEG version"
    rb"|Cannot read next header|Giving up resync)"
)
_notes_filter: threading.Thread | None = None


def quiet_decoder_notes() -> None:
    """Drop libmpg123's notes about damaged MP3s from stderr for the rest of this process.

    Every stage that decodes audio already reports a damaged file in one line of its own, but
    libmpg123 also prints "Note: Illegal Audio-MPEG-Header ..." and the like straight to fd 2,
    several lines per file. Here Python's sys.stderr moves to a duplicate of the real stderr
    (rich output is unchanged and still sees a terminal), fd 2 becomes a pipe, and a thread
    copies each line written to it to the real stderr unless it is such a note. At exit fd 2
    is restored and the pipe drained. Only for a process whose sys.stderr is its own (not
    under a test runner that captures it).
    """
    global _notes_filter
    if _notes_filter is not None or sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = os.fdopen(
        real, "w", encoding=sys.__stderr__.encoding, errors="backslashreplace", buffering=1
    )
    _notes_filter = threading.Thread(
        target=_copy_lines, args=(read_end, real), name="stderr-notes-filter", daemon=True
    )
    _notes_filter.start()
    atexit.register(_restore_stderr, real)


def _copy_lines(read_end: int, real: int) -> None:
    with os.fdopen(read_end, "rb") as pipe:
        for line in pipe:
            if DECODER_NOTES.match(line):
                continue
            try:
                os.write(real, line)
            except OSError:  # stderr closed or its reader gone: keep draining, or writers block
                pass


def _restore_stderr(real: int) -> None:
    sys.stderr.flush()
    os.dup2(real, 2)  # closes the pipe's last write end: the thread drains it and stops
    if _notes_filter is not None:
        _notes_filter.join(timeout=2)


def check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise OrpheusError(f"--workers must be at least 1, got {workers}")


def reasons_table(stage: str, total: int, kept: int, counts: dict[str, int]) -> Table:
    """The end-of-command summary: how many came in, how many were dropped for each reason."""
    table = Table(title=f"{stage}: {kept} of {total} kept", title_justify="left")
    table.add_column("outcome")
    table.add_column("tracks", justify="right")
    table.add_column("share", justify="right")
    for i, (reason, n) in enumerate(counts.items()):
        style = "red" if n else "dim"
        last = i == len(counts) - 1
        table.add_row(f"[{style}]{reason}[/{style}]", str(n), _share(n, total), end_section=last)
    table.add_row("[green]kept[/green]", str(kept), _share(kept, total))
    return table


def _share(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"
