"""`orpheus wrangle`: join the scan with the MSD summary and drop untrustworthy tracks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orpheus.commands._common import console, err_console, info, progress, reasons_table, workspace
from orpheus.errors import EXIT_PARTIAL, OrpheusError
from orpheus.tables import save_table

TABLE = "data/wrangle.parquet"
REJECTS = "data/wrangle_rejects.parquet"
SCAN_REJECTS = "scan_rejects.parquet"
SHOWN_LINES = 10


def command(
    ctx: typer.Context,
    msd_summary: Annotated[
        Path | None, typer.Option(help="msd_summary_file.h5 (default: paths.msd_summary).")
    ] = None,
    lastfm_db: Annotated[
        Path | None, typer.Option(help="lastfm_tags.db (default: paths.lastfm_db).")
    ] = None,
    duplicates: Annotated[
        Path | None, typer.Option(help="msd_duplicates.txt (default: paths.duplicates).")
    ] = None,
    mismatches: Annotated[
        Path | None, typer.Option(help="sid_mismatches.txt (default: paths.mismatches).")
    ] = None,
) -> None:
    """Map 7digital IDs to MSD tracks; drop ambiguous, mismatched, broken, untagged, duplicates.

    Without a Last.fm database, duplicates or mismatches file, that step is skipped (and said).
    """

    from orpheus import msd
    from orpheus import wrangle as wr

    ws = workspace(ctx)
    scan_path = ws.require("scan")
    paths = {
        "msd_summary": _input(ws, "msd_summary", msd_summary, "--msd-summary"),
        "lastfm_db": _input(ws, "lastfm_db", lastfm_db, "--lastfm-db"),
        "duplicates": _input(ws, "duplicates", duplicates, "--duplicates"),
        "mismatches": _input(ws, "mismatches", mismatches, "--mismatches"),
    }
    if paths["msd_summary"] is None:
        raise OrpheusError(
            "no MSD summary file given",
            hint="pass --msd-summary H5, or: orpheus config set paths.msd_summary H5",
        )
    for key in ("mismatches", "lastfm_db", "duplicates"):
        if paths[key] is None:
            flag = "--" + key.replace("_", "-")
            info(ctx, f"[yellow]warning:[/yellow] no {flag}: that step is skipped")

    skipped_lines = 0
    with progress(ctx) as bar:
        task = bar.add_task("wrangling", total=6)
        scan = _scanned(ctx, scan_path)
        bar.update(task, advance=1, description="reading the MSD summary")
        summary = msd.read_summary(paths["msd_summary"])
        bar.update(task, advance=1, description="reading Last.fm track ids")
        tagged = wr.tagged_track_ids(paths["lastfm_db"]) if paths["lastfm_db"] else None
        bar.update(task, advance=1, description="reading the errata")
        dup = msd.read_duplicates(paths["duplicates"]) if paths["duplicates"] else None
        mism = msd.read_mismatches(paths["mismatches"]) if paths["mismatches"] else None
        bar.update(task, advance=1, description="joining and filtering")
        result = wr.wrangle(
            scan,
            summary,
            mismatches=mism.track_ids if mism else None,
            tagged=tagged,
            duplicates=dup.groups if dup else None,
        )
        bar.update(task, advance=1, description="writing")
        save_table(result.table, ws.path(TABLE))
        save_table(result.rejects, ws.path(REJECTS))
        bar.update(task, advance=1, description="done")

    for parsed, key in ((dup, "duplicates"), (mism, "mismatches")):
        if parsed is not None and parsed.skipped:
            skipped_lines += len(parsed.skipped)
            _report_skipped(paths[key], parsed.skipped)

    ws.register(
        "wrangle",
        TABLE,
        params={k: (str(v) if v else None) for k, v in paths.items()},
        inputs={"scan": "scan", **{k: v for k, v in paths.items() if v is not None}},
        summary={"rows": len(result.table), "rejects": len(result.rejects)},
    )
    console.print(reasons_table("wrangle", len(scan), len(result.table), result.counts()))
    info(ctx, f"table: {ws.path(TABLE)}; rejects: {ws.path(REJECTS)}")
    if skipped_lines:
        raise typer.Exit(EXIT_PARTIAL)


def _scanned(ctx: typer.Context, scan_path: Path):
    """The scan's files, its rejects included (they are dropped as broken audio, counted)."""
    import pandas as pd

    from orpheus import wrangle as wr

    table = pd.read_parquet(scan_path)
    rejects_path = scan_path.with_name(SCAN_REJECTS)
    if not rejects_path.exists():
        info(ctx, f"[yellow]warning:[/yellow] {rejects_path} is missing: broken files not counted")
        return table
    return wr.scanned_files(table, pd.read_parquet(rejects_path))


def _input(ws, key: str, given: Path | None, flag: str) -> Path | None:
    path = given if given is not None else ws.input_path(key)
    if path is None:
        return None
    path = Path(path).expanduser()
    if not path.exists():
        source = flag if given is not None else f"paths.{key} in config.json"
        raise OrpheusError(f"file not found: {path} (from {source})")
    if not path.is_file():
        raise OrpheusError(f"{path} is not a file (from {flag})")
    return path.resolve()


def _report_skipped(path: Path, skipped: list[tuple[int, str]]) -> None:
    numbers = ", ".join(str(n) for n, _ in skipped[:SHOWN_LINES])
    more = f" and {len(skipped) - SHOWN_LINES} more" if len(skipped) > SHOWN_LINES else ""
    err_console.print(
        f"[yellow]warning:[/yellow] {path.name}: skipped {len(skipped)} malformed "
        f"line(s): {numbers}{more}",
        markup=True,
    )
