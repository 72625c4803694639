"""What `predict` and `record` share: their tagging options, the model choice, the input list,
and the one flow that tags files and renders the results (table, JSON, JSON Lines, CSV, plots,
embeddings, tags written into the files).

Results stream: each file's record is written (JSON Lines, CSV) or kept in `OUTPUT.partial`
(table, JSON with `-o`) the moment the file is tagged, so an interrupted batch keeps its finished
work, and `--resume` tags only what the output does not already hold.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orpheus import audio, pretrained
from orpheus.commands._common import console, err_console, info, options, progress
from orpheus.errors import EXIT_OK, EXIT_PARTIAL, OrpheusError
from orpheus.results import FORMATS, STREAMED

GLOB_CHARS = set("*?[")


def _hop(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise typer.BadParameter("must be > 0 seconds")
    return value


def _format(value: str) -> str:
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
        help="Write the kept tags into each file's metadata (audio untouched).",
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
SilenceDb = Annotated[
    float,
    typer.Option(
        "--silence-db",
        help="Windows quieter than this (RMS, dBFS) are silence: left out of the song's mean.",
    ),
]
MinSeconds = Annotated[
    float,
    typer.Option("--min-seconds", min=0.0, help="Skip files shorter than this, as too short."),
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
    silence_db: float = audio.SILENCE_DB
    min_seconds: float = audio.MIN_SECONDS


# -- inputs ---------------------------------------------------------------------------------


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[str], int]:
    """Files, folders (recursively, through symlinked folders: audio extensions only) and globs
    -> (files, problems, count of non-audio files ignored in folders)."""
    files: list[Path] = []
    problems: list[str] = []
    ignored = 0

    def folder(path: Path) -> list[Path]:
        nonlocal ignored
        found, others, trouble = audio.audio_files(path)
        ignored += others
        problems.extend(trouble)
        return found

    for given in paths:
        if given.is_dir():
            found = folder(given)
            files += found
            if not found:
                problems.append(f"{given}: no audio files in this folder")
        elif given.exists():
            files.append(given)
        elif GLOB_CHARS & set(str(given)):
            matches = [Path(m) for m in sorted(glob.glob(str(given), recursive=True))]
            found = [f for m in matches for f in (folder(m) if m.is_dir() else [m])]
            files += found
            if not found:
                problems.append(f"{given}: no files match")
        else:
            problems.append(f"{given}: no such file or folder")
    return list(dict.fromkeys(files)), problems, ignored


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


def _runs(ws) -> list[tuple[str, Path]]:
    """(run id, folder) of the workspace's runs that hold a finished model, oldest first
    (by creation time, then by manifest order)."""
    if ws is None:
        return []
    found = []
    for position, (name, entry) in enumerate(ws.manifest()["artifacts"].items()):
        if name.startswith("run/"):
            folder = ws.artifact_path(name)
            if folder is not None and (folder / "model.keras").is_file():
                found.append((entry.get("created") or "", position, name[4:], folder))
    return [(run_id, folder) for _, _, run_id, folder in sorted(found)]


def resolve_model(ctx: typer.Context, model: str | None) -> tuple[str, str | Path]:
    """("pretrained", name) or ("run", run folder), checked before TensorFlow is loaded."""
    if model in pretrained.NAMES:
        return "pretrained", model
    ws = optional_workspace(ctx)
    runs = _runs(ws)
    if model is None:
        return ("run", runs[-1][1]) if runs else ("pretrained", pretrained.DEFAULT)
    run_id = model.removeprefix("run/")
    for rid, folder in runs:
        if rid == run_id:
            return "run", folder
    if ws is not None and (ws.root / "runs" / run_id).is_dir():
        return "run", ws.root / "runs" / run_id  # exists but unfinished: from_run says so
    if Path(model).is_dir() and (Path(model) / "model.keras").is_file():
        return "run", Path(model)
    choices = list(pretrained.NAMES) + [rid for rid, _ in runs]
    raise OrpheusError(f"unknown model {model!r}", hint=f"choose one of: {', '.join(choices)}")


def model_loader(ctx: typer.Context, model: str | None):
    """(name, sample rate, load) for the model, without TensorFlow: `load()` builds the Tagger
    (this is where TensorFlow gets imported), once a file needs it."""
    from orpheus.tagger import run_sample_rate

    kind, value = resolve_model(ctx, model)
    name = str(value) if kind == "pretrained" else f"run/{Path(value).name}"

    def load():
        info(ctx, f"loading model {name}")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from orpheus.tagger import Tagger

        if kind == "pretrained":
            return Tagger.pretrained(str(value))
        return Tagger.from_run_dir(Path(value))

    rate = audio.DEFAULT_SR if kind == "pretrained" else run_sample_rate(Path(value))
    return name, rate, load


# -- tagging and rendering ------------------------------------------------------------------


def predict_files(
    ctx: typer.Context,
    files: list[Path],
    opts: PredictOptions,
    problems: list[str] | None = None,
    ignored: int = 0,
) -> int:
    """Tag `files`, write each result as it comes and every requested output; return the exit
    code.

    Missing, undecodable and too-short inputs are reported and skipped: exit 0 when any file was
    tagged (so `predict DIR && ...` works on a folder with a broken file in it), 2 when none
    could be, and 1 when `--write-tags` could not write into some file.
    """
    from orpheus import results
    from orpheus.tagger import tag_files

    for problem in problems or []:
        _warn("skipped", problem)
    if not files:
        raise OrpheusError("no audio to tag", hint="give audio files, folders or globs")
    for target in (opts.output, opts.embeddings, opts.plot):
        if target is not None and not target.expanduser().resolve().parent.is_dir():
            raise OrpheusError(f"cannot write {target}: its folder does not exist")
    if opts.resume and opts.output is None:
        raise OrpheusError("--resume needs -o OUTPUT", hint="resume the output of a run with -o")
    name, rate, load = model_loader(ctx, opts.model)
    previous = _previous(opts, name, files)
    finished = {(r["path"], r.get("size"), r.get("mtime_ns")) for r in previous}
    todo = [f for f in files if (str(f), *_size_mtime(f)) not in finished]
    if opts.resume:
        info(ctx, f"resuming: {len(files) - len(todo)} file(s) already in {opts.output}")
    loaded: list = []

    def load_once():
        loaded.append(load())
        return loaded[0]

    records: list[dict] = list(previous) if opts.format not in STREAMED else []
    kept_results: list[tuple[str, object]] = []  # for --embeddings and --plot
    skipped: Counter = Counter()
    notes: Counter = Counter()
    unwritten, seconds = 0, 0.0
    want_embeddings = opts.embeddings is not None
    with contextlib.ExitStack() as stack:
        stream = _open_stream(stack, opts)
        try:
            started = time.perf_counter()
            with progress(ctx) as bar:
                task = bar.add_task("tagging", total=len(todo))
                for path, result in tag_files(
                    todo,
                    load_once,
                    rate,
                    hop=opts.hop,
                    embeddings=want_embeddings,
                    silence_db=opts.silence_db,
                    min_seconds=opts.min_seconds,
                ):
                    bar.advance(task)
                    if isinstance(result, audio.AudioError):
                        skipped[result.reason.split(" (")[0]] += 1
                        _warn("skipped", f"{result.path}: {result.reason}")
                        continue
                    kept = result.top(opts.threshold, opts.top_k)
                    if opts.write_tags:
                        try:  # before the record, so that it holds the tagged file's stat
                            results.write_tags(path, [t for t, _ in kept], loaded[0].name)
                        except OrpheusError as exc:
                            unwritten += 1
                            _warn("tags not written", exc.message)
                    size, mtime_ns = _size_mtime(path)
                    rec = results.record(
                        str(path), loaded[0].name, result, kept, taggram=opts.taggram,
                        size=size, mtime_ns=mtime_ns,
                    )  # fmt: skip
                    notes[result.note] += 1
                    seconds += result.duration
                    if stream is not None:
                        stream.write(rec, result.labels)
                    if opts.format not in STREAMED:
                        records.append(rec)
                    if (want_embeddings or opts.plot) and len(result.taggram):
                        kept_results.append((str(path), result))
        except KeyboardInterrupt:
            if opts.output is None and opts.format not in STREAMED and records:
                _emit(_render(records, loaded[0].labels, opts), None)  # what was finished
            elif opts.output is not None:
                err_console.print(f"finished files are in {_kept_in(opts)}: add --resume")
            raise
    tagged = sum(notes.values())
    _summary(ctx, tagged, skipped, notes, ignored, seconds, time.perf_counter() - started)
    if not tagged and not previous:
        if opts.output is not None:  # leave no empty output behind
            kept_in = _kept_in(opts)
            if kept_in.exists() and kept_in.stat().st_size == 0:
                kept_in.unlink()
        raise OrpheusError("no file could be tagged", hint="see the messages above")
    if opts.format not in STREAMED and records:
        labels = loaded[0].labels if loaded else _labels_of(records)
        _emit(_render(records, labels, opts), opts.output)
        if opts.output is not None:
            results.partial_path(opts.output).unlink(missing_ok=True)
    if kept_results and opts.embeddings is not None:
        results.write_embeddings(opts.embeddings, name, kept_results)
        info(ctx, f"embeddings ({loaded[0].embedding_size} per window): {opts.embeddings}")
    if kept_results and opts.plot is not None:
        pngs = results.plot_paths(opts.plot, [p for p, _ in kept_results])
        for (p, r), png in zip(kept_results, pngs, strict=True):
            results.plot_taggram(png, f"{Path(p).name} - {name}", r)
            info(ctx, f"taggram plot: {png}")
    return EXIT_PARTIAL if unwritten else EXIT_OK


def _previous(opts: PredictOptions, model: str, files: list[Path]) -> list[dict]:
    """The records `--resume` keeps (none without it), all of them by this model. A file that
    changed since its record was written loses that record: it is tagged again."""
    from orpheus import results

    if not opts.resume:
        return []
    previous = results.previous_records(opts.output, opts.format, taggram=opts.taggram)
    others = {r.get("model") for r in previous} - {model}
    if others:
        raise OrpheusError(
            f"cannot resume {opts.output}: it holds results of {', '.join(map(str, others))}",
            hint=f"resume with that --model, or write {model}'s results to another -o",
        )
    now = {str(f): _size_mtime(f) for f in files}
    stale = {
        r["path"]
        for r in previous
        if r["path"] in now and now[r["path"]] != (r.get("size"), r.get("mtime_ns"))
    }
    if stale:
        streamed = opts.format in STREAMED
        target = opts.output if streamed else results.partial_path(opts.output)
        results.drop_records(target, opts.format if streamed else "jsonl", stale)
    return [r for r in previous if r["path"] not in stale]


def _size_mtime(path: Path) -> tuple[int | None, int | None]:
    try:
        st = path.stat()
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def _open_stream(stack: contextlib.ExitStack, opts: PredictOptions):
    """Where records go as they are finished: stdout or `-o` for jsonl/csv, `OUTPUT.partial`
    (JSON Lines) for table/json with `-o`, nowhere for table/json on stdout."""
    from orpheus import results

    if opts.format in STREAMED and opts.output is None:
        return results.RecordStream(console.file, opts.format, taggram=opts.taggram)
    if opts.output is None:
        return None
    streamed = opts.format in STREAMED
    target = opts.output if streamed else results.partial_path(opts.output)
    mode = "a" if opts.resume and target.exists() else "w"
    fh = stack.enter_context(open(target, mode, encoding="utf-8", newline=""))
    fmt = opts.format if streamed else "jsonl"
    return results.RecordStream(fh, fmt, taggram=opts.taggram, header=fh.tell() == 0)


def _kept_in(opts: PredictOptions) -> Path:
    from orpheus import results

    return opts.output if opts.format in STREAMED else results.partial_path(opts.output)


def _labels_of(records: list[dict]) -> list[str]:
    """The label order of resumed records (a run that tagged nothing new has no Tagger)."""
    return next((list(r["probabilities"]) for r in records if r["probabilities"]), [])


def _summary(
    ctx: typer.Context,
    tagged: int,
    skipped: Counter,
    notes: Counter,
    ignored: int,
    seconds: float,
    elapsed: float,
) -> None:
    """One line: what was tagged (how much audio, how fast), noted, skipped and ignored."""
    clock = f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{round(seconds % 60):02d}"
    speed = f", {seconds / elapsed:.0f}x realtime" if tagged and elapsed > 0 else ""
    parts = [f"tagged {tagged} ({clock} of audio in {elapsed:.0f} s{speed})"]
    parts += [f"{n} {note}" for note, n in sorted(notes.items(), key=str) if note]
    if skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        parts.append(f"skipped {sum(skipped.values())} ({reasons})")
    if ignored:
        parts.append(f"{ignored} non-audio file(s) ignored")
    info(ctx, ", ".join(parts))


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
    from orpheus.workspace import write_atomic_via

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
