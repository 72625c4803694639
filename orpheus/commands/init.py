"""`orpheus init PATH [--example]`: make a workspace (config + manifest), optionally with the
embedded example corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orpheus.commands._common import info, options, progress
from orpheus.errors import OrpheusError
from orpheus.workspace import Workspace

# Where the example corpus puts each input, as `paths` keys of config.json.
EXAMPLE_PATHS = {
    "audio_root": "7digital",
    "msd_summary": "msd_summary_file.h5",
    "lastfm_db": "lastfm_tags.db",
    "duplicates": "msd_duplicates.txt",
    "mismatches": "sid_mismatches.txt",
}


def command(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(help="Folder for the workspace (default: -w, else the current folder)."),
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Also write the example corpus into PATH/example.")
    ] = False,
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
    ws = Workspace.create(root, force=force)
    info(ctx, f"workspace ready: {ws.root}")
    if example:
        _add_example(ctx, ws, tracks=tracks, seed=seed)
    info(ctx, "next: orpheus " + ("-w " + str(root) + " " if path else "") + "status")


def _add_example(ctx: typer.Context, ws: Workspace, *, tracks: int, seed: int) -> None:
    from orpheus import example

    dest = ws.path("example")
    with progress(ctx) as bar:
        task = bar.add_task("rendering example tracks", total=tracks)
        truth = example.build(
            dest,
            tracks=tracks,
            seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    use_example(ws, Path("example"), truth)
    info(ctx, f"example corpus: {tracks} tracks in {dest} (paths set in config.json)")


def use_example(ws: Workspace, folder: Path, truth: dict) -> None:
    """Point the workspace's `paths` at an example corpus (relative to the workspace, or
    absolute) and apply the config the corpus asks for (thresholds and model size)."""
    cfg = ws.config
    cfg["paths"].update({key: str(folder / name) for key, name in EXAMPLE_PATHS.items()})
    for section, values in truth.get("config", {}).items():
        cfg[section].update(values)
    ws.save_config(cfg)
