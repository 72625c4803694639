"""`orpheus record`: capture from a microphone, save the recording, tag it as `predict` would.

The recording goes to `--save FILE`, else the workspace's `recordings/`, else (no workspace)
`./recordings/` in the current folder; it is saved as 16-bit PCM and then tagged from the saved
file by the very code `predict` runs, so `orpheus predict` on that file prints the same tags.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orpheus.commands import _predict_options as po
from orpheus.commands._common import console, info


def command(
    ctx: typer.Context,
    seconds: Annotated[
        float, typer.Option("--seconds", "-s", min=0.1, help="How long to record.")
    ] = 30.0,
    device: Annotated[
        str | None, typer.Option("--device", "-d", help="Input device name (or part) or index.")
    ] = None,
    list_devices: Annotated[
        bool, typer.Option("--list-devices", help="List the input devices and exit.")
    ] = False,
    samplerate: Annotated[
        int | None,
        typer.Option("--samplerate", min=1000, help="Capture rate (default: the device's)."),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option("--save", help="Save the recording here (.wav, .flac, .ogg or .mp3)."),
    ] = None,
    threshold: po.Threshold = 0.1,
    top_k: po.TopK = None,
    model: po.Model = None,
    hop: po.Hop = None,
    fmt: po.Format = "table",
    taggram: po.Taggram = False,
    embeddings: po.Embeddings = None,
    plot: po.Plot = None,
    write_tags: po.WriteTags = False,
    output: po.Output = None,
) -> None:
    """Record from the microphone and predict tags for the recording."""
    from orpheus import recording

    if list_devices:
        _print_devices(recording.input_devices())
        return
    opts = po.PredictOptions(
        threshold, top_k, model, hop, fmt, taggram, embeddings, plot, write_tags, output,
        min_seconds=0.0,  # the user chose the length: a short recording is tagged, noted "short"
    )  # fmt: skip
    po.resolve_model(ctx, model)  # fail before a long recording, not after
    chosen = recording.find_device(device)
    target = save or _default_target(ctx)
    rate = samplerate or int(chosen["samplerate"])
    info(ctx, f"recording {seconds:g} s from {chosen['name']!r} at {rate} Hz ...")
    samples, rate, _ = recording.record(seconds, device=chosen["index"], samplerate=rate)
    path = recording.save(target, samples, rate)
    info(ctx, f"saved the recording to {path}")
    code = po.predict_files(ctx, [path], opts)
    if code:
        raise typer.Exit(code)


def _default_target(ctx: typer.Context) -> Path:
    """recordings/recording-<UTC time>.wav in the workspace, else in the current folder."""
    ws = po.optional_workspace(ctx)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    if ws is None:
        info(ctx, "no workspace: the recording goes to ./recordings/ (choose with --save FILE)")
        folder = Path.cwd() / "recordings"
    else:
        folder = ws.path("recordings")
    path = folder / f"recording-{stamp}.wav"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"recording-{stamp}-{n}.wav"
    return path


def _print_devices(devices: list[dict]) -> None:
    if not devices:
        console.print("no audio input devices found")
        return
    table = Table(title="input devices", title_justify="left")
    for col in ("index", "name", "host API", "channels", "default rate"):
        table.add_column(col)
    for d in devices:
        table.add_row(
            str(d["index"]), d["name"], d["hostapi"], str(d["channels"]), f"{d['samplerate']:g}"
        )
    console.print(table)
