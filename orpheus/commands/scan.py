"""`orpheus scan [AUDIO_ROOT]`: list the 7digital previews, their headers, and the broken ones.

Also home of the two helpers the three cleaning commands share: atomic Parquet writes and the
per-reason summary table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orpheus.commands._common import console, info, progress, workspace
from orpheus.errors import OrpheusError
from orpheus.workspace import write_atomic_via

TABLE = "data/scan.parquet"
REJECTS = "data/scan_rejects.parquet"


def command(
    ctx: typer.Context,
    audio_root: Annotated[
        Path | None,
        typer.Argument(help="The 7digital folder (default: paths.audio_root in config.json)."),
    ] = None,
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
    """Find every *.clip.mp3 under AUDIO_ROOT, read its header, and reject unreadable files."""
    from orpheus import scan as scan_lib

    ws = workspace(ctx)
    root = _audio_root(ws, audio_root)
    check_workers(workers)
    previous = None if fresh else _previous(ws, root, verify)

    started = time.monotonic()
    with progress(ctx) as bar:
        task = bar.add_task("scanning", total=None)
        result = scan_lib.scan(
            root,
            previous=previous,
            workers=workers,
            verify=verify,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    elapsed = time.monotonic() - started

    save_table(result.table, ws.path(TABLE))
    save_table(result.rejects, ws.path(REJECTS))
    counts = {r: int((result.rejects["reason"] == r).sum()) for r in scan_lib.REASONS}
    ws.register(
        "scan",
        TABLE,
        params={"audio_root": str(root), "verify": verify},
        inputs={"audio": root},
        summary={"rows": len(result.table), "rejects": len(result.rejects)},
    )
    total = len(result.table) + len(result.rejects)
    console.print(reasons_table("scan", total, len(result.table), counts))
    rate = result.read / elapsed if elapsed > 0 else 0.0
    info(
        ctx,
        f"read {result.read} files ({rate:,.0f} files/s), re-used {result.reused} "
        f"unchanged since the last scan; table: {ws.path(TABLE)}",
    )


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


def check_workers(workers: int | None) -> None:
    if workers is not None and workers < 1:
        raise OrpheusError(f"--workers must be at least 1, got {workers}")


def save_table(frame, path: Path) -> None:
    """Write a DataFrame as Parquet through a temp file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic_via(path, lambda fh: frame.to_parquet(fh, index=False))


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
