"""Evaluation the way the field reports it: song-level predictions, per-tag ROC-AUC and PR-AUC.

A song's prediction is the mean of the model's outputs over evenly spaced windows covering the
whole track (the windows come from `orpheus.dataset.track_windows`), leaving out the windows
quieter than `silence_db` as `predict` does (the records' stored loudness, `audio.Loudness`); a
track whose windows are all silent gets no prediction, so it is left out of the metrics and
counted. Records built before they stored loudness are evaluated on every window, with a note.
Each tag gets a ROC-AUC and a PR-AUC (average precision) from scikit-learn; the macro averages over
tags are what Pons et al. 2018 and Won et al. 2020 report. The micro averages (every (track, tag)
pair pooled into one curve) are what the original project reported (seed-inventory §4.4); they are
given too, labelled as such, because they are dominated by the frequent tags. A tag with no positive
(or no negative) test track has no AUC: it is listed with null values and left out of the macro
mean.

This module needs no TensorFlow at import: `song_predictions` takes any callable mapping a batch
of windows to probabilities; `evaluate_run` (what `orpheus test` does) loads the run's model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orpheus.audio import SILENCE_DB
from orpheus.errors import OrpheusError

if TYPE_CHECKING:
    from orpheus.runs import Run
    from orpheus.workspace import Workspace


@dataclass
class SongPredictions:
    tids: list[str]
    y_true: np.ndarray  # (tracks, labels) 0/1
    y_score: np.ndarray  # (tracks, labels) mean probability over the track's audible windows
    silent: list[str] = field(default_factory=list)  # tracks with no audible window, left out


def song_predictions(
    predict: Callable[[np.ndarray], np.ndarray],
    tracks: Iterable[tuple],
    *,
    batch_size: int = 32,
    on_track: Callable[[], None] | None = None,
) -> SongPredictions:
    """Average `predict` over each track's windows; `tracks` yields (tid, windows, y), or
    (tid, windows, y, audible) to average over the audible windows only (a track with none is
    listed in `silent` instead, never passed to `predict`)."""
    tids, truth, scores, silent = [], [], [], []
    for tid, windows, y, *audible in tracks:
        name = tid.decode() if isinstance(tid, bytes) else str(tid)
        windows = np.asarray(windows, dtype=np.float32)
        if audible:
            windows = windows[np.asarray(audible[0], dtype=bool)]
        if len(windows):
            outs = [
                np.asarray(predict(windows[i : i + batch_size]))
                for i in range(0, len(windows), batch_size)
            ]
            tids.append(name)
            truth.append(np.asarray(y, dtype=np.float32))
            scores.append(np.concatenate(outs).mean(axis=0))
        else:
            silent.append(name)
        if on_track is not None:
            on_track()
    if not tids:
        empty = np.zeros((0, 0), np.float32)
        return SongPredictions([], empty, empty, silent)
    return SongPredictions(tids, np.stack(truth), np.stack(scores), silent)


@dataclass
class RunEvaluation:
    results: dict  # `evaluate`'s, plus "run", "silence_db" and "silent_tracks"
    predictions: SongPredictions  # per test track, in the records' order
    note: str | None = None  # for records that predate the silence rule: how to rebuild them


def evaluate_run(
    ws: Workspace,
    run: Run,
    *,
    silence_db: float = SILENCE_DB,
    on_start: Callable[[int], None] | None = None,
    on_track: Callable[[], None] | None = None,
) -> RunEvaluation:
    """Song-level predictions of `run` on its TFRecords' test split, and their metrics.

    Windows quieter than `silence_db` (RMS, dBFS) are left out, as `predict` leaves them out;
    tracks with no other window are counted in `results["silent_tracks"]`. Records without
    loudness are evaluated on every window (`results["silence_db"]` None) and get a `note`.
    `on_start` gets the number of test tracks before the model loads; `on_track` is called
    after each track.
    """
    from orpheus.records import loudness_block, naming_damaged_shards, read_index, rebuild_command

    run.require_model()
    records_dir = ws.require(f"tfrecords/{run.frontend}")
    index = read_index(records_dir)
    note = None
    if loudness_block(index) is None:
        note = (
            f"the TFRecords in {records_dir} predate the silence rule (they store no loudness): "
            f"every window counts; rebuild them with `{rebuild_command(index)}` to leave out "
            "windows below --silence-db"
        )
    if not index["counts"].get("test"):
        raise OrpheusError(
            f"the TFRecords in {records_dir} have no test split",
            hint="give model-training.split three parts (e.g. [80, 10, 10]) and rebuild them",
        )
    if on_start is not None:
        on_start(index["counts"]["test"])

    from orpheus import config, dataset, runs

    model = runs.load_model(run)
    tracks = dataset.track_windows(
        records_dir, run.config, "test", run.labels, recipe=run.recipe, silence_db=silence_db
    )
    with naming_damaged_shards(records_dir, index, "test"):
        preds = song_predictions(
            lambda w: model(w, training=False),
            ((t.numpy(), w.numpy(), y.numpy(), a.numpy()) for t, w, y, a in tracks),
            batch_size=config.settings(run.config).model_training.batch_size,
            on_track=on_track,
        )
    if not preds.tids:
        if preds.silent:
            raise OrpheusError(
                f"every one of the {len(preds.silent)} test tracks is silent "
                f"(no window at or above {silence_db} dBFS)",
                hint="lower --silence-db",
            )
        raise OrpheusError("the test split has no track with one of the model's tags")
    results = evaluate(preds.y_true, preds.y_score, run.labels)
    results["run"] = run.id
    results["silence_db"] = None if note else float(silence_db)
    results["silent_tracks"] = len(preds.silent)
    return RunEvaluation(results, preds, note)


def evaluate(y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str]) -> dict:
    """Macro and micro ROC-AUC / PR-AUC and a per-tag table (values in [0, 1])."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true = np.asarray(y_true) > 0.5
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.shape[1] != len(labels):
        raise ValueError(
            f"shapes do not match: truth {y_true.shape}, scores {y_score.shape}, "
            f"{len(labels)} labels"
        )
    per_tag: dict[str, dict] = {}
    roc, pr = [], []
    for j, label in enumerate(labels):
        positives = int(y_true[:, j].sum())
        entry = {"roc_auc": None, "pr_auc": None, "positives": positives}
        if 0 < positives < len(y_true):
            entry["roc_auc"] = float(roc_auc_score(y_true[:, j], y_score[:, j]))
            entry["pr_auc"] = float(average_precision_score(y_true[:, j], y_score[:, j]))
            roc.append(entry["roc_auc"])
            pr.append(entry["pr_auc"])
        per_tag[label] = entry
    flat_true, flat_score = y_true.ravel(), y_score.ravel()
    has_both = 0 < flat_true.sum() < flat_true.size
    return {
        "roc_auc_macro": float(np.mean(roc)) if roc else None,
        "pr_auc_macro": float(np.mean(pr)) if pr else None,
        "roc_auc_micro": float(roc_auc_score(flat_true, flat_score)) if has_both else None,
        "pr_auc_micro": float(average_precision_score(flat_true, flat_score)) if has_both else None,
        "tracks": int(y_true.shape[0]),
        "tags_evaluated": len(roc),
        "tags_without_auc": [t for t, e in per_tag.items() if e["roc_auc"] is None],
        "per_tag": per_tag,
    }


