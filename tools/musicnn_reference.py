"""Compute the musicnn reference fixture from the ORIGINAL TF1 graph (run once, not by tests).

This runs in a separate environment where musicnn 0.1.0's own code still builds (Keras 3
cannot build `tf.compat.v1.layers`):

    python -m venv /tmp/musicnn-venv
    /tmp/musicnn-venv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/musicnn-venv/bin/pip install "tensorflow==2.21.*" "tf-keras==2.21.*" "numpy<2" librosa
    TF_USE_LEGACY_KERAS=1 /tmp/musicnn-venv/bin/python tools/musicnn_reference.py \
        tests/fixtures/musicnn_reference.npz

It builds the graph exactly as `musicnn.extractor.extractor` does (placeholder of shape
[None, 187, 96] under `tf.name_scope('model')`, `musicnn.models.define_model`, sigmoid),
restores each checkpoint with `tf.compat.v1.train.Saver` from the installed wheel, and feeds
fixed log-mel patches. The patches are log-mels of a deterministic synthetic signal
(harmonic notes + noise hits), quantised to multiples of 1/32 and stored as uint8, so the
float32 values fed here are exactly the ones the test rebuilds from the fixture.
"""

from __future__ import annotations

import os
import sys

import numpy as np

MODELS = {"msd-musicnn": "MSD_musicnn", "mtt-musicnn": "MTT_musicnn"}
QUANT = 32.0
SR, N_FFT, HOP, N_MELS, FRAMES = 16000, 512, 256, 96, 187


def synthetic_patches(n: int = 3) -> np.ndarray:
    """uint8 codes of `n` (187, 96) log-mel patches of a deterministic music-like signal."""
    import librosa

    rng = np.random.default_rng(20190101)
    seconds = FRAMES * HOP / SR + 0.1
    t = np.arange(int(seconds * SR)) / SR
    codes = []
    for k in range(n):
        y = np.zeros_like(t)
        for onset in np.arange(0.0, seconds, 0.25 * (k + 1)):
            f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
            env = np.where(t >= onset, np.exp(-(t - onset) * (3 + 2 * k)), 0.0)
            for h in range(1, 8):
                y += env * np.sin(2 * np.pi * f0 * h * t) / h**1.5
            hit = (t >= onset) & (t < onset + 0.03)
            y[hit] += 0.5 * rng.standard_normal(hit.sum())
        y = (0.3 * y / np.abs(y).max()).astype(np.float32)
        mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)
        log_mel = np.log10(10000.0 * mel.T.astype(np.float32) + 1.0)[:FRAMES]
        codes.append(np.clip(np.round(log_mel * QUANT), 0, 255).astype(np.uint8))
    return np.stack(codes)


def original_outputs(model: str, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sigmoid, penultimate) of musicnn's own TF1 graph with the wheel's checkpoint."""
    import musicnn
    import tensorflow as tf
    from musicnn import configuration, models

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    labels = configuration.MSD_LABELS if "MSD" in model else configuration.MTT_LABELS
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, FRAMES, N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, *_, penultimate = models.define_model(x, is_training, model, len(labels))
        probabilities = tf.nn.sigmoid(y)
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(sess, os.path.dirname(musicnn.__file__) + f"/{model}/")
        return sess.run([probabilities, penultimate], feed_dict={x: patches, is_training: False})


def main(out: str) -> None:
    codes = synthetic_patches()
    patches = codes.astype(np.float32) / QUANT
    arrays = {"patch_codes": codes, "quant": np.float32(QUANT)}
    for name, model in MODELS.items():
        probabilities, penultimate = original_outputs(model, patches)
        arrays[f"{name}/probabilities"] = probabilities.astype(np.float32)
        arrays[f"{name}/penultimate"] = penultimate.astype(np.float32)
        print(name, "top tag per patch:", probabilities.argmax(axis=1))
    np.savez_compressed(out, **arrays)
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/musicnn_reference.npz")
