"""What every command shares: the global options, the workspace, consoles and progress bars."""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
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


def debug(ctx: typer.Context, message: str) -> None:
    """A detail shown only with -v."""
    if options(ctx).verbose:
        err_console.print(f"[dim]{message}[/dim]")


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
