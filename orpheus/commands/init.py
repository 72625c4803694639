"""`orpheus init PATH [--example]`: make a workspace (config + manifest), optionally with the
embedded example corpus."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from orpheus.commands._common import info, options, progress
from orpheus.errors import OrpheusError
from orpheus.workspace import Workspace


def command(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(help="Folder for the workspace (default: -w, else the current folder)."),
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Also write the example corpus into PATH/example.")
    ] = False,
    layout: Annotated[
        str,
        typer.Option(
            help="The example's shape: msd (7digital previews, MSD summary, Last.fm tags),"
            " jamendo (MTG-Jamendo's TSVs, split files and NN/ID.mp3) or library"
            " (Artist/Album/NN Title.ext in mixed formats, genre and mood in the files)."
        ),
    ] = "msd",
    tracks: Annotated[int, typer.Option(help="Example tracks to render.")] = 200,
    seed: Annotated[int, typer.Option(help="Example corpus seed (same seed, same files).")] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Rewrite config.json of an existing workspace.")
    ] = False,
) -> None:
    """Create a workspace: config.json (the original defaults) and manifest.json."""
    root = path or options(ctx).workspace or Path(".")
    if example and tracks <= 0:
        raise OrpheusError(f"--tracks must be a positive number, got {tracks}")
    if layout != "msd" and not example:
        raise OrpheusError("--layout shapes the example corpus", hint="add --example")
    if example:  # checked before the workspace is made; the example package loads pandas
        from orpheus.example.layouts import LAYOUTS, add_example, import_command

        if layout not in LAYOUTS:
            raise OrpheusError(f"unknown --layout {layout!r}", hint="choose " + ", ".join(LAYOUTS))
    ws = Workspace.create(root, force=force)
    info(ctx, f"workspace ready: {ws.root}")
    ws_args = "-w " + str(root) + " " if path else ""
    if example:
        with progress(ctx) as bar:
            task = bar.add_task("rendering example tracks", total=tracks)
            add_example(
                ws,
                layout,
                tracks=tracks,
                seed=seed,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        info(ctx, f"example corpus: {tracks} tracks in {ws.path('example')} (config.json set)")
        if layout != "msd":
            args = import_command(root, layout)
            info(ctx, f"next: orpheus {ws_args}{shlex.join(args)}")
            return
    info(ctx, f"next: orpheus {ws_args}status")


def use_example(ws: Workspace, folder: Path, truth: dict) -> None:
    """Point the workspace at an example corpus (`orpheus.example.layouts.use_example`)."""
    from orpheus.example.layouts import use_example as use

    use(ws, folder, truth)
