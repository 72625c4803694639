"""`orpheus demo [WS]`: the whole pipeline on the example corpus, in one command.

Each stage is the real command line, run in-process by the CLI that runs the demo (the root
command of its click context, so this module never imports `orpheus.cli`); a stage whose
artifact is already up to date (the manifest says ok) is reused, so re-running the demo is
quick. The outcomes are read where the stages leave them (the manifest, the run's metrics), and
the closing predictions come from the library (`orpheus.predicting`), not from parsed output.
`--layout` picks the example's shape: the MSD path (scan, wrangle) or MTG-Jamendo's files or a
music library, whose labels `orpheus labels import` reads.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orpheus.commands._common import console, err_console, options
from orpheus.errors import OrpheusError
from orpheus.paths import confined
from orpheus.workspace import LABELS, OK, Workspace, is_workspace

RUN_NAME = "demo"


@dataclass
class Stage:
    """One pipeline step: the artifact it makes and the command line that makes it."""

    name: str
    artifact: str | None
    args: list[str]
    outcome: str = ""
    seconds: float = 0.0
    reused: bool = False
    output: str = field(default="", repr=False)


def command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Workspace for the demo.")] = Path("demo-ws"),
    tracks: Annotated[int, typer.Option(help="Example tracks to render.")] = 200,
    epochs: Annotated[
        int | None,
        typer.Option(
            help="Training epochs of the demo's log-mel run (default: the example config's)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Example corpus seed.")] = 0,
    layout: Annotated[
        str,
        typer.Option(
            help="The example's shape: msd (scan, wrangle, Last.fm tags), jamendo (MTG-Jamendo's"
            " TSVs and split) or library (tags in the files); see `orpheus init --layout`."
        ),
    ] = "msd",
) -> None:
    """Run the whole pipeline on the example corpus and summarise it."""
    if tracks <= 0 or (epochs is not None and epochs <= 0):
        raise OrpheusError("--tracks and --epochs must be positive numbers")
    from orpheus.example.layouts import LAYOUTS

    if layout not in LAYOUTS:
        raise OrpheusError(f"unknown --layout {layout!r}", hint="choose " + ", ".join(LAYOUTS))
    cli = ctx.find_root().command  # the `orpheus` group this demo runs in
    stages = pipeline_stages(path, tracks=tracks, epochs=epochs, seed=seed, layout=layout)
    expected = _expect(path, stages, tracks=tracks, epochs=epochs, layout=layout)
    total = time.perf_counter()
    for stage in stages:
        _run_stage(ctx, cli, path, stage, layout)
    ws = Workspace.open(path)
    predictions = [_predict(ws, model) for model in (RUN_NAME, "msd-musicnn")]
    _summary(ws, [*stages, *predictions], time.perf_counter() - total, expected)


def pipeline_stages(
    path: Path, *, tracks: int, epochs: int | None, seed: int, layout: str = "msd"
) -> list[Stage]:
    """The demo's stages, init to test, as `orpheus` command lines (the benchmark reuses them);
    `epochs` None trains for the workspace config's epochs."""
    ws_args = ["-w", str(path)]
    init = ["init", str(path), "--example", "--tracks", str(tracks), "--seed", str(seed)]
    train = ["train", "--frontend", "log-mel", "--run-name", RUN_NAME]
    if _unfinished_run(path):  # an earlier demo stopped while training: go on from there
        train = ["train", "--resume", RUN_NAME]
    if epochs is not None:
        train += ["--epochs", str(epochs)]
    if layout == "msd":
        labels = [
            Stage("scan", "scan", [*ws_args, "scan"]),
            Stage("wrangle", "wrangle", [*ws_args, "wrangle"]),
        ]
    else:
        from orpheus.example.layouts import import_command

        init += ["--layout", layout]
        labels = [Stage("labels import", LABELS, [*ws_args, *import_command(path, layout)])]
    return [
        Stage("init --example", None, init),
        *labels,
        Stage("silence", "silence", [*ws_args, "silence"]),
        Stage("tags clean", "clean-tags", [*ws_args, "tags", "clean"]),
        Stage("tfrecords build", "tfrecords/log-mel", [*ws_args, "tfrecords", "build"]),
        Stage("train", f"run/{RUN_NAME}", [*ws_args, *train]),
        Stage("test", None, [*ws_args, "test", "--run", RUN_NAME, "--json"]),
    ]


def _expect(
    path: Path, stages: list[Stage], *, tracks: int, epochs: int | None, layout: str
) -> float:
    """Say up front how long the demo should take here (a few seconds of calibration)."""
    from orpheus.config import validate
    from orpheus.example.build import EXAMPLE_TRAINING_CONFIG
    from orpheus.example.timing import estimate

    todo = {stage.name for stage in stages if not _up_to_date(path, stage, layout)}
    fresh = "init --example" in todo  # init will apply the example's config
    cfg = validate(EXAMPLE_TRAINING_CONFIG) if fresh else Workspace.open(path).config
    tags = cfg["tags"]
    guess = estimate(
        tracks=tracks if fresh else None,
        epochs=(epochs or cfg["model-training"]["epochs"]) if "train" in todo else None,
        model=cfg["model"],
        training=cfg["model-training"],
        n_labels=max(1, (tags["top"] or 50) - len(tags["without"])),
    )
    err_console.print(
        f"[bold]expected on this machine: about {_minutes(guess.total)}[/bold] (rendering "
        f"{_minutes(guess.render)}, training {_minutes(guess.train)}, the rest "
        f"{_minutes(guess.rest)}; measured in {guess.measured_in:.1f} s)"
    )
    return guess.total


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _run_stage(ctx: typer.Context, cli, path: Path, stage: Stage, layout: str) -> None:
    if _up_to_date(path, stage, layout):
        stage.reused = True
        stage.outcome = "up to date, reused"
        err_console.print(f"[green]✓[/green] {stage.name}: {stage.outcome}")
        return
    argv = [*(["-q"] if options(ctx).quiet else []), *stage.args]
    err_console.print(f"[bold]▶ orpheus {' '.join(stage.args)}[/bold]")
    captured = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(captured):
        code = _invoke(cli, argv)
    stage.seconds = time.perf_counter() - start
    stage.output = captured.getvalue()
    if code not in (0, 1):
        err_console.print(stage.output[-2000:])
        raise OrpheusError(
            f"demo stopped: `orpheus {' '.join(stage.args)}` exited with {code}",
            exit_code=code if isinstance(code, int) else 2,
            hint="run the same demo again: it goes on from there" if code == 130 else None,
        )
    stage.outcome = _outcome(path, stage)
    err_console.print(f"[green]✓[/green] {stage.name}: {stage.outcome} ({stage.seconds:.1f} s)")


