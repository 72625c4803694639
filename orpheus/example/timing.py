"""How long the demo will take on this machine, from a few seconds of measurement before it starts.

Two stages dominate the demo: rendering the example corpus (FluidSynth, then MP3 encoding) and
training the example config's model. Each is timed on a sample of the real work, a short clip of
the corpus's own music and two forward and backward passes of the real model on one real-sized
batch, and scaled up. The scale factors were fitted on whole demo runs, on this project's 2-core
machine with and without AVX-512 (bench/RESULTS.md); the rest of the demo is small and scales
with the rendering speed.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass

from orpheus.example.plan import MP3_96K, PREVIEW_SECONDS

CLIP_SECONDS = 2.0
CALIBRATION_BATCH = 8
# Whole-stage seconds per calibration second, fitted on measured demo runs (see the docstring):
# a 2 s clip costs about three times its share of a whole track (loading the soundfont,
# composing, starting the encoder); a traced training step on 32 windows, with its share of
# validation, about as much as one eager pass on 8 windows (AVX2 and AVX-512 alike). Refitted on
# 2026-12-05 for LAME -q 7 and one-cycle training: 0.72 s per track measured against 58 s of
# rendering 200 tracks on 2 cores; 0.21 s per eager pass against 65-72 s for 320 steps.
RENDER_SCALE = 0.36
TRAIN_SCALE = 1.05
TRAIN_FIXED = 12.0  # tracing the training and validation steps, checkpoints, the final export
REST_SCALE = 17.0  # scan, wrangle, silence, tags, tfrecords, test, 2 x predict: x a track's render


@dataclass
class Estimate:
    """Expected wall seconds per demo stage, and how long measuring them took."""

    render: float
    train: float
    rest: float
    measured_in: float

    @property
    def total(self) -> float:
        return self.render + self.train + self.rest


def render_seconds_per_track() -> float:
    """Wall seconds one core takes to render and encode a 30 s preview (timed on a 2 s clip)."""
    from orpheus.example.encoding import write_mp3
    from orpheus.example.music import compose, render

    start = time.perf_counter()
    song = compose("rock", "90s", "male", CLIP_SECONDS, [0, 0, 2])
    audio = render(song, CLIP_SECONDS, 44100)
    write_mp3(io.BytesIO(), audio, 44100, MP3_96K)
    return (time.perf_counter() - start) * PREVIEW_SECONDS / CLIP_SECONDS


def train_step_seconds(model: dict, training: dict, n_labels: int) -> float:
    """Wall seconds of one eager forward and backward pass of the log-mel model on 8 windows.

    Eager, on a small batch, because tracing the real training step would take longer than the
    whole calibration may; TRAIN_SCALE turns it into a traced step on the configured batch.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from orpheus.audio import LogMelParams
    from orpheus.models import build_model

    frames = LogMelParams().frames(training["window_length"])
    net = build_model(
        "log-mel",
        n_labels,
        n_filters=model["n_filters"],
        n_dense_units=model["n_dense_units"],
        backend_filters=model["n_backend_filters"],
        input_length=frames,
    )
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(CALIBRATION_BATCH, frames, 96)).astype(np.float32))
    y = tf.constant((rng.random((CALIBRATION_BATCH, n_labels)) < 0.2).astype(np.float32))
    loss = keras.losses.BinaryCrossentropy()

    def step() -> None:
        with tf.GradientTape() as tape:
            value = loss(y, net(x, training=True))
        tape.gradient(value, net.trainable_weights)

    step()  # the first pass creates oneDNN's kernels
    start = time.perf_counter()
    step()
    step()
    return (time.perf_counter() - start) / 2


def estimate(
    *,
    tracks: int | None,
    epochs: int | None,
    model: dict,
    training: dict,
    n_labels: int,
    workers: int | None = None,
) -> Estimate:
    """Expected seconds of the demo's stages on this machine; `tracks` None skips the rendering
    (already done) and `epochs` None the training (already done)."""
    start = time.perf_counter()
    per_track = render_seconds_per_track()
    render = 0.0
    if tracks:
        workers = min(workers or os.cpu_count() or 1, tracks)
        render = RENDER_SCALE * per_track * tracks / workers
    train = 0.0
    if epochs:
        steps = epochs * training["iterations"]
        step = train_step_seconds(model, training, n_labels)
        train = TRAIN_FIXED + TRAIN_SCALE * step * steps * training["batch_size"] / 32
    return Estimate(render, train, REST_SCALE * per_track, time.perf_counter() - start)
