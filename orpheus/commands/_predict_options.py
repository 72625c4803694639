"""What `predict` and `record` share: their tagging options, and the one flow that calls
`orpheus.predicting` and renders what it yields (a progress bar in seconds of audio, the table,
JSON, JSON Lines, CSV, plots, embeddings, tags written into the files, the summary).

Results stream: each file's record is written (JSON Lines, CSV) or kept in `OUTPUT.partial`
(table, JSON with `-o`) the moment the file is tagged, so an interrupted batch keeps its finished
work, and `--resume` tags only what the output does not already hold.

No numpy or TensorFlow at import (`orpheus --help` stays instant): the library is imported when
a command runs.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from orpheus.commands._common import console, err_console, info, options
from orpheus.errors import EXIT_OK, EXIT_PARTIAL, OrpheusError

if TYPE_CHECKING:
    from orpheus.predicting import ModelRef


def _hop(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise typer.BadParameter("must be > 0 seconds")
    return value


def _format(value: str) -> str:
    from orpheus.results import FORMATS

    if value not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}")
    return value


Threshold = Annotated[
    float,
    typer.Option("-t", "--threshold", min=0.0, max=1.0, help="Keep tags with probability >= this."),
]
TopK = Annotated[int | None, typer.Option("--top-k", min=1, help="Keep at most K tags per file.")]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="msd-musicnn, mtt-musicnn, or a workspace run id "
        "(default: the workspace's latest trained run, else msd-musicnn).",
    ),
]
Hop = Annotated[
    float | None,
    typer.Option(
        "--hop",
        callback=_hop,
        help="About how many seconds apart windows start; they are spread evenly from the "
        "start of the song to its end (default: one window).",
    ),
]


def _windows(value: str) -> str:
    from orpheus.features import PLACEMENTS

    if value not in PLACEMENTS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(PLACEMENTS)}")
    return value


Windows = Annotated[
    str,
    typer.Option(
        "--windows",
        callback=_windows,
        help="even (spread over the whole song) or musicnn (musicnn's extractor's 3 s patches "
        "from the start, the tail dropped: its taggram, for users migrating from musicnn).",
    ),
]
Format = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        callback=_format,
        help="table, json, jsonl (one JSON object per line) or csv. jsonl and csv are written "
        "file by file as they are tagged.",
    ),
]
Taggram = Annotated[
    bool,
    typer.Option("--taggram", help="Also output per-window probabilities."),
]
Embeddings = Annotated[
    Path | None,
    typer.Option("--embeddings", help="Write penultimate-layer vectors to this .npz file."),
]
Plot = Annotated[
    Path | None,
    typer.Option("--plot", help="Draw the taggram as a PNG (several files: PNG-<name>.png each)."),
]
WriteTags = Annotated[
    bool,
    typer.Option(
        "--write-tags",
        help="Write the kept tags into each file as soon as it is tagged: genres and moods into "
        "the fields music libraries read, every tag with its probability into the model's "
        "ORPHEUS_TAGS field (in place, audio untouched; read-only files skipped).",
    ),
]
Output = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write the results here, not stdout.")
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="With -o: skip the files the output already holds (same size and modification "
        "time), and add the rest.",
    ),
]
# None stands for the library's default (orpheus.audio, which imports numpy): the defaults
# shown here are checked equal to it by tests/test_predict.py.
SilenceDb = Annotated[
    float | None,
    typer.Option(
        "--silence-db",
        show_default="-60.0",
        help="Windows quieter than this (RMS, dBFS) are silence: left out of the song's mean.",
    ),
]
MinSeconds = Annotated[
    float | None,
    typer.Option(
        "--min-seconds",
        min=0.0,
        show_default="1.0",
        help="Skip files shorter than this, as too short.",
    ),
]


@dataclass
class PredictOptions:
    """The tagging options of `predict` and `record`, as given on the command line."""

    threshold: float = 0.1
    top_k: int | None = None
    model: str | None = None
    hop: float | None = None
    format: str = "table"
    taggram: bool = False
    embeddings: Path | None = None
    plot: Path | None = None
    write_tags: bool = False
    output: Path | None = None
    resume: bool = False
    silence_db: float | None = None  # None: the library's default
    min_seconds: float | None = None
    windows: str = "even"
    tag_mode: str = "merge"
    dry_run: bool = False

    def tagging(self):
        """The library's `predicting.Options` for these."""
        from orpheus import predicting

        given = {"silence_db": self.silence_db, "min_seconds": self.min_seconds}
        return predicting.Options(
            threshold=self.threshold,
            top_k=self.top_k,
            hop=self.hop,
            windows=self.windows,
            taggram=self.taggram,
            embeddings=self.embeddings is not None,
            **{k: v for k, v in given.items() if v is not None},
        )


