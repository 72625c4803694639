"""Tagging as a library: which files, which model, and one record per file as it is tagged.

`orpheus predict` and `orpheus record` are thin layers over this module, and so is a notebook:

    from orpheus import predicting

    for rec in predicting.tag_paths(["music/"], threshold=0.2):
        print(rec["path"], rec.get("skipped") or [t["tag"] for t in rec["tags"]])

A record is the JSON object `predict --format jsonl` writes for a file (`results.record`); a file
that could not be tagged gives `{"path": ..., "skipped": reason}` instead. The model is loaded
(and TensorFlow imported) only once a file has decoded, so a folder of broken files never pays
for it. `tag_record` is the same per-file work for one file at a time (a Beam DoFn calls it), so
every runner makes the same records.

No TensorFlow at import: the Tagger is imported when a model is loaded.
"""

from __future__ import annotations

import glob
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orpheus import audio, pretrained, results
from orpheus.errors import OrpheusError

if TYPE_CHECKING:
    from orpheus.tagger import Tagger, TagResult
    from orpheus.workspace import Workspace

GLOB_CHARS = set("*?[")
# Called once a file is tagged, before its record is made (so the record's size and mtime are
# the file's after the hook: a hook that writes tags into the file is seen by `--resume`).
OnTagged = Callable[[Path, "TagResult", list[tuple[str, float]]], None]


@dataclass(frozen=True)
class Options:
    """How files are tagged and what their records hold."""

    threshold: float = 0.1
    top_k: int | None = None
    hop: float | None = None
    taggram: bool = False
    embeddings: bool = False  # keep each window's embedding on the result (for on_tagged)
    silence_db: float = audio.SILENCE_DB
    min_seconds: float = audio.MIN_SECONDS
    windows: str | None = None  # "even" or "musicnn" (Tagger.tag); None: the model's recipe


# -- inputs ---------------------------------------------------------------------------------


@dataclass
class Inputs:
    """What a list of files, folders and globs names: the files to tag, in order and without
    repeats; the paths that name nothing to tag, with the reason; non-audio files in folders."""

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    ignored: int = 0


def expand_inputs(paths: Iterable[str | Path]) -> Inputs:
    """Files as given (whatever their extension), folders recursively through symlinked folders
    (audio extensions only, `audio.audio_files`), and globs (`**` recurses)."""
    found = Inputs()

    def folder(path: Path) -> list[Path]:
        files, others, trouble = audio.audio_files(path)
        found.ignored += others
        found.problems.extend(_problem(text) for text in trouble)
        return files

    for given in map(Path, paths):
        if given.is_dir():
            files = folder(given)
            if not files:
                found.problems.append((str(given), "no audio files in this folder"))
        elif given.exists():
            files = [given]
        elif GLOB_CHARS & set(str(given)):
            matches = [Path(m) for m in sorted(glob.glob(str(given), recursive=True))]
            files = [f for m in matches for f in (folder(m) if m.is_dir() else [m])]
            if not files:
                found.problems.append((str(given), "no files match"))
        else:
            files = []
            found.problems.append((str(given), "no such file or folder"))
        found.files += files
    found.files = list(dict.fromkeys(found.files))
    return found


def _problem(text: str) -> tuple[str, str]:
    """`audio.audio_files`'s "FOLDER: cannot read this folder (...)" as (folder, reason)."""
    where, _, reason = text.rpartition(": cannot read ")
    return (where, f"cannot read {reason}") if where else (text, "cannot read")


