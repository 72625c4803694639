"""`orpheus predict PATH...`: tag audio files, folders or globs with one model load for all."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orpheus.commands import _predict_options as po
from orpheus.commands._common import console
from orpheus.errors import EXIT_OK, EXIT_PARTIAL, OrpheusError


def _tag_mode(value: str) -> str:
    if value not in ("merge", "replace"):
        raise typer.BadParameter(f"{value!r} is not one of merge, replace")
    return value


TagMode = Annotated[
    str,
    typer.Option(
        "--tag-mode",
        callback=_tag_mode,
        help="With --write-tags: merge the predicted genres and moods with those in the file, "
        "or replace them (--remove-tags puts them back).",
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="With --write-tags or --remove-tags: print each file's change as a diff, write "
        "nothing.",
    ),
]
RemoveTags = Annotated[
    bool,
    typer.Option(
        "--remove-tags",
        help="Do not tag: remove what Orpheus wrote into the files (--model's field, else every "
        "model's) and put back the genres and moods it replaced.",
    ),
]


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
    windows: po.Windows = "even",
    fmt: po.Format = "table",
    taggram: po.Taggram = False,
    embeddings: po.Embeddings = None,
    plot: po.Plot = None,
    write_tags: po.WriteTags = False,
    tag_mode: TagMode = "merge",
    dry_run: DryRun = False,
    remove_tags: RemoveTags = False,
    output: po.Output = None,
    resume: po.Resume = False,
    silence_db: po.SilenceDb = None,
    min_seconds: po.MinSeconds = None,
    runner: Annotated[
        str,
        typer.Option(
            help="local, or beam: an Apache Beam pipeline writing -o PREFIX-NNNNN-of-NNNNN.jsonl."
        ),
    ] = "local",
    beam_options: Annotated[
        str | None,
        typer.Option(help='Apache Beam pipeline options, e.g. "--runner=DataflowRunner ...".'),
    ] = None,
) -> None:
    """Predict tags for songs (default model: the workspace's latest run, else msd-musicnn).

    Each file's result is written as soon as it is tagged. Files that cannot be read or are too
    short are reported as `skipped PATH: reason`. Exit code 0 when any file was tagged, 2 when
    none could be, 1 when --write-tags (or --remove-tags) could not write into some file.
    """
    opts = po.PredictOptions(
        threshold, top_k, model, hop, fmt, taggram, embeddings, plot, write_tags, output,
        resume, silence_db, min_seconds, windows, tag_mode, dry_run,
    )  # fmt: skip
    from orpheus import predicting

    po.resolve_model(ctx, model)  # an unknown model fails before any audio is read
    inputs = predicting.expand_inputs(paths)
    if remove_tags:
        if write_tags:
            raise OrpheusError("--remove-tags and --write-tags do not go together")
        code = _remove_tags(ctx, inputs.files, model, dry_run)
        if code:
            raise typer.Exit(code)
        return
    if runner != "local":
        _on_beam(ctx, runner, inputs, opts, beam_options)
        return
    code = po.predict_files(ctx, inputs.files, opts, inputs.problems, inputs.ignored)
    if code:
        raise typer.Exit(code)


def _on_beam(ctx: typer.Context, runner: str, inputs, opts: po.PredictOptions, beam_options):
    """`--runner beam`: JSON Lines shards holding every record; stdout gets the summary."""
    if runner != "beam":
        raise OrpheusError(f"unknown runner '{runner}'", hint="use local or beam")
    if opts.output is None:
        raise OrpheusError("--runner beam needs -o PREFIX", hint="e.g. -o gs://bucket/tags")
    unused = {
        "--format": opts.format != "jsonl" and not _default(ctx, "fmt"),
        "--embeddings": opts.embeddings,
        "--plot": opts.plot,
        "--write-tags": opts.write_tags,
        "--resume": opts.resume,
    }
    if any(unused.values()):
        given = ", ".join(name for name, value in unused.items() if value)
        raise OrpheusError(f"--runner beam writes JSON Lines shards only: drop {given}")
    if not inputs.files:
        raise OrpheusError("no audio to tag", hint="give audio files, folders or globs")
    from orpheus import predict_beam

    model = po.resolve_model(ctx, opts.model)
    done = predict_beam.run(inputs, model, opts.output, opts.tagging(), beam_options)
    console.print(done.line(), highlight=False, soft_wrap=True)
    if not done.summary.tagged:
        raise OrpheusError("no file could be tagged", hint="see the skipped records")


def _default(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was left at its default (not typed)."""
    return ctx.get_parameter_source(name).name == "DEFAULT"  # click's ParameterSource


def _remove_tags(ctx: typer.Context, files: list[Path], model: str | None, dry_run: bool) -> int:
    """`--remove-tags`: undo what Orpheus wrote into `files` (one model's or every model's);
    the exit code (1 when some file could not be written)."""
    from orpheus import tagwrite

    if not files:
        raise OrpheusError("no audio to untag", hint="give audio files, folders or globs")
    name = po.resolve_model(ctx, model).name if model is not None else None
    failed = sum(
        po.tag_outcome(ctx, tagwrite.remove(f, model=name, dry_run=dry_run)) for f in files
    )
    return EXIT_PARTIAL if failed else EXIT_OK
