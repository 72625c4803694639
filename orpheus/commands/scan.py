"""`orpheus scan [AUDIO_ROOT]`: list the 7digital previews, their headers, and the broken ones.

Also home of the helpers the cleaning commands share: atomic Parquet writes, the journal that
saves a run's progress while it runs, and the per-reason summary table.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from orpheus.commands._common import console, info, progress, workspace
from orpheus.errors import OrpheusError
from orpheus.workspace import write_atomic_via, write_json_atomic

if TYPE_CHECKING:
    import pandas as pd

TABLE = "data/scan.parquet"
REJECTS = "data/scan_rejects.parquet"
JOURNAL = "data/scan.journal"  # the rows of a scan in progress; gone once the tables are saved


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
    cfg = ws.config["scan"]
    journal = Journal(
        ws.path(JOURNAL),
        scan_lib.ROW_COLUMNS,
        params={"audio_root": str(root), "verify": verify},
        every=cfg["checkpoint_files"],
        seconds=cfg["checkpoint_seconds"],
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
        f"unchanged since the last (or an interrupted) scan; table: {ws.path(TABLE)}",
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


class Journal:
    """The rows of a run in progress, saved while it runs so that a killed run's work is re-used.

    Rows are buffered and written as numbered Parquet chunks, each atomically, every `every` rows
    or `seconds` seconds, whichever comes first (checked as each batch arrives): a kill loses at
    most that much work. The folder records the parameters its rows depend on; a run with other
    parameters starts it afresh. `clear()` it once the final tables are saved.
    """

    def __init__(
        self, folder: Path, columns: dict[str, str], *, params: dict, every: int, seconds: float
    ):
        self.folder, self.columns, self.params = Path(folder), columns, params
        self.every, self.seconds = every, seconds
        self._pending: list[dict] = []
        self._last = time.monotonic()
        self._next = 1

    def open(self) -> pd.DataFrame | None:
        """The rows saved by interrupted runs with the same parameters (None if there are none),
        and start saving this run's rows after them."""
        import pandas as pd

        params = self.folder / "params.json"
        if not params.is_file() or json.loads(params.read_text(encoding="utf-8")) != self.params:
            self.clear()
            self.folder.mkdir(parents=True)
            write_json_atomic(params, self.params)
        chunks = sorted(self.folder.glob("*.parquet"))
        self._next = max((int(c.stem) for c in chunks if c.stem.isdigit()), default=0) + 1
        self._last = time.monotonic()
        frames = []
        for chunk in chunks:
            try:
                frames.append(pd.read_parquet(chunk).astype(self.columns))
            except (OSError, ValueError, KeyError) as exc:
                raise OrpheusError(
                    f"{chunk}: cannot read this saved progress ({exc})",
                    hint=f"delete the folder {self.folder} to start over",
                ) from None
        return pd.concat(frames, ignore_index=True) if frames else None

    def add(self, rows: list[dict]) -> None:
        """Buffer `rows`; save them once `every` rows or `seconds` seconds have gathered."""
        self._pending.extend(rows)
        if len(self._pending) >= self.every or time.monotonic() - self._last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        """Save the buffered rows as the next chunk."""
        import pandas as pd

        if self._pending:
            self.folder.mkdir(parents=True, exist_ok=True)  # a concurrent run may have cleared it
            frame = pd.DataFrame.from_records(self._pending, columns=list(self.columns))
            save_table(frame.astype(self.columns), self.folder / f"{self._next:06d}.parquet")
            self._next += 1
            self._pending = []
        self._last = time.monotonic()

    def clear(self) -> None:
        """Forget every saved row (the run is complete, or its parameters changed)."""
        self._pending = []
        shutil.rmtree(self.folder, ignore_errors=True)


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