# -- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model chosen but not loaded: a bundled one by name, or a run folder."""

    name: str  # what records call it: "msd-musicnn" or "run/<id>"
    run_dir: Path | None = None  # None for a bundled model

    @property
    def sample_rate(self) -> int:
        """The rate files are decoded at, read without TensorFlow."""
        from orpheus.runs import Run

        if self.run_dir is None:
            return audio.DEFAULT_SR
        try:
            return Run(self.run_dir).recipe.sample_rate
        except OrpheusError:
            return audio.DEFAULT_SR  # loading the run says what is wrong with it

    def labels(self) -> list[str]:
        """The model's labels in output order, read without TensorFlow."""
        if self.run_dir is None:
            return pretrained.labels(self.name)
        try:
            return json.loads((self.run_dir / "labels.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []  # loading the run says what is wrong with it

    def load(self) -> Tagger:
        """The Tagger (TensorFlow is imported here)."""
        from orpheus.tagger import Tagger

        if self.run_dir is None:
            return Tagger.pretrained(self.name)
        return Tagger.from_run_dir(self.run_dir, name=self.name)


def resolve_model(workspace: Workspace | None, model: str | Path | None = None) -> ModelRef:
    """The model a name stands for, checked before any audio is read or TensorFlow loaded.

    `model` is a bundled model's name, a run id (`ID` or `run/ID`) of `workspace`, or a run
    folder; None is the workspace's latest finished run, else the default bundled model.
    """
    from orpheus import runs

    if model is not None and str(model) in pretrained.NAMES:
        return ModelRef(str(model))
    if model is None:
        last = runs.latest(workspace)
        return ModelRef(last.name, last.dir) if last else ModelRef(pretrained.DEFAULT)
    if workspace is not None:
        run = runs.find(workspace, str(model))
        if run.dir.is_dir():  # an unfinished one too: loading it says so
            return ModelRef(run.name, run.dir)
    if runs.Run(Path(model)).finished:
        return ModelRef(runs.Run(Path(model)).name, Path(model))
    choices = list(pretrained.NAMES) + [r.id for r in runs.list_runs(workspace)]
    raise OrpheusError(f"unknown model {str(model)!r}", hint=f"choose one of: {', '.join(choices)}")


# -- one file -------------------------------------------------------------------------------


def skipped(path: str | Path, reason: str) -> dict:
    """The record of a file that was not tagged."""
    return {"path": str(path), "skipped": reason}


def size_mtime(path: str | Path) -> tuple[int | None, int | None]:
    """What `--resume` compares: the file's size and modification time (None if it is gone)."""
    try:
        st = Path(path).stat()
    except OSError:
        return None, None
    return st.st_size, st.st_mtime_ns


def finish(
    path: Path,
    model: str,
    outcome: TagResult | audio.AudioError,
    options: Options,
    on_tagged: OnTagged | None = None,
) -> dict:
    """The record of one file from what tagging it gave: the one place every runner makes one."""
    if isinstance(outcome, audio.AudioError):
        return skipped(outcome.path, outcome.reason)
    kept = outcome.top(options.threshold, options.top_k)
    if on_tagged is not None:
        on_tagged(path, outcome, kept)
    size, mtime_ns = size_mtime(path)
    return results.record(
        str(path), model, outcome, kept, taggram=options.taggram, size=size, mtime_ns=mtime_ns
    )


def tag_record(
    tagger: Tagger,
    path: str | Path,
    options: Options = Options(),
    on_tagged: OnTagged | None = None,
) -> dict:
    """Decode and tag one file with a loaded Tagger and return its record (skipped or tagged)."""
    path = Path(path)
    try:
        outcome = tagger.tag_file(
            path,
            hop=options.hop,
            windows=options.windows,
            embeddings=options.embeddings,
            silence_db=options.silence_db,
            min_seconds=options.min_seconds,
        )
    except audio.AudioError as exc:
        outcome = exc
    return finish(path, tagger.name, outcome, options, on_tagged)


# -- many files -----------------------------------------------------------------------------


@dataclass
class Summary:
    """What a batch did, for its last line: files tagged (with their notes), seconds of audio
    tagged, files skipped by reason, non-audio files ignored, and how fast it went."""

    tagged: int = 0
    seconds: float = 0.0
    notes: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    ignored: int = 0
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None

    def add(self, rec: dict, seconds: float = 0.0) -> None:
        if "skipped" in rec:
            self.skipped[rec["skipped"].split(" (")[0]] += 1  # "too short (0.3 s)": "too short"
        else:
            self.tagged += 1
            self.seconds += seconds
            if rec.get("note"):
                self.notes[rec["note"]] += 1

    @property
    def elapsed(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def realtime(self) -> float:
        """Seconds of audio tagged per second of wall time (the model's loading included)."""
        return self.seconds / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        """E.g. `tagged 3 (0:00:07 of audio in 2.1 s, 3.3x realtime), 1 short, 1 silent,
        skipped 1 (1 too short), 2 non-audio file(s) ignored`: hours:minutes:seconds of audio."""
        s, took, fast = round(self.seconds), self.elapsed, self.realtime
        clock = f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
        took_text = f"{took:.1f}" if took < 60 else f"{took:.0f}"
        speed = f", {fast:.1f}x realtime" if fast < 10 else f", {fast:.0f}x realtime"
        speed = speed if self.tagged and took > 0 else ""
        parts = [f"tagged {self.tagged} ({clock} of audio in {took_text} s{speed})"]
        parts += [f"{n} {note}" for note, n in sorted(self.notes.items())]
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            parts.append(f"skipped {sum(self.skipped.values())} ({reasons})")
        if self.ignored:
            parts.append(f"{self.ignored} non-audio file(s) ignored")
        return ", ".join(parts)


def tag_files(
    files: Iterable[str | Path],
    model: ModelRef | Tagger,
    options: Options = Options(),
    *,
    on_tagged: OnTagged | None = None,
    on_load: Callable[[str], None] | None = None,
    summary: Summary | None = None,
) -> Iterator[dict]:
    """Tag files in order and yield each one's record as soon as it is done (skips included).

    Decoding runs ahead in threads while the model runs; a `ModelRef` is loaded (after
    `on_load(name)`) once the first file has decoded. `summary`, when given, counts each record.
    """
    from orpheus.tagger import tag_files as tag_decoded

    todo = [Path(f) for f in files]
    if isinstance(model, ModelRef):
        name, rate = model.name, model.sample_rate

        def load() -> Tagger:
            if on_load is not None:
                on_load(name)
            return model.load()

    else:
        name, rate, load = model.name, model.sample_rate, lambda: model
    for path, outcome in tag_decoded(
        todo,
        load,
        rate,
        hop=options.hop,
        windows=options.windows,
        embeddings=options.embeddings,
        silence_db=options.silence_db,
        min_seconds=options.min_seconds,
    ):
        rec = finish(path, name, outcome, options, on_tagged)
        if summary is not None:
            summary.add(rec, 0.0 if "skipped" in rec else outcome.duration)
        yield rec
    if summary is not None:
        summary.ended = time.perf_counter()


def tag_paths(
    paths: Iterable[str | Path],
    *,
    model: str | Path | ModelRef | Tagger | None = None,
    workspace: Workspace | None = None,
    threshold: float = Options.threshold,
    top_k: int | None = None,
    hop: float | None = None,
    taggram: bool = False,
    silence_db: float = Options.silence_db,
    min_seconds: float = Options.min_seconds,
    windows: str | None = None,
    resume_from: Iterable[dict] = (),
    on_tagged: OnTagged | None = None,
    summary: Summary | None = None,
) -> Iterator[dict]:
    """Tag files, folders and globs: one record per file, as soon as it is tagged.

    `model` is a name `resolve_model` knows (None: the workspace's latest run, else
    msd-musicnn), or a loaded Tagger. Paths that name nothing to tag come first, as skipped
    records. Files that a record of `resume_from` holds with their current size and
    modification time are passed over (`pending`). See `tag_files` for `on_tagged` and `summary`.
    """
    if model is None or isinstance(model, str | Path):
        model = resolve_model(workspace, model)
    options = Options(threshold, top_k, hop, taggram, False, silence_db, min_seconds, windows)
    inputs = expand_inputs(paths)
    if summary is not None:
        summary.ignored += inputs.ignored
    for where, reason in inputs.problems:
        rec = skipped(where, reason)
        if summary is not None:
            summary.add(rec)
        yield rec
    yield from tag_files(
        pending(inputs.files, resume_from), model, options, on_tagged=on_tagged, summary=summary
    )


def pending(files: Iterable[str | Path], resume_from: Iterable[dict]) -> list[Path]:
    """The files that no record of `resume_from` holds with their current size and mtime."""
    done = {(r.get("path"), r.get("size"), r.get("mtime_ns")) for r in resume_from}
    return [Path(f) for f in files if (str(f), *size_mtime(f)) not in done]


def estimated_seconds(path: str | Path) -> float | None:
    """A file's length from its header, before decoding (None if it says none): for progress
    only, since headers are not exact (an m4a said 3.000 s of 3.019 s decoded)."""
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # noqa: BLE001 - any file libsndfile cannot open goes to FFmpeg
        pass
    try:
        import av

        with av.open(str(path)) as container:
            streams = container.streams.audio
            if streams and streams[0].duration and streams[0].time_base:
                return float(streams[0].duration * streams[0].time_base)
            return container.duration / 1e6 if container.duration else None
    except Exception:  # noqa: BLE001 - an unreadable file: decoding reports it
        return None


class RemainingAudio:
    """Seconds of audio the files not tagged yet hold, by their headers (`estimated_seconds`),
    read in a thread so that tagging starts at once (a header costs ~1% of a decode)."""

    def __init__(self, files: list[Path]):
        self._values: dict[str, float] | None = None
        self._left: float | None = None
        self._finished: list[str] = []
        threading.Thread(target=self._read, args=(list(files),), daemon=True).start()

    def _read(self, files: list[Path]) -> None:
        self._values = {str(f): estimated_seconds(f) or 0.0 for f in files}

    def finish(self, path: str) -> float | None:
        """What is left once `path` is done (None while the headers are being read)."""
        values = self._values
        if values is None:
            self._finished.append(path)
            return None
        if self._left is None:
            self._left = sum(values.values()) - sum(values.get(p, 0.0) for p in self._finished)
        self._left -= values.get(path, 0.0)
        return max(self._left, 0.0)
