"""Small real inputs for the tagger, predict and record tests: music-like audio and a fake run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SR = 16000


def music(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A deterministic mono signal with notes, harmonics and noise hits, in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for onset in np.arange(0.0, seconds, 0.25):
        f0 = 110.0 * 2 ** (rng.integers(0, 30) / 12)
        env = np.where(t >= onset, np.exp(-(t - onset) * 4), 0.0)
        for h in range(1, 6):
            y += env * np.sin(2 * np.pi * f0 * h * t) / h
        hit = (t >= onset) & (t < onset + 0.02)
        y[hit] += 0.4 * rng.standard_normal(hit.sum())
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def write(path: Path, y: np.ndarray, sr: int = SR, subtype: str | None = None) -> Path:
    import soundfile as sf

    sf.write(str(path), y, sr, subtype=subtype)
    return path


def make_run(
    root: Path, run_id: str, frontend: str = "log-mel", labels=("a", "b", "c"), seconds=1.0
) -> Path:
    """A finished run folder as `orpheus train` leaves it, holding a tiny real Keras model."""
    import keras

    from orpheus.audio import LogMelParams

    run_dir = root / "runs" / run_id
    run_dir.mkdir(parents=True)
    if frontend == "log-mel":
        inputs = keras.Input((LogMelParams().frames(seconds), 96))
        x = keras.layers.GlobalAveragePooling1D()(inputs)
    else:
        inputs = keras.Input((int(seconds * SR),))
        x = keras.layers.Reshape((int(seconds * SR) // 400, 400))(inputs)
        x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(8, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(len(labels), activation="sigmoid", name="output")(x)
    keras.Model(inputs, outputs).save(run_dir / "model.keras")
    (run_dir / "labels.json").write_text(json.dumps(list(labels)))
    config = {
        "frontend": frontend,
        "model-training": {"window_length": seconds},
        "tfrecords": {"sample_rate": SR, "n_mels": 96, "n_fft": 512, "hop_length": 256},
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir
