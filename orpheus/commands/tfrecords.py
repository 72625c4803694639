"""`orpheus tfrecords build | inspect`: write the kept tracks and clean tags as TFRecords, look."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orpheus.commands._common import console, err_console, info, progress, workspace
from orpheus.errors import EXIT_PARTIAL, OrpheusError
from orpheus.paths import confined, outside_message

app = typer.Typer(help="TFRecords: the training data, one Example per track.", no_args_is_help=True)

FORMAT_HELP = "log-mel or waveform (default: tfrecords.format in config.json)."
SPLIT_HINT = (
    "more tracks, a larger share for that split (orpheus config set model-training.split"
    " '[70,15,15]'), or fewer rare tags (orpheus tags clean --min-tracks N) fix it"
)


@app.command()
def build(
    ctx: typer.Context,
    fmt: Annotated[str | None, typer.Option("--format", help=FORMAT_HELP)] = None,
    sr: Annotated[int | None, typer.Option("--sr", help="Sample rate (Hz).")] = None,
    mels: Annotated[int | None, typer.Option("--mels", help="Mel bands (log-mel).")] = None,
    shards: Annotated[
        int | None, typer.Option(help="Number of files (default: one per 500 tracks).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", help="Processes (default: all cores).")
    ] = None,
    runner: Annotated[str, typer.Option(help="local (process pool) or beam.")] = "local",
    beam_options: Annotated[
        str | None,
        typer.Option(help='Apache Beam pipeline options, e.g. "--runner=DirectRunner".'),
    ] = None,
    gzip: Annotated[bool, typer.Option("--gzip", help="GZIP-compress the shards.")] = False,
) -> None:
    """Encode every kept track (silence table) with its clean tags into sharded TFRecords.

    Resumable: run it again after an interruption and finished shards are kept.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    from orpheus import records
    from orpheus.audio import LogMelParams
    from orpheus.labels import splits
    from orpheus.lastfm.db import LastFm

    ws = workspace(ctx)
    settings = ws.settings
    tcfg, split = settings.tfrecords, settings.model_training.split
    if workers is not None and workers < 1:
        raise OrpheusError(f"--workers must be at least 1, got {workers}")
    if shards is not None and shards < 1:
        raise OrpheusError(f"--shards must be at least 1, got {shards}")
    for flag, value in (("--sr", sr), ("--mels", mels)):
        if value is not None and value < 1:
            raise OrpheusError(f"{flag} must be positive, got {value}")
    params = LogMelParams(
        sample_rate=sr or tcfg.sample_rate,
        n_fft=tcfg.n_fft,
        hop_length=tcfg.hop_length,
        n_mels=mels or tcfg.n_mels,
    )
    spec = records.FeatureSpec(fmt or tcfg.format, params)
    n_shards = shards if shards is not None else tcfg.shards
    compression = "GZIP" if gzip else tcfg.compression

    silence = ws.require("silence")
    present = set(pq.read_schema(silence).names)
    wanted = ["track_id", "file_path", *({"artist", "split"} & present)]  # from labels import
    table = pd.read_parquet(silence, columns=wanted)
    assigned, split_source = splits.assign(table, split)
    root = ws.audio_root()
    with LastFm(ws.require("clean-tags")) as db:
        vocabulary = db.vocabulary()
        tags = db.tags_of_tracks(table["track_id"])
        popularity = db.popularity().to_dict()
    tracks, outside = _confined_tracks(root, table)
    the_plan = records.plan(
        tracks,
        tags,
        vocabulary,
        popularity,
        spec=spec,
        split=split,
        shards=n_shards,
        compression=compression,
        assigned=assigned,
    )
    for problem in splits.problems(the_plan):
        err_console.print(f"[yellow]warning:[/yellow] {escape(problem)}")
        err_console.print(f"[yellow]hint:[/yellow] {SPLIT_HINT}")
    out = ws.path(f"tfrecords/{spec.format}")
    with progress(ctx) as bar:
        task = bar.add_task(f"encoding {spec.format}", total=the_plan.n_tracks)
        result = records.build(
            out,
            the_plan,
            workers=workers or os.cpu_count() or 1,
            runner=runner,
            beam_options=beam_options,
            on_start=lambda n: bar.update(task, total=n),
            on_track=lambda n: bar.advance(task, n),
        )
    index = result.index
    ws.register(
        f"tfrecords/{spec.format}",
        out,
        params={
            **spec.to_dict(),
            "compression": compression,
            "split": split,
            "split_source": split_source,
            "shards": len(index["shards"]),
        },
        inputs={"silence": "silence", "clean-tags": "clean-tags"},
        summary={"tracks": index["tracks"], **index["counts"], **index["skipped"]},
    )
    console.print(_counts_table(index))
    info(
        ctx,
        f"wrote {result.written} shards, kept {result.reused} finished ones: {out}",
    )
    for tid, rel in outside:
        info(ctx, f"skipped {tid}: {outside_message(rel)}")
    if index["skipped"][records.UNDECODABLE]:
        info(ctx, "some tracks could not be decoded; their IDs are in index.json (skipped_tids)")
    if index["skipped"][records.UNDECODABLE] or outside:
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def inspect(
    ctx: typer.Context,
    fmt: Annotated[str | None, typer.Option("--format", help=FORMAT_HELP)] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Draw one example's feature into this PNG.")
    ] = None,
    top: Annotated[int, typer.Option(help="How many tag frequencies to list.")] = 20,
) -> None:
    """Counts per split, tag frequencies, bytes per track, and one decoded example."""
    from orpheus import records

    ws = workspace(ctx)
    name = f"tfrecords/{fmt or ws.config['tfrecords']['format']}"
    if fmt is not None and fmt not in records.FORMATS:
        raise OrpheusError(f"unknown format '{fmt}'", hint="choose log-mel or waveform")
    out = ws.require(name)
    index = records.read_index(out)
    size = sum((out / s["file"]).stat().st_size for s in index["shards"])
    console.print(_counts_table(index))
    console.print(
        f"feature: {index['feature']}  compression: {index['compression'] or 'none'}  "
        f"bytes per track: {size / max(index['tracks'], 1):,.0f} ({size / 1e6:,.1f} MB in all)"
    )
    freq = Table(title=f"tag frequencies (top {top} of {len(index['vocabulary'])})")
    for col in ("tag", "tracks", "share"):
        freq.add_column(col, justify="left" if col == "tag" else "right")
    ranked = sorted(index["tag_counts"].items(), key=lambda kv: -kv[1])
    for tag, n in ranked[:top]:
        freq.add_row(tag, str(n), f"{n / max(index['tracks'], 1):.1%}")
    console.print(freq)
    first = next((s for s in index["shards"] if s["count"]), None)
    if first is None:
        return
    ex = records.decode_example(
        next(iter(records.read_records(out / first["file"], index["compression"])))
    )
    x = ex["audio"]
    tags = [t for t, on in zip(index["vocabulary"], ex["tags"], strict=True) if on]
    console.print(
        f"example {ex['tid']} ({first['file']}): shape {x.shape}, min {x.min():.3f}, "
        f"max {x.max():.3f}, mean {x.mean():.3f}, std {x.std():.3f}; tags: {', '.join(tags)}"
    )
    if plot is not None:
        _plot(x, ex["tid"], index["feature"], plot)
        info(ctx, f"plot: {plot}")


