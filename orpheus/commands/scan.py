"""`orpheus scan [AUDIO_ROOT]`: list the audio files of a tree (7digital previews, MTG-Jamendo's
`NN/ID.mp3`, or any library), their headers, and the broken ones."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from orpheus.commands._common import (
    check_workers,
    console,
    info,
    progress,
    reasons_table,
    workspace,
)
from orpheus.errors import OrpheusError
from orpheus.tables import Journal, save_table

TABLE = "data/scan.parquet"
REJECTS = "data/scan_rejects.parquet"
JOURNAL = "data/scan.journal"  # the rows of a scan in progress; gone once the tables are saved

# What follows a scan, per layout: the MSD path's wrangle, or the import of the labels.
NEXT = {
    "7digital": "orpheus wrangle",
    "jamendo": "orpheus labels import --from jamendo SPLIT_DIR_OR_TSV --audio-root {root}",
    "files": "orpheus labels import --from files {root}"
    " (or --from csv LABELS.csv --audio-root {root})",
}


def command(
    ctx: typer.Context,
    audio_root: Annotated[
        Path | None,
        typer.Argument(help="The audio folder (default: paths.audio_root in config.json)."),
    ] = None,
    layout: Annotated[
        str,
        typer.Option(
            help="auto (recognise it), 7digital (MSD previews <id>.clip.mp3), jamendo"
            " (NN/ID.mp3) or files (every audio file; IDs from the relative paths)."
        ),
    ] = "auto",
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", help="Processes (default: all cores).")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Also decode every file (slower, catches more).")
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Re-read every file, ignoring the previous scan.")
    ] = False,
) -> None:
    """Find the audio files under AUDIO_ROOT, read their headers, and reject unreadable files."""
    from orpheus import scan as scan_lib

    ws = workspace(ctx)
    root = _audio_root(ws, audio_root)
    check_workers(workers)
    if layout != "auto" and layout not in scan_lib.LAYOUTS:
        raise OrpheusError(
            f"unknown --layout {layout!r}", hint="choose auto, " + ", ".join(scan_lib.LAYOUTS)
        )
    cfg = ws.settings.scan
    journal = Journal(
        ws.path(JOURNAL),
        scan_lib.ROW_COLUMNS,
        params={"audio_root": str(root), "verify": verify, "layout": layout},
        every=cfg.checkpoint_files,
        seconds=cfg.checkpoint_seconds,
    )
    if fresh:
        journal.clear()
    partial = journal.open()
    previous = None if fresh else _previous(ws, root, verify)

    started = time.monotonic()
    with progress(ctx) as bar:
        task = bar.add_task("scanning", total=None)
        result = scan_lib.scan(
            root,
            previous=previous,
            partial=partial,
            workers=workers,
            verify=verify,
            layout=None if layout == "auto" else layout,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            checkpoint=journal.add,
        )
    elapsed = time.monotonic() - started

    save_table(result.table, ws.path(TABLE))
    save_table(result.rejects, ws.path(REJECTS))
    journal.clear()
    counts = {r: int((result.rejects["reason"] == r).sum()) for r in scan_lib.REASONS}
    ws.register(
        "scan",
        TABLE,
        params={"audio_root": str(root), "verify": verify, "layout": result.layout},
        inputs={"audio": root},
        summary={"rows": len(result.table), "rejects": len(result.rejects)},
    )
    total = len(result.table) + len(result.rejects)
    console.print(reasons_table("scan", total, len(result.table), counts))
    rate = result.read / elapsed if elapsed > 0 else 0.0
    info(
        ctx,
        f"{result.layout} layout: read {result.read} files ({rate:,.0f} files/s), re-used"
        f" {result.reused} unchanged since the last (or an interrupted) scan; table:"
        f" {ws.path(TABLE)}",
    )
    info(ctx, "next: " + NEXT[result.layout].format(root=root))


def _audio_root(ws, given: Path | None) -> Path:
    root = given if given is not None else ws.input_path("audio_root")
    if root is None:
        raise OrpheusError(
            "no audio root given",
            hint="pass AUDIO_ROOT, or set it: orpheus config set paths.audio_root DIR",
        )
    root = Path(root).expanduser()
    if not root.exists():
        raise OrpheusError(f"audio root not found: {root}")
    if not root.is_dir():
        raise OrpheusError(f"audio root is not a folder: {root}")
    return root.resolve()


def _previous(ws, root: Path, verify: bool):
    """The last scan's tables, when it scanned the same root at least as thoroughly."""
    import pandas as pd

    entry = ws.entry("scan")
    if entry is None or entry["params"].get("audio_root") != str(root):
        return None
    if verify and not entry["params"].get("verify"):
        return None
    table, rejects = ws.path(TABLE), ws.path(REJECTS)
    if not table.exists() or not rejects.exists():
        return None
    return pd.read_parquet(table), pd.read_parquet(rejects)
