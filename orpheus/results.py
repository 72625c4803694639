"""Tagging results out of the Tagger and into the world: JSON records, CSV rows, the embeddings
file, taggram plots, and tags written into an audio file's own metadata.

Kept apart from `orpheus.tagger` so it imports no TensorFlow; `predict` and `record` share it,
and so can notebooks. A result here is any object with the `TagResult` attributes.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orpheus.errors import OrpheusError
from orpheus.workspace import write_atomic_via

if TYPE_CHECKING:
    from orpheus.tagger import TagResult

TAG_FIELD = "ORPHEUS_TAGS"
MODEL_FIELD = "ORPHEUS_MODEL"
DIGITS = 6


def record(
    path: str,
    model: str,
    result: TagResult,
    tags: Sequence[tuple[str, float]],
    *,
    taggram: bool = False,
) -> dict:
    """The JSON object of one file: path, model, kept tags, every label's probability."""
    obj = {
        "path": path,
        "model": model,
        "tags": [{"tag": t, "probability": round(p, DIGITS)} for t, p in tags],
        "probabilities": {
            label: round(float(p), DIGITS)
            for label, p in zip(result.labels, result.probabilities, strict=True)
        },
    }
    if taggram:
        obj["taggram"] = {
            "window_seconds": round(result.window_seconds, DIGITS),
            "start": [round(float(s), DIGITS) for s in result.starts],
            "probabilities": np.round(result.taggram.astype(float), DIGITS).tolist(),
        }
    return obj


def csv_text(records: Sequence[dict], labels: Sequence[str], *, taggram: bool = False) -> str:
    """One row per file (path, model, tags as `tag:p;...`, then one column per label).

    With `taggram`, a `window_start` column is added and each file's row (empty window_start)
    is followed by one row per window.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["path", "model", *(["window_start"] if taggram else []), "tags", *labels]
    writer.writerow(head)
    for rec in records:
        tags = ";".join(f"{t['tag']}:{t['probability']:.4f}" for t in rec["tags"])
        probs = [rec["probabilities"].get(label, "") for label in labels]
        writer.writerow([rec["path"], rec["model"], *([""] if taggram else []), tags, *probs])
        if taggram:
            gram = rec["taggram"]
            for start, row in zip(gram["start"], gram["probabilities"], strict=True):
                writer.writerow([rec["path"], rec["model"], start, "", *row])
    return out.getvalue()


def write_embeddings(path: Path, model: str, items: Sequence[tuple[str, TagResult]]) -> None:
    """An .npz with every window's penultimate-layer vector and each file's mean vector.

    Arrays: `paths` (files), `model`, `mean` (files x dim), `windows` (all windows x dim),
    `window_file` (index into `paths` per window), `window_start` (seconds). No pickled objects.
    """
    windows = [r.embeddings for _, r in items]
    arrays = {
        "paths": np.array([p for p, _ in items], dtype=str),
        "model": np.array(model),
        "mean": np.stack([w.mean(axis=0) for w in windows]).astype(np.float32),
        "windows": np.concatenate(windows).astype(np.float32),
        "window_file": np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)]),
        "window_start": np.concatenate([r.starts for _, r in items]).astype(np.float32),
    }
    write_atomic_via(path, lambda fh: np.savez(fh, **arrays))


def plot_paths(plot: Path, names: Sequence[str]) -> list[Path]:
    """Where each file's taggram PNG goes: `plot` itself for one file, else `plot-<stem>.png`."""
    if len(names) == 1:
        return [Path(plot)]
    out, seen = [], set()
    for i, name in enumerate(names):
        stem = Path(name).stem.replace(".clip", "") or f"{i}"
        candidate = plot.with_name(f"{plot.stem}-{stem}{plot.suffix or '.png'}")
        if candidate in seen:
            candidate = plot.with_name(f"{plot.stem}-{stem}-{i}{plot.suffix or '.png'}")
        seen.add(candidate)
        out.append(candidate)
    return out


def plot_taggram(path: Path, title: str, result: TagResult) -> None:
    """Draw the taggram (labels x time) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = len(result.labels)
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.16 * n + 1.2)), dpi=100)
    end = result.starts[-1] + result.window_seconds if len(result.starts) else 0
    image = ax.imshow(
        result.taggram.T,
        aspect="auto",
        origin="upper",
        cmap="viridis",
        vmin=0,
        vmax=1,
        extent=(0, max(end, 1e-3), n - 0.5, -0.5),
        interpolation="nearest",
    )
    ax.set_yticks(range(n))
    ax.set_yticklabels(result.labels, fontsize=max(4, min(8, 400 // max(n, 1))))
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="probability")
    fig.tight_layout()
    try:
        write_atomic_via(path, lambda fh: fig.savefig(fh, format="png"))
    finally:
        plt.close(fig)


def write_tags(path: Path, tags: Sequence[str], model: str) -> None:
    """Store `tags` in the file's own metadata (ID3 TXXX for mp3/wav, Vorbis comments for
    flac/ogg/opus), without touching the audio. The file is edited as a copy and renamed into
    place, so an interrupted write never leaves it half-written."""
    import mutagen
    from mutagen._vorbis import VCommentDict
    from mutagen.id3 import ID3, TXXX

    path = Path(path)
    tmp = None
    try:
        try:  # a read-only folder or file, a full disk: one line for this file, no crash
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            shutil.copy2(path, tmp)
            audio = mutagen.File(tmp)
            if audio is None:
                raise OrpheusError(f"cannot write tags into {path}: unsupported file type")
            if audio.tags is None:
                audio.add_tags()
            if isinstance(audio.tags, ID3):
                audio.tags.delall(f"TXXX:{TAG_FIELD}")
                audio.tags.delall(f"TXXX:{MODEL_FIELD}")
                audio.tags.add(TXXX(encoding=3, desc=TAG_FIELD, text=list(tags) or [""]))
                audio.tags.add(TXXX(encoding=3, desc=MODEL_FIELD, text=[model]))
            elif isinstance(audio.tags, VCommentDict):
                audio.tags[TAG_FIELD] = list(tags)
                audio.tags[MODEL_FIELD] = [model]
            else:
                raise OrpheusError(f"cannot write tags into {path}: unsupported tag format")
            audio.save()
            os.replace(tmp, path)
        except (OSError, mutagen.MutagenError) as exc:
            raise OrpheusError(f"cannot write tags into {path}: {exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def read_tags(path: Path) -> list[str]:
    """The tags `write_tags` stored in a file (empty if none)."""
    import mutagen
    from mutagen.id3 import ID3

    audio = mutagen.File(path)
    if audio is None or audio.tags is None:
        return []
    if isinstance(audio.tags, ID3):
        frames = audio.tags.getall(f"TXXX:{TAG_FIELD}")
        return [t for f in frames for t in f.text if t]
    return [t for t in audio.tags.get(TAG_FIELD, []) if t]