def plot_curves(
    y_true: np.ndarray, y_score: np.ndarray, labels: Sequence[str], out_dir: Path
) -> list[Path]:
    """Write roc.png and pr.png: one thin curve per tag, the micro-average curve in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true = np.asarray(y_true) > 0.5
    y_score = np.asarray(y_score, dtype=np.float64)
    paths = []
    for kind, curve, xlabel, ylabel in (
        ("roc", roc_curve, "false positive rate", "true positive rate"),
        ("pr", precision_recall_curve, "recall", "precision"),
    ):
        fig, ax = plt.subplots(figsize=(6, 6))
        for j, label in enumerate(labels):
            if 0 < y_true[:, j].sum() < len(y_true):
                a, b, _ = curve(y_true[:, j], y_score[:, j])
                x, y = (a, b) if kind == "roc" else (b, a)
                ax.plot(x, y, linewidth=0.8, alpha=0.6, label=label if len(labels) <= 15 else None)
        if 0 < y_true.sum() < y_true.size:
            a, b, _ = curve(y_true.ravel(), y_score.ravel())
            x, y = (a, b) if kind == "roc" else (b, a)
            ax.plot(x, y, color="black", linewidth=2.5, label="micro average")
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{kind.upper()} curves per tag (song level)")
        ax.legend(fontsize="small", loc="lower right" if kind == "roc" else "lower left")
        fig.tight_layout()
        path = out_dir / f"{kind}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
