"""What `predict` and `record` share: their tagging options, the model choice, the input list,
and the one flow that tags files and renders the results (table, JSON, CSV, plots, embeddings,
tags written into the files).
"""

from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orpheus import pretrained
from orpheus.commands._common import console, err_console, info, options, progress
from orpheus.errors import EXIT_OK, EXIT_PARTIAL, OrpheusError

AUDIO_SUFFIXES = {
    ".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".w64",
    ".caf",
}  # fmt: skip
FORMATS = ("table", "json", "csv")
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
    str, typer.Option("--format", "-f", callback=_format, help="table, json or csv.")
]
Taggram = Annotated[bool, typer.Option("--taggram", help="Also output per-window probabilities.")]
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
        "--write-tags", help="Write the kept tags into each file's metadata (audio untouched)."
    ),
]
Output = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write the results here, not stdout.")
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


# -- inputs ---------------------------------------------------------------------------------


def expand_inputs(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Files, folders (recursively: audio suffixes only) and globs -> (files, problems)."""
    files: list[Path] = []
    problems: list[str] = []
    for given in paths:
        if given.is_dir():
            found = _audio_in(given)
            files += found
            if not found:
                problems.append(f"{given}: no audio files in this folder")
        elif given.exists():
            files.append(given)
        elif GLOB_CHARS & set(str(given)):
            matches = [Path(m) for m in sorted(glob.glob(str(given), recursive=True))]
            found = [f for m in matches for f in (_audio_in(m) if m.is_dir() else [m])]
            files += found
            if not found:
                problems.append(f"{given}: no files match")
        else:
            problems.append(f"{given}: no such file or folder")
    return list(dict.fromkeys(files)), problems


def _audio_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
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


def load_tagger(ctx: typer.Context, model: str | None):
    """Resolve and load the model (this is where TensorFlow gets imported)."""
    kind, value = resolve_model(ctx, model)
    info(ctx, f"loading model {value if kind == 'pretrained' else 'run/' + Path(value).name}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from orpheus.tagger import Tagger

    if kind == "pretrained":
        return Tagger.pretrained(str(value))
    return Tagger.from_run_dir(Path(value))


# -- tagging and rendering ------------------------------------------------------------------


def predict_files(
    ctx: typer.Context,
    files: list[Path],
    opts: PredictOptions,
    problems: list[str] | None = None,
) -> int:
    """Tag `files`, render and write every requested output; return the exit code.

    Missing and undecodable inputs are reported and skipped: exit 0 when any file was tagged
    (so `predict DIR && ...` works on a folder with a broken file in it), 2 when none could
    be, and 1 when `--write-tags` could not write into some file.
    """
    from orpheus import results

    for problem in problems or []:
        _warn("skipped", problem)
    if not files:
        raise OrpheusError("no audio to tag", hint="give audio files, folders or globs")
    for target in (opts.output, opts.embeddings, opts.plot):
        if target is not None and not target.expanduser().resolve().parent.is_dir():
            raise OrpheusError(f"cannot write {target}: its folder does not exist")
    tagger = load_tagger(ctx, opts.model)
    want_embeddings = opts.embeddings is not None
    done: list[tuple[str, object]] = []
    with progress(ctx) as bar:
        task = bar.add_task("tagging", total=len(files))
        for path, result in tagger.tag_files(files, hop=opts.hop, embeddings=want_embeddings):
            bar.advance(task)
            if isinstance(result, Exception):
                _warn("skipped", str(result))
                continue
            done.append((str(path), result))
    if not done:
        raise OrpheusError("no file could be tagged", hint="see the messages above")

    kept = {p: r.top(opts.threshold, opts.top_k) for p, r in done}
    records = [results.record(p, tagger.name, r, kept[p], taggram=opts.taggram) for p, r in done]
    _emit(_render(records, tagger.labels, opts), opts.output)
    if opts.embeddings is not None:
        results.write_embeddings(opts.embeddings, tagger.name, done)
        info(ctx, f"embeddings ({tagger.embedding_size} per window): {opts.embeddings}")
    if opts.plot is not None:
        for (p, r), png in zip(
            done, results.plot_paths(opts.plot, [p for p, _ in done]), strict=True
        ):
            results.plot_taggram(png, f"{Path(p).name} - {tagger.name}", r)
            info(ctx, f"taggram plot: {png}")
    unwritten = 0
    if opts.write_tags:
        for p, _ in done:
            try:
                results.write_tags(Path(p), [t for t, _ in kept[p]], tagger.name)
            except OrpheusError as exc:
                unwritten += 1
                _warn("tags not written", exc.message)
    return EXIT_PARTIAL if unwritten else EXIT_OK


def _warn(what: str, message: str) -> None:
    err_console.print(f"[yellow]{what}[/yellow] {escape(message)}", markup=True, soft_wrap=True)


def _render(records: list[dict], labels: list[str], opts: PredictOptions) -> list:
    """JSON or CSV text, or rich tables (the file table, then one taggram table per file)."""
    from orpheus import results

    if opts.format == "json":
        import json

        return [json.dumps(records, indent=2, ensure_ascii=False) + "\n"]
    if opts.format == "csv":
        return [results.csv_text(records, labels, taggram=opts.taggram)]
    title = f"tags ({records[0]['model']}, p >= {opts.threshold:g})"
    table = Table(title=title, title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("tags", overflow="fold")
    for rec in records:
        tags = ", ".join(f"{t['tag']} {t['probability']:.2f}" for t in rec["tags"]) or "-"
        table.add_row(rec["path"], tags)
    out = [table]
    for rec in records if opts.taggram else []:
        gram = Table(title=f"taggram of {rec['path']}", title_justify="left")
        gram.add_column("start (s)", justify="right")
        gram.add_column("most probable tags in the window", overflow="fold")
        names = list(rec["probabilities"])
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
