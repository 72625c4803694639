"""The log-mel reference fixture, from musicnn 0.1.0's OWN preprocessing (run once, not by tests).

`tests/test_audio.py` checks `orpheus.audio.log_mel` against it. It runs in a side environment
where musicnn's code imports, with the librosa of musicnn's time:

    python -m venv /tmp/musicnn-logmel-venv
    /tmp/musicnn-logmel-venv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/musicnn-logmel-venv/bin/pip install "numpy==1.23.5" "tensorflow-cpu==2.15.*" \
        "librosa==0.8.1"
    /tmp/musicnn-logmel-venv/bin/python tools/musicnn_logmel_reference.py \
        tests/fixtures/musicnn_logmel_reference.npz

musicnn 0.1.0 (2019) asks for librosa>=0.7; it was trained and released with a librosa whose
STFT reflects the signal at its ends. librosa 0.9 (2022) switched to zero padding, which changes
the first and last frame, so 0.8.1 is the newest librosa with musicnn's edge frames. librosa 0.7
needs numba<0.49 (no Python 3.11 build) and 0.8 uses `np.complex` (gone in NumPy 1.24), hence
NumPy 1.23.5, and TensorFlow 2.15 for `musicnn.extractor`'s import (2.21 needs NumPy>=1.26).

The waveform is 4 s of a deterministic synthetic song at 16 kHz (harmonic arpeggios, a bass
line, kick and noise hits over a -80 dB noise floor, the first 0.5 s near silence), stored as
int16 PCM. The script writes it to a WAV file and calls `musicnn.extractor.batch_data` on it:
librosa.load at 16 kHz, melspectrogram (n_fft 512, hop 256, 96 mels), transposed, cast to
float16, log10(10000 x + 1), cut into 187-frame patches. Under NumPy<2 `10000 * float16` is
promoted to float32, so those patches are what musicnn computed on the NumPy it was made for. It
also stores the same melspectrogram call's float32 output, before the cast and the log.

Keys: `pcm` int16 (64000,), `sr`, `patches` float32 (2, 187, 96) from `batch_data` with
patch hop `patch_hop` (64 frames), `mel` float32 (251, 96), and the `librosa`/`numpy` versions.
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np

SR, SECONDS, N_FRAMES, PATCH_HOP = 16000, 4.0, 187, 64


def waveform() -> np.ndarray:
    """int16 PCM of a deterministic 4 s song: harmonic notes, bass, drums, a quiet start."""
    rng = np.random.default_rng(20191108)
    t = np.arange(int(SECONDS * SR)) / SR
    y = np.zeros_like(t)

    def decay(onset: float, rate: float) -> np.ndarray:
        return np.where(t >= onset, np.exp(-(t - onset) * rate), 0.0)

    chords = [(57, 60, 64), (53, 57, 60), (48, 52, 55), (55, 59, 62)]  # Am F C G, one a second
    for i, onset in enumerate(np.arange(0.5, SECONDS, 0.125)):
        chord = chords[int(onset) % 4]
        f0 = 440.0 * 2 ** ((chord[i % 3] + 12 * (i // 3 % 2) - 69) / 12)
        for h in range(1, 9):
            y += 0.25 * decay(onset, 6.0) * np.sin(2 * np.pi * f0 * h * t + h) / h
        if i % 4 == 0:  # on the beat (0.5 s): bass two octaves below the root, and a kick
            fb = 440.0 * 2 ** ((chord[0] - 24 - 69) / 12)
            bass = np.sin(2 * np.pi * fb * t) + 0.3 * np.sin(4 * np.pi * fb * t)
            kick = np.sin(
                2 * np.pi * (50 * (t - onset) + 8 * (1 - decay(onset, 30.0)))
            )  # 290->50 Hz
            y += 0.6 * decay(onset, 3.0) * bass + 0.8 * decay(onset, 25.0) * kick
        if i % 4 == 2:  # a noise hit on the off-beat
            y += 0.4 * decay(onset, 18.0) * rng.standard_normal(len(t))
    y += 1e-4 * rng.standard_normal(len(t))
    return np.round(0.9 * 32767 * y / np.abs(y).max()).astype(np.int16)


def main(out: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import librosa
    import soundfile as sf
    from musicnn import configuration as config
    from musicnn import extractor

    pcm = waveform()
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "reference.wav")
        sf.write(wav, pcm, SR, subtype="PCM_16")
        patches, _ = extractor.batch_data(wav, N_FRAMES, PATCH_HOP)
        audio, sr = librosa.load(wav, sr=config.SR)  # as batch_data loads it
    mel = librosa.feature.melspectrogram(
        y=audio, sr=sr, hop_length=config.FFT_HOP, n_fft=config.FFT_SIZE, n_mels=config.N_MELS
    ).T
    assert patches.dtype == np.float32 and patches.shape == (2, N_FRAMES, config.N_MELS)
    np.savez_compressed(
        out,
        pcm=pcm,
        sr=np.int32(SR),
        patches=patches,
        patch_hop=np.int32(PATCH_HOP),
        mel=mel.astype(np.float32),
        librosa=np.str_(librosa.__version__),
        numpy=np.str_(np.__version__),
    )
    print(f"mel max {mel.max():.4g}, min {mel.min():.4g}; log-mel max {patches.max():.4g}")
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/musicnn_logmel_reference.npz")
