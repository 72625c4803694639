"""Tagging results out of the Tagger and into the world: JSON records, CSV rows, the embeddings
file, taggram plots, and tags written into an audio file's own metadata.

Records stream: `RecordStream` writes each file's record (a JSON line or CSV rows) and flushes it
the moment the file is done, so a killed batch loses only the files in flight, and
`previous_records` reads back what an earlier run left, for `predict --resume`.

Kept apart from `orpheus.tagger` so it imports no TensorFlow; `predict` and `record` share it,
and so can notebooks. A result here is any object with the `TagResult` attributes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from orpheus.errors import OrpheusError
from orpheus.io import write_atomic_via

if TYPE_CHECKING:
    from orpheus.tagger import TagResult

DIGITS = 6
FORMATS = ("table", "json", "jsonl", "csv")
STREAMED = ("jsonl", "csv")  # written row by row; the others are rendered once, at the end
CSV_META = ["path", "model", "size", "mtime_ns", "note"]


def record(
    path: str,
    model: str,
    result: TagResult,
    tags: Sequence[tuple[str, float]],
    *,
    taggram: bool = False,
    size: int | None = None,
    mtime_ns: int | None = None,
) -> dict:
    """The JSON object of one file: path, model, the file's size and modification time (what
    `--resume` compares), kept tags, every label's probability (none for a silent song), and a
    `note` ("silent", "short") when there is one."""
    silent = len(result.taggram) == 0
    obj = {
        "path": path,
        "model": model,
        "size": size,
        "mtime_ns": mtime_ns,
        "tags": [{"tag": t, "probability": round(p, DIGITS)} for t, p in tags],
        "probabilities": {}
        if silent
        else {
            label: round(float(p), DIGITS)
            for label, p in zip(result.labels, result.probabilities, strict=True)
        },
    }
    if result.note:
        obj["note"] = result.note
    if taggram:
        obj["taggram"] = {
            "window_seconds": round(result.window_seconds, DIGITS),
            "start": [round(float(s), DIGITS) for s in result.starts],
            "probabilities": np.round(result.taggram.astype(float), DIGITS).tolist(),
        }
    return obj


def csv_header(labels: Sequence[str], *, taggram: bool = False) -> list[str]:
    """path, model, size, mtime_ns, note, [window_start,] tags, then one column per label."""
    return [*CSV_META, *(["window_start"] if taggram else []), "tags", *labels]


def csv_rows(rec: dict, labels: Sequence[str], *, taggram: bool = False) -> list[list]:
    """One file's CSV rows: its own row (tags as `tag:p;...`), then with `taggram` one row per
    window (its start in `window_start`)."""
    meta = [rec["path"], rec["model"], rec.get("size"), rec.get("mtime_ns"), rec.get("note")]
    meta = ["" if v is None else v for v in meta]
    tags = ";".join(f"{t['tag']}:{t['probability']:.4f}" for t in rec["tags"])
    probs = [rec["probabilities"].get(label, "") for label in labels]
    rows = [[*meta, *([""] if taggram else []), tags, *probs]]
    if taggram:
        gram = rec["taggram"]
        for start, row in zip(gram["start"], gram["probabilities"], strict=True):
            rows.append([*meta, start, "", *row])
    return rows


def csv_text(records: Sequence[dict], labels: Sequence[str], *, taggram: bool = False) -> str:
    """The header, then each file's `csv_rows`."""
    rows = [csv_header(labels, taggram=taggram)]
    for rec in records:
        rows += csv_rows(rec, labels, taggram=taggram)
    return _csv_lines(rows)


class RecordStream:
    """Writes each record as a JSON line or as CSV rows (the header before the first) and
    flushes it at once: what a kill leaves is every finished file plus at most one torn line."""

    def __init__(self, fh: TextIO, fmt: str, *, taggram: bool = False, header: bool = True):
        if fmt not in STREAMED:
            raise ValueError(f"cannot stream {fmt!r}")
        self.fh, self.format, self.taggram, self._header = fh, fmt, taggram, header
        self._csv = csv.writer(fh, lineterminator="\n")

    def write(self, rec: dict, labels: Sequence[str]) -> None:
        if self.format == "jsonl":
            self.fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        else:
            if self._header:
                self._csv.writerow(csv_header(labels, taggram=self.taggram))
                self._header = False
            self._csv.writerows(csv_rows(rec, labels, taggram=self.taggram))
        self.fh.flush()


def partial_path(output: Path) -> Path:
    """Where `table` and `json` outputs keep finished records (JSON Lines) until the end."""
    return output.with_name(output.name + ".partial")


def kept_in(output: Path, fmt: str) -> Path:
    """The file that holds finished records while a batch runs: the output itself (jsonl, csv)
    or its `.partial` (table, json)."""
    return output if fmt in STREAMED else partial_path(output)


@contextlib.contextmanager
def open_stream(
    output: Path | None, fmt: str, stdout: TextIO, *, append: bool = False, taggram: bool = False
) -> Iterator[RecordStream | None]:
    """Where records go as they are finished: `stdout` or `output` for jsonl/csv, the
    `.partial` (JSON Lines) for table/json with an output, nowhere for table/json on stdout.
    With `append` an existing file is continued (`--resume`), its CSV header kept."""
    if output is None:
        yield RecordStream(stdout, fmt, taggram=taggram) if fmt in STREAMED else None
        return
    target = kept_in(output, fmt)
    mode = "a" if append and target.exists() else "w"
    with open(target, mode, encoding="utf-8", newline="") as fh:
        fmt = fmt if fmt in STREAMED else "jsonl"
        yield RecordStream(fh, fmt, taggram=taggram, header=fh.tell() == 0)


