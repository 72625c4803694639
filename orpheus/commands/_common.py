"""What every command shares: the global options, the workspace, consoles and progress bars."""

from __future__ import annotations

import json
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
