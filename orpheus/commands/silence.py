"""`orpheus silence`: silence statistics of the wrangled tracks, then the threshold filters."""

from __future__ import annotations

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

TABLE = "data/silence.parquet"
REJECTS = "data/silence_rejects.parquet"
STATS = "data/silence_stats.parquet"
JOURNAL = "data/silence.journal"  # statistics of a run in progress, merged into STATS at the end


def command(
    ctx: typer.Context,
    min_size: Annotated[
        int | None, typer.Option(help="Keep files larger than this many bytes (strict).")
    ] = None,
    filter_trim_length: Annotated[
        float | None,
        typer.Option(help="Keep tracks whose trimmed length is at least this (s); 0 = off."),
    ] = None,
    filter_tot_silence: Annotated[
        float | None,
        typer.Option(help="Keep tracks with at most this much mid-track silence (s); 0 = off."),
    ] = None,
    filter_max_silence: Annotated[
        float | None,
        typer.Option(help="Keep tracks whose longest mid-track silence is at most this (s)."),
    ] = None,
    top_db: Annotated[
        float | None, typer.Option(help="Silence is this many dB below the track's peak.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", help="Processes (default: all cores).")
    ] = None,
) -> None:
    """Measure silence in every wrangled track (cached) and keep those within the thresholds.

    Defaults come from the `silence` section of config.json; changing only thresholds
    re-filters from the cached statistics without decoding. Statistics are saved while they are
    computed (`silence.checkpoint_tracks` / `checkpoint_seconds`), so a killed run resumes.
    """
    import pandas as pd

    from orpheus import silence as sil

    ws = workspace(ctx)
    check_workers(workers)
    source = ws.tracks_artifact()  # `wrangle`, or `labels` when labels were imported
    tracks = pd.read_parquet(ws.require(source))
    root = ws.audio_root()
    cfg = ws.settings.silence
    given = {
        "min_size": min_size,
        "filter_trim_length": filter_trim_length,
        "filter_tot_silence": filter_tot_silence,
        "filter_max_silence": filter_max_silence,
        "top_db": top_db,
    }
    params = {k: (v if v is not None else getattr(cfg, k)) for k, v in given.items()}
    _check(params)
    thresholds = sil.Thresholds(**{k: v for k, v in params.items() if k != "top_db"})

    stats_path = ws.path(STATS)
    journal = Journal(
        ws.path(JOURNAL),
        sil.STAT_COLUMNS,
        params={},  # rows are keyed by path, size, mtime and top_db, like the cache's
        every=cfg.checkpoint_tracks,
        seconds=cfg.checkpoint_seconds,
    )
    partial = journal.open()  # the statistics an interrupted run saved
    frames = [pd.read_parquet(stats_path)] if stats_path.exists() else []
    if partial is not None:
        frames.append(partial)
    cache = pd.concat(frames, ignore_index=True) if frames else None
    with progress(ctx) as bar:
        task = bar.add_task("measuring silence", total=len(tracks))
        result = sil.compute_stats(
            root,
            tracks,
            top_db=params["top_db"],
            cache=cache,
            workers=workers,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            checkpoint=journal.add,
        )
    save_table(result.cache, stats_path)
    journal.clear()
    kept, rejects = sil.filter_tracks(tracks, result.stats, thresholds)
    save_table(kept, ws.path(TABLE))
    save_table(rejects, ws.path(REJECTS))

    ws.register(
        "silence",
        TABLE,
        params=params,
        inputs={source: source},
        summary={"rows": len(kept), "rejects": len(rejects)},
    )
    console.print(reasons_table("silence", len(tracks), len(kept), sil.counts(rejects)))
    info(
        ctx,
        f"decoded {result.computed} tracks, re-used {result.reused} cached statistics; "
        f"table: {ws.path(TABLE)}",
    )


def _check(params: dict) -> None:
    for key, value in params.items():
        flag = "--" + key.replace("_", "-")
        if value < 0 or (key == "top_db" and value == 0):
            rule = "positive" if key == "top_db" else "0 or more"
            raise OrpheusError(f"{flag} must be {rule}, got {value}")