# -- the model ------------------------------------------------------------------------------


def optional_workspace(ctx: typer.Context):
    """The workspace if there is one (an explicit -w that is not one is still an error)."""
    from orpheus.workspace import ENV_VAR, Workspace, WorkspaceError

    explicit = options(ctx).workspace is not None or bool(os.environ.get(ENV_VAR))
    try:
        return Workspace.open(options(ctx).workspace)
    except WorkspaceError:
        if explicit:
            raise
        return None


def resolve_model(ctx: typer.Context, model: str | None) -> ModelRef:
    """The model `--model` names, checked before any audio is read or TensorFlow loaded."""
    from orpheus import predicting

    return predicting.resolve_model(optional_workspace(ctx), model)


# -- tagging and rendering ------------------------------------------------------------------


def predict_files(
    ctx: typer.Context,
    files: list[Path],
    opts: PredictOptions,
    problems: list[tuple[str, str]] | None = None,
    ignored: int = 0,
) -> int:
    """Tag `files`, write each result as it comes and every requested output; return the exit
    code.

    Missing, undecodable and too-short inputs are reported and skipped: exit 0 when any file was
    tagged (so `predict DIR && ...` works on a folder with a broken file in it), 2 when none
    could be, and 1 when `--write-tags` could not write into some file.
    """
    from orpheus import predicting, results

    summary = predicting.Summary(ignored=ignored)
    for where, reason in problems or []:
        _skip(summary, predicting.skipped(where, reason))
    if not files:
        raise OrpheusError("no audio to tag", hint="give audio files, folders or globs")
    for target in (opts.output, opts.embeddings, opts.plot):
        if target is not None and not target.expanduser().resolve().parent.is_dir():
            raise OrpheusError(f"cannot write {target}: its folder does not exist")
    if opts.resume and opts.output is None:
        raise OrpheusError("--resume needs -o OUTPUT", hint="resume the output of a run with -o")
    if opts.write_tags and not opts.dry_run:
        from orpheus import tagwrite

        for path in files:
            if tagwrite.recover_leftover(path):
                _warn("restored", f"{path}: from the backup a killed tag write left beside it")
    model = resolve_model(ctx, opts.model)
    previous: list[dict] = []
    if opts.resume:
        sizes = {str(f): predicting.size_mtime(f) for f in files}
        previous = results.resumable(
            opts.output, opts.format, model.name, sizes, taggram=opts.taggram
        )
    todo = predicting.pending(files, previous)
    if opts.resume:
        info(ctx, f"resuming: {len(files) - len(todo)} file(s) already in {opts.output}")
    streamed = opts.format in results.STREAMED
    records: list[dict] = [] if streamed else list(previous)
    kept_results: list[tuple[str, object]] = []  # for --embeddings and --plot
    unwritten = 0
    kinds = _kinds(ctx, model) if opts.write_tags else {}

    def on_tagged(path: Path, result, kept: list[tuple[str, float]]) -> None:
        nonlocal unwritten
        if opts.write_tags:
            from orpheus import tagwrite

            done = tagwrite.write(
                path, kept, model=model.name, kinds=kinds, mode=opts.tag_mode, dry_run=opts.dry_run
            )
            unwritten += tag_outcome(ctx, done)
        if (opts.embeddings or opts.plot) and len(result.taggram):
            kept_results.append((str(path), result))

    def on_load(name: str) -> None:
        info(ctx, f"loading model {name}")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    remaining = predicting.RemainingAudio(todo)
    stream = results.open_stream(
        opts.output, opts.format, console.file, append=opts.resume, taggram=opts.taggram
    )
    try:
        with stream as sink, _audio_progress(ctx) as bar:
            task = bar.add_task("tagging", total=None)
            for rec in predicting.tag_files(
                todo, model, opts.tagging(), on_tagged=on_tagged, on_load=on_load, summary=summary
            ):
                left = remaining.finish(rec["path"])
                # decoded seconds replace the headers' guesses: the total converges on the truth
                total = None if left is None else summary.seconds + left
                bar.update(task, completed=summary.seconds, total=total)
                if "skipped" in rec:
                    _warn("skipped", f"{rec['path']}: {rec['skipped']}")
                    continue
                if sink is not None:
                    sink.write(rec, model.labels())
                if not streamed:
                    records.append(rec)
    except KeyboardInterrupt:
        if opts.output is None and not streamed and records:
            _emit(_render(records, model.labels(), opts), None)  # what was finished
        elif opts.output is not None:
            kept_in = results.kept_in(opts.output, opts.format)
            err_console.print(f"finished files are in {kept_in}: add --resume")
        raise
    info(ctx, summary.line())
    if not summary.tagged and not previous:
        if opts.output is not None:  # leave no empty output behind
            kept_in = results.kept_in(opts.output, opts.format)
            if kept_in.exists() and kept_in.stat().st_size == 0:
                kept_in.unlink()
        raise OrpheusError("no file could be tagged", hint="see the messages above")
    if not streamed and records:
        _emit(_render(records, model.labels(), opts), opts.output)
        if opts.output is not None:
            results.partial_path(opts.output).unlink(missing_ok=True)
    if kept_results and opts.embeddings is not None:
        results.write_embeddings(opts.embeddings, model.name, kept_results)
        size = kept_results[0][1].embeddings.shape[1]
        info(ctx, f"embeddings ({size} per window): {opts.embeddings}")
    if kept_results and opts.plot is not None:
        pngs = results.plot_paths(opts.plot, [p for p, _ in kept_results])
        for (p, r), png in zip(kept_results, pngs, strict=True):
            results.plot_taggram(png, f"{Path(p).name} - {model.name}", r)
            info(ctx, f"taggram plot: {png}")
    return EXIT_PARTIAL if unwritten else EXIT_OK