def _invoke(cli, argv: list[str]) -> int:
    """Run one `orpheus` command line in-process; the manifest records it as typed."""
    saved, sys.argv = sys.argv, ["orpheus", *argv]
    try:
        result = cli.main(args=argv, prog_name="orpheus", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    finally:
        sys.argv = saved
    return result if isinstance(result, int) else 0


def _unfinished_run(path: Path) -> bool:
    """Whether the workspace holds the demo's run with a NOTE: stopped before it finished."""
    from orpheus import runs

    return is_workspace(path) and (runs.runs_dir(path) / RUN_NAME / runs.NOTE_FILE).is_file()


def _up_to_date(path: Path, stage: Stage, layout: str) -> bool:
    if not is_workspace(path):
        return False
    ws = Workspace.open(path)
    if stage.artifact is None:
        return stage.args[0] == "init" and _example_layout(ws) == layout
    return ws.entry(stage.artifact) is not None and ws.state(stage.artifact) == OK


def _example_layout(ws: Workspace) -> str | None:
    """The layout of the example corpus the workspace points at (None without one): its
    truth.json lies beside the audio folder in every layout."""
    audio = ws.input_path("audio_root")
    truth = audio.parent / "truth.json" if audio is not None else None
    if truth is None or not truth.is_file():
        return None
    return json.loads(truth.read_text(encoding="utf-8")).get("layout", "msd")


def _outcome(path: Path, stage: Stage) -> str:
    """What a stage left: its manifest summary, or for `test` the run's test metrics."""
    if stage.artifact is not None:
        entry = Workspace.open(path).entry(stage.artifact) or {}
        summary = entry.get("summary") or {}
        return ", ".join(f"{k} {v}" for k, v in summary.items()) or "done"
    if stage.args[0] != "init" and "test" in stage.args:
        run_dir = Workspace.open(path).artifact_path(f"run/{RUN_NAME}")
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["test"]
        roc, pr = _score(metrics.get("roc_auc_macro")), _score(metrics.get("pr_auc_macro"))
        return f"macro ROC-AUC {roc}, macro PR-AUC {pr}"
    return "done"


def _predict(ws: Workspace, model: str) -> Stage:
    """Tag a few example tracks with `model`, through the library `orpheus predict` calls."""
    from orpheus import predicting

    examples = _example_tracks(ws, 3)
    stage = Stage(f"predict ({model})", None, ["predict", *examples, "--model", model])
    err_console.print(f"[bold]▶ orpheus {' '.join(stage.args)}[/bold]")
    start = time.perf_counter()
    records = list(predicting.tag_paths(examples, model=model, workspace=ws, top_k=3))
    stage.seconds = time.perf_counter() - start
    stage.outcome = "; ".join(
        f"{Path(r['path']).name}: "
        + (", ".join(t["tag"] for t in r["tags"]) if "tags" in r else r.get("skipped", "?"))
        for r in records
    )
    err_console.print(f"[green]✓[/green] {stage.name}: {stage.outcome} ({stage.seconds:.1f} s)")
    return stage


def _score(value: float | None) -> str:
    return "n/a (too few test tracks)" if value is None else f"{value:.3f}"


def _example_tracks(ws: Workspace, count: int) -> list[str]:
    """A few tracks that survived cleaning, to predict on."""
    import pandas as pd

    table = pd.read_parquet(ws.require("silence"))
    root = ws.audio_root()
    inside = (confined(root, rel) for rel in sorted(table["file_path"]))
    return [str(p) for p in inside if p is not None][:count]


def _summary(ws: Workspace, stages: list[Stage], seconds: float, expected: float) -> None:
    table = Table(title="Orpheus demo", title_justify="left")
    table.add_column("stage")
    table.add_column("outcome", overflow="fold")
    table.add_column("wall s", justify="right")
    for stage in stages:
        wall = "reused" if stage.reused else f"{stage.seconds:.1f}"
        table.add_row(stage.name, stage.outcome, wall)
    console.print(table)
    console.print(f"total {seconds:.0f} s (expected {expected:.0f} s), workspace {ws.root}")
    console.print("next, try:")
    for line in (
        f"orpheus -w {ws.root} status",
        f"orpheus -w {ws.root} predict YOUR_SONG.mp3 -t 0.1",
        f"orpheus -w {ws.root} train --frontend waveform --epochs 3",
        "orpheus record --seconds 10   # needs a microphone",
    ):
        console.print(f"  {line}")