def resumable(
    output: Path, fmt: str, model: str, sizes: dict[str, tuple], *, taggram: bool = False
) -> list[dict]:
    """The records of an earlier run of `output` that still hold, all by `model`.

    `sizes` maps each path to tag to its current (size, mtime_ns): a record of a file that
    changed since is dropped from the output (the file is tagged again).
    """
    previous = previous_records(output, fmt, taggram=taggram)
    others = {r.get("model") for r in previous} - {model}
    if others:
        raise OrpheusError(
            f"cannot resume {output}: it holds results of {', '.join(map(str, others))}",
            hint=f"resume with that --model, or write {model}'s results to another -o",
        )
    stale = {
        r["path"]
        for r in previous
        if r["path"] in sizes and sizes[r["path"]] != (r.get("size"), r.get("mtime_ns"))
    }
    if stale:
        drop_records(kept_in(output, fmt), fmt if fmt in STREAMED else "jsonl", stale)
    return [r for r in previous if r["path"] not in stale]


def previous_records(output: Path, fmt: str, *, taggram: bool = False) -> list[dict]:
    """The records an earlier run of this output left, for `--resume`; [] if it left none.

    JSON Lines and CSV are read from `output` itself: a torn last line (a kill mid-write) is
    dropped and cut off the file, so that the resumed run appends after whole records. `json` is
    read from the finished file and from its `.partial`; `table` only from its `.partial`.
    """
    output = Path(output)
    if fmt == "jsonl":
        return _read_jsonl(output)
    if fmt == "csv":
        return _read_csv(output, taggram)
    partial = _read_jsonl(partial_path(output))
    if fmt == "table":
        if output.exists() and not partial_path(output).exists():
            raise OrpheusError(
                f"cannot resume from {output}: a finished table cannot be read back",
                hint="use --format jsonl, csv or json for an output that --resume can read",
            )
        return partial
    finished: list[dict] = []
    if output.exists():
        try:
            finished = json.loads(output.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise OrpheusError(f"cannot resume from {output}: not a JSON list of records") from None
        if not isinstance(finished, list) or not all(isinstance(r, dict) for r in finished):
            raise OrpheusError(f"cannot resume from {output}: not a JSON list of records")
    again = {r.get("path") for r in partial}
    return [r for r in finished if r.get("path") not in again] + partial


def drop_records(path: Path, fmt: str, paths: set[str]) -> None:
    """Rewrite a JSON Lines or CSV output without the records of `paths` (files that changed
    since they were tagged, and are tagged again)."""
    path = Path(path)
    if not paths or not path.exists():
        return
    if fmt == "jsonl":
        lines = path.read_bytes().splitlines(keepends=True)
        kept = b"".join(line for line in lines if json.loads(line)["path"] not in paths)
    else:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
        kept = _csv_lines(rows[:1] + [r for r in rows[1:] if r[0] not in paths]).encode("utf-8")
    write_atomic_via(path, lambda fh: fh.write(kept))


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    data = path.read_bytes()
    records, end = [], 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        if end + len(line) == len(data):  # no newline after it: torn by a kill (or empty)
            break
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or "path" not in rec:  # a whole line: not ours to cut
            raise OrpheusError(f"cannot resume from {path}: line {number} is not a record")
        records.append(rec)
        end += len(line) + 1
    tail = data[end:]
    # a record line starts with its path (see `record`): anything else is not ours to cut
    if tail and not (tail.startswith(b'{"path"') or b'{"path"'.startswith(tail)):
        raise OrpheusError(f"cannot resume from {path}: its last line is not a record")
    if tail:
        os.truncate(path, end)
    return records


def _read_csv(path: Path, taggram: bool) -> list[dict]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    text = path.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    head = rows[0]
    if head[: len(CSV_META)] != CSV_META or ("window_start" in head) != taggram:
        raise OrpheusError(
            f"cannot resume from {path}: not a CSV that predict wrote with these options",
            hint="resume with the options of the first run (same --taggram), or another -o",
        )
    whole = rows[1:]
    if not text.endswith("\n") or (whole and len(whole[-1]) != len(head)):
        whole = whole[:-1]  # torn by a kill
    if taggram:  # a file's window rows follow its row; the last file may lack some: redo it
        last_file = max((i for i, r in enumerate(whole) if r[len(CSV_META)] == ""), default=0)
        whole = whole[:last_file]
    if len(whole) != len(rows) - 1:
        write_atomic_via(path, lambda fh: fh.write(_csv_lines([head, *whole]).encode("utf-8")))
    records = []
    for row in whole:
        if taggram and row[len(CSV_META)] != "":
            continue  # a window row
        rec = dict(zip(CSV_META, row, strict=False))
        for key in ("size", "mtime_ns"):
            rec[key] = int(rec[key]) if rec[key] else None
        records.append(rec)
    return records


def _csv_lines(rows: Sequence[Sequence]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
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