def _kinds(ctx: typer.Context, model: ModelRef) -> dict[str, str]:
    """The kind of each of the model's tags, with the workspace's `tags.kinds` overrides."""
    from orpheus import tagwrite

    ws = optional_workspace(ctx)
    override = ws.settings.tags.kinds if ws is not None else {}
    return tagwrite.kinds_for(model.name, model.labels(), override)


def tag_outcome(ctx: typer.Context, done) -> int:
    """Say what writing into one file did (a dry run prints its diff); 1 if it was skipped."""
    if done.status == "skipped":
        _warn("tags not written", f"{done.path}: {done.reason}")
        return 1
    if done.dry_run:
        err_console.print(done.line, highlight=False, soft_wrap=True)
        if done.diff:
            err_console.print(escape(done.diff), highlight=False, soft_wrap=True)
    else:
        info(ctx, done.line)
    return 0


def _skip(summary, rec: dict) -> None:
    summary.add(rec)
    _warn("skipped", f"{rec['path']}: {rec['skipped']}")


class _AudioSeconds(ProgressColumn):
    """`12/345 s of audio` (`12 s of audio` while the total is unknown)."""

    def render(self, task: Task) -> Text:
        total = "" if task.total is None else f"/{task.total:.0f}"
        return Text(f"{task.completed:.0f}{total} s of audio")


def _audio_progress(ctx: typer.Context) -> Progress:
    """A progress bar in seconds of audio (a long file weighs as much as it lasts), with ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _AudioSeconds(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        disable=options(ctx).quiet,
        transient=False,
    )


def _warn(what: str, message: str) -> None:
    err_console.print(f"[yellow]{what}[/yellow] {escape(message)}", markup=True, soft_wrap=True)


def _render(records: list[dict], labels: list[str], opts: PredictOptions) -> list:
    """JSON text, or rich tables (the file table, then one taggram table per file)."""
    if opts.format == "json":
        import json

        return [json.dumps(records, indent=2, ensure_ascii=False) + "\n"]
    title = f"tags ({records[0]['model']}, p >= {opts.threshold:g})"
    table = Table(title=title, title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("tags", overflow="fold")
    for rec in records:
        tags = ", ".join(f"{t['tag']} {t['probability']:.2f}" for t in rec["tags"])
        table.add_row(rec["path"], tags or ("(silent)" if rec.get("note") == "silent" else "-"))
    out = [table]
    for rec in records if opts.taggram else []:
        gram = Table(title=f"taggram of {rec['path']}", title_justify="left")
        gram.add_column("start (s)", justify="right")
        gram.add_column("most probable tags in the window", overflow="fold")
        names = labels
        rows = zip(rec["taggram"]["start"], rec["taggram"]["probabilities"], strict=True)
        for start, row in rows:
            best = sorted(range(len(row)), key=lambda i: -row[i])[: opts.top_k or 5]
            gram.add_row(f"{start:.2f}", ", ".join(f"{names[i]} {row[i]:.2f}" for i in best))
        out.append(gram)
    return out


def _emit(parts: list, output: Path | None) -> None:
    """Print to stdout, or write plain text atomically to `output`."""
    from orpheus.io import write_atomic_via

    if output is None:
        for part in parts:
            if isinstance(part, str):
                console.file.write(part)
                console.file.flush()
            else:
                console.print(part)
        return
    buffer = io.StringIO()
    plain = Console(file=buffer, width=120, color_system=None, highlight=False)
    for part in parts:
        buffer.write(part) if isinstance(part, str) else plain.print(part)
    write_atomic_via(output, lambda fh: fh.write(buffer.getvalue().encode("utf-8")))
