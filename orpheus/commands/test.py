"""`orpheus test`: song-level evaluation of a trained run on the test split (macro + micro AUCs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orpheus.commands._common import console, info, print_json, progress, workspace
from orpheus.errors import OrpheusError


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
) -> None:
    """Evaluate a run: per-tag and macro ROC-AUC / PR-AUC on song-level predictions."""
    ws = workspace(ctx)
    run_id = run or _latest_run(ws)
    run_dir = ws.path(ws.config["model-training"]["log_dir"]) / run_id
    missing = [
        f for f in ("model.keras", "labels.json", "config.json") if not (run_dir / f).is_file()
    ]
    if missing:
        raise OrpheusError(
            f"run {run_id} has no {missing[0]}" if run_dir.is_dir() else f"no run {run_id}",
            hint="train one with `orpheus train` (or finish it with `--resume`)",
        )
    cfg, frontend, labels = _run_files(run_dir)
    records_dir = ws.require(f"tfrecords/{frontend}")
    from orpheus.records import read_index

    index = read_index(records_dir)
    if not index["counts"].get("test"):
        raise OrpheusError(
            f"the TFRecords in {records_dir} have no test split",
            hint="give model-training.split three parts (e.g. [80, 10, 10]) and rebuild them",
        )

    import keras

    from orpheus import dataset, evaluation

    try:
        model = keras.models.load_model(run_dir / "model.keras", safe_mode=True, compile=False)
    except (ValueError, OSError) as exc:
        raise OrpheusError(f"cannot load {run_dir / 'model.keras'}: {exc}") from None
    tracks = dataset.track_windows(records_dir, cfg, "test", labels)
    batch = cfg["model-training"]["batch_size"]
    with progress(ctx) as bar:
        task = bar.add_task("song-level predictions", total=index["counts"]["test"])
        preds = evaluation.song_predictions(
            lambda w: model(w, training=False),
            ((t.numpy(), w.numpy(), y.numpy()) for t, w, y in tracks),
            batch_size=batch,
            on_track=lambda: bar.advance(task),
        )
    if not preds.tids:
        raise OrpheusError("the test split has no track with one of the model's tags")
    results = evaluation.evaluate(preds.y_true, preds.y_score, labels)
    results["run"] = run_id
    if plot is not None:
        paths = evaluation.plot_curves(preds.y_true, preds.y_score, labels, plot)
        info(ctx, "plots: " + ", ".join(str(p) for p in paths))
    _save(ws, run_id, run_dir, frontend, results)
    if as_json:
        print_json(
            {
                k: results[k]
                for k in (
                    "roc_auc_macro",
                    "pr_auc_macro",
                    "roc_auc_micro",
                    "pr_auc_micro",
                    "per_tag",
                )
            }
        )
        return
    _render(results)


def _latest_run(ws) -> str:
    """The most recently registered run that has a model."""
    runs = [
        (entry["created"], name.split("/", 1)[1])
        for name, entry in ws.manifest()["artifacts"].items()
        if name.startswith("run/") and (ws.path(entry["path"]) / "model.keras").is_file()
    ]
    if not runs:
        raise OrpheusError("no trained run yet: run `orpheus train`")
    return max(runs)[1]


def _run_files(run_dir: Path) -> tuple[dict, str, list[str]]:
    from orpheus import config as config_mod

    try:
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        frontend = saved.pop("frontend")
        saved.pop("train", None)
        labels = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))
    except (ValueError, KeyError) as exc:
        raise OrpheusError(f"run {run_dir.name} is corrupt ({exc})") from None
    return config_mod.validate(saved, source=str(run_dir / "config.json")), frontend, labels


def _save(ws, run_id: str, run_dir: Path, frontend: str, results: dict) -> None:
    """Results into the run's metrics.json and the run's manifest summary."""
    from orpheus.workspace import write_json_atomic

    path = run_dir / "metrics.json"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        metrics = {}
    metrics["test"] = results
    write_json_atomic(path, metrics)
    name = f"run/{run_id}"
    entry = ws.entry(name) or {}
    ws.register(
        name,
        run_dir,
        params=entry.get("params", {"frontend": frontend}),
        inputs={"tfrecords": f"tfrecords/{frontend}"},
        command=entry.get("command"),
        summary={
            **entry.get("summary", {}),
            "test ROC-AUC (macro)": _round(results["roc_auc_macro"]),
            "test PR-AUC (macro)": _round(results["pr_auc_macro"]),
        },
    )


def _render(results: dict) -> None:
    table = Table(title=f"run {results['run']}: {results['tracks']} test tracks, song level")
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


def _round(value):
    return None if value is None else round(float(value), 4)
