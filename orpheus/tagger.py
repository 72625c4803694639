"""The Tagger: load a model once, then tag many files or arrays.

A song is cut into evenly spaced windows covering the whole track (`orpheus.dataset.even_windows`,
the same windows song-level evaluation uses; a clip shorter than one window is repeated to fill
it), the windows go through the model in batches, and the result is a taggram (one row of
probabilities per window), its mean over windows (the song-level prediction), and optionally the
penultimate-layer embedding of every window (the input of the model's `output` layer).

Features come from `orpheus.audio` only. Models:
- the bundled musicnn taggers (`msd-musicnn`, `mtt-musicnn`): 187-frame (3 s) log-mel patches fed
  as they are (musicnn normalises with its own input BatchNorm), through the exact, faster
  rewrite of the graph `orpheus.models.musicnn.pool_before_norm`;
- runs trained by Orpheus (`runs/<run-id>/`: model.keras, labels.json, config.json): log-mel or
  waveform windows of the trained length, each scaled by `orpheus.dataset.normalise`, exactly as
  in training.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from threadpoolctl import threadpool_limits

from orpheus import audio, pretrained
from orpheus.audio import LogMelParams
from orpheus.dataset import even_windows, normalise, window_starts
from orpheus.errors import OrpheusError
from orpheus.models.musicnn import PATCH_FRAMES, build_musicnn, pool_before_norm

MODEL_FILE = "model.keras"
LOG_MEL, WAVEFORM = "log-mel", "waveform"


@dataclass
class TagResult:
    """What the Tagger says about one song."""

    labels: list[str]
    taggram: np.ndarray  # (windows, labels) probabilities
    starts: np.ndarray  # (windows,) window start times in seconds
    window_seconds: float
    embeddings: np.ndarray | None = None  # (windows, dim) penultimate-layer vectors
    duration: float = 0.0  # seconds of audio tagged

    @property
    def probabilities(self) -> np.ndarray:
        """Song-level probabilities: the mean of the taggram over windows."""
        return self.taggram.mean(axis=0)

    def top(self, threshold: float = 0.0, top_k: int | None = None) -> list[tuple[str, float]]:
        """(label, probability) with probability >= threshold, most probable first."""
        p = self.probabilities
        order = sorted(range(len(p)), key=lambda i: (-p[i], i))
        kept = [(self.labels[i], float(p[i])) for i in order if p[i] >= threshold]
        return kept if top_k is None else kept[:top_k]


class Tagger:
    """A loaded model plus the feature and window recipe it was trained with."""

    def __init__(
        self,
        model: keras.Model,
        labels: list[str],
        *,
        name: str,
        frontend: str,
        window: int,
        sample_rate: int = audio.DEFAULT_SR,
        mel: LogMelParams | None = None,
        normalise_windows: bool = True,
        batch_size: int = 16,
        inference_graph: Callable[[keras.Model], keras.Model] | None = None,
    ):
        if frontend not in (LOG_MEL, WAVEFORM):
            raise OrpheusError(f"model {name}: unknown front end {frontend!r}")
        if model.output_shape[-1] != len(labels):
            raise OrpheusError(
                f"model {name}: {model.output_shape[-1]} outputs but {len(labels)} labels"
            )
        self.name = name
        self.labels = list(labels)
        self.frontend = frontend
        self.window = window
        self.sample_rate = sample_rate
        self.mel = mel or LogMelParams(sample_rate=sample_rate)
        self.normalise_windows = normalise_windows
        self.batch_size = batch_size
        self.model = model
        names = {layer.name for layer in model.layers}
        last = model.get_layer("output") if "output" in names else model.layers[-1]
        both = keras.Model(model.inputs, [model.output, last.input])
        if inference_graph is not None:  # an equivalent graph that runs faster
            both = inference_graph(both)
        signature = tf.TensorSpec([None, window, *model.input_shape[2:]], tf.float32)
        self._forward = tf.function(lambda x: both(x, training=False), input_signature=[signature])
        self.embedding_size = int(both.outputs[1].shape[-1])

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def pretrained(cls, name: str = pretrained.DEFAULT, **kwargs) -> Tagger:
        """A bundled musicnn model (`msd-musicnn`, `mtt-musicnn`)."""
        labels = pretrained.labels(name)
        model = build_musicnn(len(labels))
        model.load_weights(pretrained.weights_path(name))
        return cls(
            model,
            labels,
            name=name,
            frontend=LOG_MEL,
            window=PATCH_FRAMES,
            normalise_windows=False,
            inference_graph=pool_before_norm,
            **kwargs,
        )

    @classmethod
    def from_run(cls, workspace_root: str | Path, run: str, **kwargs) -> Tagger:
        """A model trained by Orpheus: `<workspace_root>/runs/<run>/` (run may be `run/<id>`)."""
        run_id = run.removeprefix("run/")
        return cls.from_run_dir(
            Path(workspace_root) / "runs" / run_id, name=f"run/{run_id}", **kwargs
        )

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, *, name: str | None = None, **kwargs) -> Tagger:
        """A run folder holding model.keras, labels.json and config.json."""
        run_dir = Path(run_dir)
        name = name or f"run/{run_dir.name}"
        if not run_dir.is_dir():
            raise OrpheusError(f"no run {name}: {run_dir} does not exist")
        missing = [
            f for f in (MODEL_FILE, "labels.json", "config.json") if not (run_dir / f).is_file()
        ]
        if missing:
            raise OrpheusError(
                f"run {name} has no {', '.join(missing)} (training has not finished?)",
                hint=f"finish it with `orpheus train --resume {run_dir.name}`",
            )
        try:
            labels = json.loads((run_dir / "labels.json").read_text(encoding="utf-8"))
            cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
            model = keras.models.load_model(run_dir / MODEL_FILE, safe_mode=True, compile=False)
        except Exception as exc:  # a corrupt or foreign file: say which, never a traceback
            raise OrpheusError(f"cannot load run {name}: {type(exc).__name__}: {exc}") from None
        records = cfg.get("tfrecords", {})
        sample_rate = int(records.get("sample_rate", audio.DEFAULT_SR))
        mel = LogMelParams(
            sample_rate=sample_rate,
            n_fft=int(records.get("n_fft", 512)),
            hop_length=int(records.get("hop_length", 256)),
            n_mels=int(records.get("n_mels", 96)),
        )
        frontend = cfg.get("frontend") or (LOG_MEL if len(model.input_shape) == 3 else WAVEFORM)
        window = model.input_shape[1]
        if window is None:
            seconds = float(cfg["model-training"]["window_length"])
            window = mel.frames(seconds) if frontend == LOG_MEL else round(seconds * sample_rate)
        return cls(
            model,
            labels,
            name=name,
            frontend=frontend,
            window=int(window),
            sample_rate=sample_rate,
            mel=mel,
            normalise_windows=True,
            **kwargs,
        )

    # -- features and windows -----------------------------------------------------------------

    @property
    def step_seconds(self) -> float:
        """Seconds per feature step (one log-mel frame, or one sample)."""
        return (self.mel.hop_length if self.frontend == LOG_MEL else 1) / self.sample_rate

    @property
    def window_seconds(self) -> float:
        return self.window * self.step_seconds

    def features(self, y: np.ndarray) -> np.ndarray:
        """Whole-track model input from mono audio at `self.sample_rate`."""
        y = np.asarray(y, dtype=np.float32)
        return audio.log_mel(y, self.mel) if self.frontend == LOG_MEL else y

    def windows(
        self, features: np.ndarray, hop: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(windows, start times in seconds) covering the track, about `hop` seconds apart."""
        hop_steps = self.window if hop is None else max(1, round(hop / self.step_seconds))
        wins = even_windows(features, self.window, hop_steps)
        starts = window_starts(len(features), self.window, hop_steps)
        if self.normalise_windows:
            wins = normalise(wins, batched=True)
        return wins, starts * self.step_seconds

    # -- tagging ------------------------------------------------------------------------------

    def tag(
        self,
        y: np.ndarray,
        sr: int | None = None,
        *,
        hop: float | None = None,
        embeddings: bool = False,
    ) -> TagResult:
        """Tag mono audio `y` (resampled from `sr` when it differs from the model's rate)."""
        return self._run(self._prepare_array(y, sr, hop), embeddings)

    def tag_file(
        self, path: str | Path, *, hop: float | None = None, embeddings: bool = False
    ) -> TagResult:
        """Tag one audio file (raises `audio.AudioError` if it cannot be decoded)."""
        return self._run(self._prepare_file(path, hop), embeddings)

    def tag_files(
        self,
        paths: Iterable[str | Path],
        *,
        hop: float | None = None,
        embeddings: bool = False,
        workers: int = 2,
    ) -> Iterator[tuple[Path, TagResult | audio.AudioError]]:
        """Tag files in order; decoding runs ahead in threads while the model runs.

        Undecodable files yield their `AudioError` instead of a result, so one bad file never
        stops a batch.
        """
        paths = [Path(p) for p in paths]
        ahead = max(1, workers) * 2
        # The decoding threads' log-mel calls BLAS; OpenBLAS's own threads would then spin
        # against the model's for the same cores (~20% of the throughput on 2 cores).
        with (
            threadpool_limits(1, user_api="blas"),
            ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        ):
            pending: deque = deque()
            queue = iter(paths)
            for p in queue:
                pending.append((p, pool.submit(self._prepare_file, p, hop)))
                if len(pending) >= ahead:
                    break
            while pending:
                p, future = pending.popleft()
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self._prepare_file, nxt, hop)))
                try:
                    prepared = future.result()
                except audio.AudioError as exc:
                    yield p, exc
                    continue
                yield p, self._run(prepared, embeddings)

    def _prepare_file(self, path: str | Path, hop: float | None):
        return self._prepare_array(audio.load(path, sr=self.sample_rate), self.sample_rate, hop)

    def _prepare_array(self, y: np.ndarray, sr: int | None, hop: float | None):
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1:
            y = audio.to_mono(y)
        if y.size == 0:
            raise audio.AudioError("no audio samples to tag")
        if sr is not None and sr != self.sample_rate:
            y = audio.resample(y, sr, self.sample_rate)
        wins, starts = self.windows(self.features(y), hop)
        return wins, starts, len(y) / self.sample_rate

    def _run(self, prepared, embeddings: bool) -> TagResult:
        wins, starts, duration = prepared
        probs, embs = [], []
        for i in range(0, len(wins), self.batch_size):
            p, e = self._forward(tf.constant(wins[i : i + self.batch_size]))
            probs.append(p.numpy())
            if embeddings:
                embs.append(e.numpy())
        return TagResult(
            labels=self.labels,
            taggram=np.concatenate(probs).astype(np.float32),
            starts=starts,
            window_seconds=self.window_seconds,
            embeddings=np.concatenate(embs).astype(np.float32) if embeddings else None,
            duration=duration,
        )