def _confined_tracks(root: Path, table) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(track ID, audio path) pairs, and the (track ID, file_path) rows outside the audio root."""
    tracks, outside = [], []
    for tid, rel in zip(table["track_id"], table["file_path"], strict=True):
        path = confined(root, rel)
        if path is None:
            outside.append((tid, rel))
        else:
            tracks.append((tid, str(path)))
    return tracks, outside


def _counts_table(index: dict) -> Table:
    table = Table(title="TFRecords", title_justify="left")
    for col in ("split", "shards", "tracks"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, n in index["counts"].items():
        files = sum(s["split"] == split for s in index["shards"])
        table.add_row(split, str(files), str(n))
    for reason, n in index["skipped"].items():
        table.add_row(f"[dim]skipped: {reason}[/dim]", "", str(n))
    return table


def _plot(x, tid: str, feature: dict, path: Path) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    if x.ndim == 2:
        seconds = x.shape[0] * feature["hop_length"] / feature["sample_rate"]
        img = ax.imshow(x.T, origin="lower", aspect="auto", extent=(0, seconds, 0, x.shape[1]))
        ax.set_ylabel("mel band")
        fig.colorbar(img, ax=ax, label="log10(10000 x + 1)")
    else:
        ax.plot(np.arange(len(x)) / feature["sample_rate"], x, linewidth=0.3)
        ax.set_ylabel("amplitude")
    ax.set_xlabel("seconds")
    ax.set_title(f"{tid} ({feature['format']})")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise OrpheusError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
