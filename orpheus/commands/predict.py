"""`orpheus predict PATH...`: tag audio files, folders or globs with one model load for all."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orpheus.commands import _predict_options as po


def command(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Audio files, folders (searched recursively, through symlinked folders) or globs."
        ),
    ],
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
    resume: po.Resume = False,
    silence_db: po.SilenceDb = None,
    min_seconds: po.MinSeconds = None,
) -> None:
    """Predict tags for songs (default model: the workspace's latest run, else msd-musicnn).

    Each file's result is written as soon as it is tagged. Files that cannot be read or are too
    short are reported as `skipped PATH: reason`. Exit code 0 when any file was tagged, 2 when
    none could be, 1 when --write-tags could not write into some file.
    """
    opts = po.PredictOptions(
        threshold, top_k, model, hop, fmt, taggram, embeddings, plot, write_tags, output,
        resume, silence_db, min_seconds,
    )  # fmt: skip
    from orpheus import predicting

    po.resolve_model(ctx, model)  # an unknown model fails before any audio is read
    inputs = predicting.expand_inputs(paths)
    code = po.predict_files(ctx, inputs.files, opts, inputs.problems, inputs.ignored)
    if code:
        raise typer.Exit(code)
