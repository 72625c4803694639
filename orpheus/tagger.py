"""The Tagger: load a model once, then tag many files or arrays.

A Tagger holds a model and its feature recipe (`orpheus.features.Recipe`: front end, sample
rate, mel parameters, window length, normalisation, placement). A song is cut into the recipe's
windows (`Recipe.windows`): by default evenly spaced over the whole track, the windows song-level
evaluation uses; with `windows="musicnn"`, musicnn's extractor's non-overlapping patches from the
start, the tail dropped, over log-mels whose edge frames are zero-padded as the extractor's
librosa (>= 0.10) pads them, so a user migrating from musicnn gets its taggram (within 1e-4). A
clip shorter than one window is repeated to fill it. The windows go through the model in batches,
and the result is a taggram (one row of probabilities per window), its mean over windows (the
song-level prediction), and optionally the penultimate-layer embedding of every window (the input
of the `output` layer).

Silence and very short audio: a window quieter than `silence_db` (`audio.audible_windows`)
is left out of the mean, and a song whose windows are all silent gets no probabilities (note
"silent"); a file shorter than `min_seconds` is not tagged (an `AudioError`, "too short"), and one
shorter than a window is tagged with the note "short".

TensorFlow is imported when a Tagger is built, not with this module: `tag_files` decodes with
a model loader in hand and calls it only once a file has decoded, so a batch of broken files
never pays for loading the model.

Features come from `orpheus.audio`, windows from `orpheus.features` (never the tf.data module).
Models:
- the bundled musicnn taggers (`msd-musicnn`, `mtt-musicnn`): 187-frame (3 s) log-mel patches fed
  as they are (musicnn normalises with its own input BatchNorm), through the exact, faster
  rewrite of the graph `orpheus.models.musicnn.pool_before_norm`;
- runs trained by Orpheus (`runs/<run-id>/`: model.keras, labels.json, config.json): the run's
  recipe, log-mel or waveform windows of the trained length, each scaled by
  `orpheus.features.normalise`, exactly as in training.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

from orpheus import audio, pretrained
from orpheus.audio import LogMelParams
from orpheus.errors import OrpheusError
from orpheus.features import LOG_MEL, MUSICNN, Recipe, zero_padded_edges

if TYPE_CHECKING:
    import keras


@dataclass
class TagResult:
    """What the Tagger says about one song."""

    labels: list[str]
    taggram: np.ndarray  # (windows, labels) probabilities
    starts: np.ndarray  # (windows,) window start times in seconds
    window_seconds: float
    embeddings: np.ndarray | None = None  # (windows, dim) penultimate-layer vectors
    duration: float = 0.0  # seconds of audio tagged
    note: str | None = None  # "silent" (no window above the floor) or "short" (under a window)

    @property
    def probabilities(self) -> np.ndarray:
        """Song-level probabilities: the mean of the taggram over its (audible) windows; NaN for
        a silent song, which has none."""
        if len(self.taggram) == 0:
            return np.full(len(self.labels), np.nan, dtype=np.float32)
        return self.taggram.mean(axis=0)

    def top(self, threshold: float = 0.0, top_k: int | None = None) -> list[tuple[str, float]]:
        """(label, probability) with probability >= threshold, most probable first."""
        p = self.probabilities
        order = sorted(range(len(p)), key=lambda i: (-p[i], i))
        kept = [(self.labels[i], float(p[i])) for i in order if p[i] >= threshold]  # NaN: none
        return kept if top_k is None else kept[:top_k]


class Tagger:
    """A loaded model plus the feature and window recipe it was trained with."""

    def __init__(
        self,
        model: keras.Model,
        labels: list[str],
        *,
        recipe: Recipe,
        name: str,
        batch_size: int = 16,
        inference_graph: Callable[[keras.Model], keras.Model] | None = None,
    ):
        import keras
        import tensorflow as tf

        if model.output_shape[-1] != len(labels):
            raise OrpheusError(
                f"model {name}: {model.output_shape[-1]} outputs but {len(labels)} labels"
            )
        self.name = name
        self.labels = list(labels)
        self.recipe = recipe
        self.batch_size = batch_size
        self.model = model
        names = {layer.name for layer in model.layers}
        last = model.get_layer("output") if "output" in names else model.layers[-1]
        both = keras.Model(model.inputs, [model.output, last.input])
        if inference_graph is not None:  # an equivalent graph that runs faster
            both = inference_graph(both)
        signature = tf.TensorSpec([None, recipe.window, *model.input_shape[2:]], tf.float32)
        self._forward = tf.function(lambda x: both(x, training=False), input_signature=[signature])
        self.embedding_size = int(both.outputs[1].shape[-1])

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def pretrained(cls, name: str = pretrained.DEFAULT, **kwargs) -> Tagger:
        """A bundled musicnn model (`msd-musicnn`, `mtt-musicnn`) with musicnn's recipe."""
        from orpheus.models import musicnn

        labels = pretrained.labels(name)
        model = musicnn.build_musicnn(len(labels))
        model.load_weights(pretrained.weights_path(name))
        mel = LogMelParams(musicnn.SAMPLE_RATE, musicnn.N_FFT, musicnn.HOP_LENGTH, musicnn.N_MELS)
        # fed as they are: musicnn normalises with its own input BatchNorm
        recipe = Recipe(LOG_MEL, mel, musicnn.PATCH_FRAMES, normalise=False)
        return cls(
            model,
            labels,
            recipe=recipe,
            name=name,
            inference_graph=musicnn.pool_before_norm,
            **kwargs,
        )

    @classmethod
    def from_run(cls, workspace_root: str | Path, run: str, **kwargs) -> Tagger:
        """A model trained by Orpheus: run `run` (`ID` or `run/ID`) of the workspace at
        `workspace_root`, found where its manifest or `model-training.log_dir` says."""
        from orpheus import runs

        return cls._of_run(runs.open_run(workspace_root, run), **kwargs)

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, *, name: str | None = None, **kwargs) -> Tagger:
        """A run folder holding model.keras, labels.json and config.json."""
        from orpheus import runs

        return cls._of_run(runs.open_run(run_dir), name=name, **kwargs)

    @classmethod
    def _of_run(cls, run, *, name: str | None = None, **kwargs) -> Tagger:
        """The run's model with the recipe the run recorded (`orpheus.runs.Run.recipe`)."""
        from orpheus import runs

        model, recipe = runs.load_model(run), run.recipe
        if model.input_shape[1] not in (None, recipe.window):
            raise OrpheusError(
                f"run {run.name}: its model takes windows of {model.input_shape[1]} steps, "
                f"its recipe says {recipe.window} ({run.config_path})"
            )
        return cls(model, run.labels, recipe=recipe, name=name or run.name, **kwargs)

    # -- features and windows -----------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return self.recipe.sample_rate

    @property
    def step_seconds(self) -> float:
        """Seconds per feature step (one log-mel frame, or one sample)."""
        return self.recipe.step_seconds

    @property
    def window_seconds(self) -> float:
        return self.recipe.window_seconds

    def track(self, y: np.ndarray) -> audio.Track:
        """Mono audio at `self.sample_rate` reduced to this model's features and loudness."""
        y = np.asarray(y, dtype=np.float32)
        return audio.reduce_track([y], self.recipe.mel, waveform=self.recipe.frontend != LOG_MEL)

    def features(self, track: audio.Track, placement: str | None = None) -> np.ndarray:
        """Whole-track model input; with musicnn's placement, log-mel edges as musicnn's
        extractor computes them (zero-padded)."""
        recipe = self.recipe.with_placement(placement)
        if recipe.frontend != LOG_MEL or recipe.placement != MUSICNN:
            return track.features
        return zero_padded_edges(track.features, track.head, track.tail, track.samples, recipe.mel)

    def windows(
        self, feats: np.ndarray, hop: float | None = None, placement: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(windows, start times in seconds) over the track, about `hop` seconds apart, placed
        by `placement` ("even" or "musicnn"; default the recipe's)."""
        recipe, steps = self._window_steps(feats, hop, placement)
        return recipe.cut_windows(feats, steps), steps * recipe.step_seconds

    def _window_steps(
        self, feats: np.ndarray, hop: float | None, placement: str | None
    ) -> tuple[Recipe, np.ndarray]:
        """The recipe with `placement`, and where its windows start over `feats` (in steps)."""
        recipe = self.recipe.with_placement(placement)
        return recipe, recipe.starts(len(feats), recipe.hop_steps(hop))

    # -- tagging ------------------------------------------------------------------------------

    def tag(
        self,
        y: np.ndarray,
        sr: int | None = None,
        *,
        hop: float | None = None,
        windows: str | None = None,
        embeddings: bool = False,
        silence_db: float = audio.SILENCE_DB,
        min_seconds: float = audio.MIN_SECONDS,
    ) -> TagResult:
        """Tag mono audio `y` (resampled from `sr` when it differs from the model's rate).

        `windows` places the windows: "even" (spread over the whole track) or "musicnn"
        (musicnn's extractor's patches from the start, the tail dropped); default the recipe's.
        Raises `audio.AudioError` ("too short") for audio shorter than `min_seconds`.
        """
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            y = audio.to_mono(y)
        if sr is not None and sr != self.sample_rate:
            y = audio.resample(y, sr, self.sample_rate)
        check_length(len(y), self.sample_rate, min_seconds, "audio")
        return self._run(self._prepare(self.track(y), hop, silence_db, windows), embeddings)

    def tag_file(
        self,
        path: str | Path,
        *,
        hop: float | None = None,
        windows: str | None = None,
        embeddings: bool = False,
        silence_db: float = audio.SILENCE_DB,
        min_seconds: float = audio.MIN_SECONDS,
    ) -> TagResult:
        """Tag one audio file (`audio.AudioError` if it cannot be decoded or is too short)."""
        track = decode(path, self.recipe, min_seconds)
        return self._run(self._prepare(track, hop, silence_db, windows), embeddings)

    def tag_files(
        self,
        paths: Iterable[str | Path],
        *,
        hop: float | None = None,
        windows: str | None = None,
        embeddings: bool = False,
        workers: int = 2,
        silence_db: float = audio.SILENCE_DB,
        min_seconds: float = audio.MIN_SECONDS,
    ) -> Iterator[tuple[Path, TagResult | audio.AudioError]]:
        """`tag_files` with this Tagger."""
        return tag_files(
            paths,
            lambda: self,
            self.sample_rate,
            hop=hop,
            windows=windows,
            embeddings=embeddings,
            workers=workers,
            silence_db=silence_db,
            min_seconds=min_seconds,
        )

    def _prepare(
        self, track: audio.Track, hop: float | None, silence_db: float, placement: str | None = None
    ) -> _Prepared:
        """A decoded track's features and where its audible windows start (the silent ones left
        out); `_run_all` cuts the windows a model call at a time."""
        feats = self.features(track, placement)
        recipe, steps = self._window_steps(feats, hop, placement)
        starts = steps * recipe.step_seconds
        keep = track.loudness.audible(self.sample_rate, starts, self.window_seconds, silence_db)
        duration = track.seconds
        note = "silent" if not keep.any() else "short" if duration < self.window_seconds else None
        return _Prepared(feats, recipe, steps[keep], starts[keep], duration, note)

    def _run(self, prepared: _Prepared, embeddings: bool) -> TagResult:
        return self._run_all([prepared], embeddings)[0]

    def _run_all(self, songs: list[_Prepared], embeddings: bool) -> list[TagResult]:
        """Tag several songs' windows together, in model calls of up to `batch_size` windows,
        so that short files fill a batch (one call per 30 s clip left 6 of 16 places empty)."""
        import tensorflow as tf

        bounds = np.cumsum([0, *(len(s.steps) for s in songs)])  # song k: windows bounds[k:k+2]
        probs = [np.zeros((0, len(self.labels)), np.float32)]
        embs = [np.zeros((0, self.embedding_size), np.float32)]
        for a in range(0, bounds[-1], self.batch_size):
            b = min(a + self.batch_size, bounds[-1])
            parts = [
                song.windows(max(a, lo) - lo, min(b, hi) - lo)
                for song, lo, hi in zip(songs, bounds[:-1], bounds[1:], strict=True)
                if max(a, lo) < min(b, hi)
            ]
            p, e = self._forward(
                tf.constant(parts[0] if len(parts) == 1 else np.concatenate(parts))
            )
            probs.append(p.numpy())
            if embeddings:
                embs.append(e.numpy())
        cuts = bounds[1:-1]
        taggrams = np.split(np.concatenate(probs).astype(np.float32), cuts)
        vectors = np.split(np.concatenate(embs).astype(np.float32), cuts) if embeddings else None
        return [
            TagResult(
                labels=self.labels,
                taggram=taggrams[k],
                starts=song.starts,
                window_seconds=self.window_seconds,
                embeddings=vectors[k] if vectors is not None else None,
                duration=song.duration,
                note=song.note,
            )
            for k, song in enumerate(songs)
        ]


@dataclass
class _Prepared:
    """One song's model input: its features, where its audible windows start (in steps and in
    seconds), its length and its note. The windows are cut when a model call needs them: with a
    small hop they overlap, and all of them at once would take many times the features' memory."""

    features: np.ndarray
    recipe: Recipe
    steps: np.ndarray
    starts: np.ndarray
    duration: float
    note: str | None

    def windows(self, lo: int, hi: int) -> np.ndarray:
        """Its audible windows lo .. hi - 1, as the model takes them."""
        return self.recipe.cut_windows(self.features, self.steps[lo:hi])


def check_length(samples: int, sr: int, min_seconds: float, source: str | Path) -> None:
    """Raise `audio.AudioError` ("too short") for `samples` of audio under `min_seconds`."""
    if samples == 0 or samples < min_seconds * sr:
        raise audio.AudioError(source, f"too short ({samples / sr:.3g} s)")


def decode(path: str | Path, recipe: Recipe, min_seconds: float = audio.MIN_SECONDS) -> audio.Track:
    """A file streamed into `recipe`'s features and loudness (`audio.decode_track`: memory grows
    with the features, not the audio), checked to be long enough to tag."""
    track = audio.decode_track(path, recipe.mel, waveform=recipe.frontend != LOG_MEL)
    check_length(track.samples, recipe.sample_rate, min_seconds, path)
    return track


def tag_files(
    paths: Iterable[str | Path],
    load: Callable[[], Tagger],
    sample_rate: int,
    *,
    hop: float | None = None,
    windows: str | None = None,
    embeddings: bool = False,
    workers: int = 2,
    silence_db: float = audio.SILENCE_DB,
    min_seconds: float = audio.MIN_SECONDS,
) -> Iterator[tuple[Path, TagResult | audio.AudioError]]:
    """Tag files in order; decoding runs ahead in threads while the model runs.

    `load` is called once, when the first file has decoded, so a batch of broken files never
    loads the model. Undecodable and too-short files yield their `AudioError` instead of a
    result, so one bad file never stops a batch.
    """
    paths = [Path(p) for p in paths]
    ahead = max(1, workers) * 2
    loaded: list[Tagger] = []

    # Before the model is loaded its recipe is unknown: files decode into the default log-mel
    # at its rate, which the main thread re-decodes only for a model that eats other features.
    guess = Recipe(LOG_MEL, LogMelParams(sample_rate), 1)

    def job(path: Path) -> _Prepared | audio.Track:
        if not loaded:
            return decode(path, guess, min_seconds)
        return loaded[0]._prepare(
            decode(path, loaded[0].recipe, min_seconds), hop, silence_db, windows
        )

    # The decoding threads' log-mel calls BLAS; OpenBLAS's own threads would then spin
    # against the model's for the same cores (~20% of the throughput on 2 cores).
    with (
        threadpool_limits(1, user_api="blas"),
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        pending: deque = deque()
        queue = iter(paths)
        for p in queue:
            pending.append((p, pool.submit(job, p)))
            if len(pending) >= ahead:
                break
        # Songs wait in `batch` until their windows fill a model call, or until the next file
        # is still decoding (the model never waits for a batch to fill); results keep file order.
        batch: list[tuple[Path, _Prepared | audio.AudioError]] = []
        while pending:
            p, future = pending.popleft()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(job, nxt)))
            try:
                outcome = future.result()
            except audio.AudioError as exc:
                outcome = exc
            else:
                if not loaded:
                    loaded.append(load())
                tagger = loaded[0]
                if not isinstance(outcome, _Prepared):
                    if (tagger.recipe.frontend, tagger.recipe.mel) != (LOG_MEL, guess.mel):
                        outcome = decode(p, tagger.recipe, min_seconds)
                    outcome = tagger._prepare(outcome, hop, silence_db, windows)
            batch.append((p, outcome))
            songs = [o for _, o in batch if isinstance(o, _Prepared)]
            full = songs and sum(len(s.steps) for s in songs) >= loaded[0].batch_size
            if full or not pending or not pending[0][1].done():
                results = iter(loaded[0]._run_all(songs, embeddings) if songs else ())
                for q, o in batch:
                    yield q, next(results) if isinstance(o, _Prepared) else o
                batch = []
