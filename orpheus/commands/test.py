"""`orpheus test`: song-level evaluation of a trained run on the test split (macro + micro AUCs),
silent windows left out by predict's rule (`--silence-db`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orpheus.commands._common import console, err_console, info, print_json, progress, workspace
from orpheus.commands._predict_options import SilenceDb
from orpheus.errors import OrpheusError

TRAIN_HINT = "train one with `orpheus train` (or finish it with `--resume`)"
JSON_KEYS = (
    "roc_auc_macro",
    "pr_auc_macro",
    "roc_auc_micro",
    "pr_auc_micro",
    "silent_tracks",
    "per_tag",
)


def command(
    ctx: typer.Context,
    run: Annotated[
        str | None, typer.Option(help="Run id under runs/ (default: the latest trained run).")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write ROC and PR curves (roc.png, pr.png) into this folder."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    silence_db: SilenceDb = None,
) -> None:
    """Evaluate a run: per-tag and macro ROC-AUC / PR-AUC on song-level predictions."""
    from orpheus import evaluation, runs

    ws = workspace(ctx)
    chosen = runs.find(ws, run) if run else runs.latest(ws)
    if chosen is None:
        raise OrpheusError("no trained run yet: run `orpheus train`")
    if not chosen.dir.is_dir():
        raise OrpheusError(f"no run {chosen.id} in {chosen.dir.parent}", hint=TRAIN_HINT)
    chosen.require_model()
    with progress(ctx) as bar:
        task = None

        def start(tracks: int) -> None:
            nonlocal task
            task = bar.add_task("song-level predictions", total=tracks)

        given = {} if silence_db is None else {"silence_db": silence_db}
        done = evaluation.evaluate_run(
            ws, chosen, on_start=start, on_track=lambda: bar.advance(task), **given
        )
    results = done.results
    if done.note:
        err_console.print(f"note: {escape(done.note)}")
    if results["silent_tracks"]:
        err_console.print(
            f"note: {results['silent_tracks']} silent test tracks (no window at or above "
            f"{results['silence_db']} dBFS) are left out of the metrics"
        )
    if plot is not None:
        paths = evaluation.plot_curves(
            done.predictions.y_true, done.predictions.y_score, chosen.labels, plot
        )
        info(ctx, "plots: " + ", ".join(str(p) for p in paths))
    runs.record_test(ws, chosen, results)
    if as_json:
        print_json({k: results[k] for k in JSON_KEYS})
        return
    _render(results)


def _render(results: dict) -> None:
    silent = f" ({results['silent_tracks']} silent, left out)" if results["silent_tracks"] else ""
    table = Table(
        title=f"run {results['run']}: {results['tracks']} test tracks{silent}, song level"
    )
    for col in ("tag", "positives", "ROC-AUC", "PR-AUC"):
        table.add_column(col, justify="left" if col == "tag" else "right")
    for tag, e in sorted(results["per_tag"].items(), key=lambda kv: -(kv[1]["roc_auc"] or -1.0)):
        table.add_row(tag, str(e["positives"]), _fmt(e["roc_auc"]), _fmt(e["pr_auc"]))
    console.print(table)
    console.print(
        f"macro (per tag, then averaged over {results['tags_evaluated']} tags): "
        f"ROC-AUC {_fmt(results['roc_auc_macro'])}  PR-AUC {_fmt(results['pr_auc_macro'])}"
    )
    console.print(
        f"micro (all track-tag pairs pooled; the original project's figure): "
        f"ROC-AUC {_fmt(results['roc_auc_micro'])}  PR-AUC {_fmt(results['pr_auc_micro'])}"
    )
    if results["tags_without_auc"]:
        console.print(
            f"no AUC (no positive or no negative test track): "
            f"{', '.join(results['tags_without_auc'])}"
        )


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"
