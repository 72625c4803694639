"""The feature recipe of a model, and the one module for windows (no TensorFlow at import).

A `Recipe` says what a model eats: the front end (log-mel frames or waveform samples), the
sample rate and mel parameters, the window length in steps, whether each window is scaled to zero
mean and unit variance (Orpheus's runs) or fed as it is (musicnn, which normalises with its own
input BatchNorm), and where windows go over a song ("even": evenly spaced over the whole track,
the last one ending with it; "musicnn": musicnn's extractor's non-overlapping patches from the
start, the tail dropped, over its log-mel's zero-padded edges, `zero_padded_edges`). A run
records its recipe when it is created, from the TFRecords it trains on, so inference never
re-derives it from the workspace config.

Conversions (16 kHz, hop 256):

>>> mel = LogMelParams()
>>> Recipe.from_seconds("log-mel", mel, 15).window      # centred STFT frames in 15 s
938
>>> Recipe.from_seconds("waveform", mel, 1.5).window    # samples
24000
>>> round(Recipe.from_seconds("log-mel", mel, 3).window_seconds, 3)
3.008

The TensorFlow twins of `window_starts` and `normalise` (for the tf.data pipeline) live next to
their numpy versions here, import TensorFlow lazily, and use the same integer arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from orpheus import audio
from orpheus.audio import DEFAULT_SR, LogMelParams
from orpheus.errors import OrpheusError

LOG_MEL, WAVEFORM = "log-mel", "waveform"
FRONTENDS = (LOG_MEL, WAVEFORM)
EVEN, MUSICNN = "even", "musicnn"
PLACEMENTS = (EVEN, MUSICNN)
EPS = 1e-6


@dataclass(frozen=True)
class Recipe:
    """Front end, feature parameters, window and normalisation of one model."""

    frontend: str
    mel: LogMelParams
    window: int  # steps: log-mel frames, or waveform samples
    normalise: bool = True
    placement: str = EVEN

    def __post_init__(self):
        if self.frontend not in FRONTENDS:
            raise OrpheusError(f"unknown front end {self.frontend!r}", hint=" or ".join(FRONTENDS))
        if self.placement not in PLACEMENTS:
            raise OrpheusError(
                f"unknown window placement {self.placement!r}", hint=" or ".join(PLACEMENTS)
            )
        if self.window < 1:
            raise OrpheusError(f"a window must be at least one step, got {self.window}")

    @classmethod
    def from_seconds(
        cls, frontend: str, mel: LogMelParams, seconds: float, **kwargs: Any
    ) -> Recipe:
        """The recipe whose window covers `seconds` of audio (frames or samples)."""
        window = (
            window_frames(seconds, mel)
            if frontend == LOG_MEL
            else window_samples(seconds, mel.sample_rate)
        )
        return cls(frontend, mel, window, **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.mel.sample_rate

    @property
    def step_seconds(self) -> float:
        """Seconds per feature step (one log-mel hop, or one sample)."""
        return (self.mel.hop_length if self.frontend == LOG_MEL else 1) / self.sample_rate

    @property
    def window_seconds(self) -> float:
        return self.window * self.step_seconds

    def with_placement(self, placement: str | None) -> Recipe:
        """This recipe with windows placed `placement`'s way (None: as it is)."""
        return self if placement in (None, self.placement) else replace(self, placement=placement)

    def hop_steps(self, seconds: float | None = None) -> int:
        """A hop of `seconds` in feature steps, at least one (None: one window, no overlap).

        >>> Recipe(LOG_MEL, LogMelParams(), 187).hop_steps(1.5)    # 1.5 s of 16 ms frames
        94
        """
        return self.window if seconds is None else max(1, round(seconds / self.step_seconds))

    def starts(self, n: int, hop: int | None = None) -> np.ndarray:
        """Where this recipe's windows start over a track of `n` steps, `hop` steps apart
        (default one window): `window_starts` for even placement, else `musicnn_starts`.

        >>> even = Recipe(LOG_MEL, LogMelParams(), 187)   # even: the last ends with the track
        >>> even.starts(1000).tolist(), even.with_placement(MUSICNN).starts(1000).tolist()
        ([0, 162, 325, 487, 650, 813], [0, 187, 374, 561, 748])
        """
        hop = self.window if hop is None else hop
        if self.placement == MUSICNN:
            return musicnn_starts(n, self.window, hop)
        return window_starts(n, self.window, hop)

    def windows(self, x: np.ndarray, hop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(model input, starts in steps) of a whole track's features `x` (time first): the
        windows at `starts` (`cut_windows`)."""
        starts = self.starts(len(x), hop)
        return self.cut_windows(x, starts), starts

    def cut_windows(self, x: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """The model input at `starts` (steps) of a whole track's features `x`: the windows,
        repeat-filled if short, normalised when the recipe says so."""
        wins = cut(x, starts, self.window)
        return normalise(wins, batched=True) if self.normalise else wins

    def to_dict(self) -> dict:
        return {**asdict(self), "mel": self.mel.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        return cls(**{**data, "mel": LogMelParams(**data["mel"])})


def window_frames(seconds: float, mel: LogMelParams | None = None) -> int:
    """Centred log-mel frames in a window of `seconds` (15 s at 16 kHz, hop 256: 938)."""
    return (mel or LogMelParams()).frames(seconds)


def window_samples(seconds: float, sample_rate: int = DEFAULT_SR) -> int:
    """Waveform samples in a window of `seconds` (1.5 s at 16 kHz: 24000)."""
    return int(round(seconds * sample_rate))


def hop_gaps(span, hop: int):
    """Gaps between evenly spaced windows whose starts span `span` steps, `hop` steps apart.

    ceil(span / hop), except that a last window is not added for a remainder of 5% of a hop
    or less: a 30 s clip in 3 s windows (1876 frames, 187-frame windows) gets 10 windows that
    start 3.01 s apart, not 11 that overlap by 0.29 s each, 10% more compute to cover 0.1 s.
    Integer arithmetic, so the numpy and TensorFlow twins agree; may be negative.

    >>> hop_gaps(1876 - 187, 187), hop_gaps(0, 187)
    (9, 0)
    """
    return (span - hop // 20 + hop - 1) // hop


def window_starts(n: int, length: int, hop: int) -> np.ndarray:
    """Starts of evenly spaced windows over a track of `n` steps, the last ending with it.

    >>> window_starts(1000, 400, 300).tolist()   # span 600 in 2 gaps
    [0, 300, 600]
    >>> window_starts(100, 400, 300).tolist()    # shorter than a window: one, repeat-filled
    [0]
    """
    span = max(n - length, 0)
    count = 1 + max(hop_gaps(span, hop), 0)
    return np.arange(count, dtype=np.int64) * span // max(count - 1, 1)


def window_starts_tf(n, length: int, hop: int):
    """TensorFlow twin of `window_starts` (n a scalar tensor), int64."""
    import tensorflow as tf

    span = tf.maximum(n - length, 0)
    count = 1 + tf.maximum(hop_gaps(span, hop), 0)
    return (
        tf.range(count, dtype=tf.int64)
        * tf.cast(span, tf.int64)
        // tf.cast(tf.maximum(count - 1, 1), tf.int64)
    )


def musicnn_starts(n: int, length: int, hop: int | None = None) -> np.ndarray:
    """musicnn's extractor's patches: from frame 0, `hop` steps apart (default `length`: no
    overlap), the tail that does not fill a patch dropped (`range(0, n - length + 1, hop)` in
    `musicnn.extractor.batch_data`); one start for a clip shorter than a patch, where musicnn
    gives no output.

    >>> musicnn_starts(1000, 187).tolist(), musicnn_starts(400, 187, 100).tolist()
    ([0, 187, 374, 561, 748], [0, 100, 200])
    >>> musicnn_starts(100, 187).tolist()
    [0]
    """
    return np.arange(0, max(n - length + 1, 1), hop or length, dtype=np.int64)


def zero_padded_edges(
    feats: np.ndarray, head: np.ndarray, tail: np.ndarray, samples: int, mel: LogMelParams
) -> np.ndarray:
    """`audio.log_mel` frames of a signal of `samples` samples with the frames that reach past
    either end recomputed over zeros there instead of the signal's reflection.

    musicnn was trained on reflected edges (librosa < 0.10, and `audio.log_mel`), but its
    extractor installed today runs librosa >= 0.10, whose STFT pads with zeros: its first patch's
    first frame differs, which moves a 5-12 s clip's mean taggram by up to ~6e-3 (measured).
    `head` and `tail` are the signal's first and last `mel.n_fft` samples (or all of it).

    >>> y = np.sin(np.arange(1000, dtype=np.float32))
    >>> fixed = zero_padded_edges(audio.log_mel(y), y[:512], y[-512:], 1000, LogMelParams())
    >>> plain = audio.log_mel(y)
    >>> bool((fixed[1:-1] == plain[1:-1]).all()), bool(fixed[0, 0] < plain[0, 0])
    (True, True)
    """
    half, hop = mel.n_fft // 2, mel.hop_length
    head, tail = np.asarray(head, np.float32), np.asarray(tail, np.float32)
    out = np.array(feats, dtype=np.float32, copy=True)
    first_inside, last_inside = -(-half // hop), (samples - half) // hop
    for t in sorted(
        {*range(min(first_inside, len(out))), *range(max(last_inside + 1, 0), len(out))}
    ):
        lo = t * hop - half  # the frame covers samples lo .. lo + n_fft
        segment = np.zeros(mel.n_fft, np.float32)
        for part, offset in ((head, 0), (tail, samples - len(tail))):
            a, b = max(lo, offset), min(lo + mel.n_fft, offset + len(part))
            if a < b:
                segment[a - lo : b - lo] = part[a - offset : b - offset]
        out[t] = _frame_log_mel(segment, mel)
    return out


def _frame_log_mel(segment: np.ndarray, mel: LogMelParams) -> np.ndarray:
    """The log-mel of one `n_fft`-sample frame, through `audio.log_mel`: frame k of a signal
    preceded by k * hop - n_fft / 2 zeros covers exactly `segment`."""
    k = -(-(mel.n_fft // 2) // mel.hop_length)
    lead = np.zeros(k * mel.hop_length - mel.n_fft // 2, np.float32)
    return audio.log_mel(np.concatenate([lead, segment]), mel)[k]


def fill(x: np.ndarray, length: int) -> np.ndarray:
    """Repeat a clip shorter than `length` along time until it is long enough."""
    return np.concatenate([x] * math.ceil(length / len(x))) if len(x) < length else x


def cut(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """The windows of `x` (time first) at `starts`, `length` steps each (filled if short)."""
    x = fill(np.asarray(x, dtype=np.float32), length)
    return np.stack([x[s : s + length] for s in starts])


def even_windows(x: np.ndarray, length: int, hop: int) -> np.ndarray:
    """Windows at `window_starts(len(x), length, hop)`; one repeat-filled window if short."""
    return cut(x, window_starts(len(x), length, hop), length)


def normalise(x, *, batched: bool = False):
    """Zero mean, unit variance per example (per window), eps 1e-6; numpy in, numpy out.

    `x` is one window ((frames, n_mels) or (samples,)), or with `batched` a stack of them.
    TensorFlow tensors get the same computation in TensorFlow ops.

    >>> normalise(np.float32([1, 3])).round(3).tolist()
    [-1.0, 1.0]
    """
    if isinstance(x, np.ndarray):
        x = x.astype(np.float32, copy=False)
        axes = tuple(range(1 if batched else 0, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
        return ((x - mean) / np.sqrt(var + EPS)).astype(np.float32)
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    axes = list(range(1 if batched else 0, x.shape.rank))
    mean, var = tf.nn.moments(x, axes=axes, keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + EPS)
