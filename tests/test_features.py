"""orpheus.features: the recipe (conversions, placement, round trip) and the numpy windows.

The oracles are hand-computed positions and musicnn's own loop (`range(0, n - length + 1, hop)`
in `musicnn.extractor.batch_data`), written out here; the TensorFlow twins are checked against
these numpy windows in tests/test_dataset.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from orpheus import features
from orpheus.audio import LogMelParams
from orpheus.errors import OrpheusError
from orpheus.features import LOG_MEL, MUSICNN, WAVEFORM, Recipe


def test_window_lengths_by_hand():
    # centred frames: 1 + floor(seconds * sr / hop); 3 s at 16 kHz, hop 256: 1 + 187 = 188
    assert Recipe.from_seconds(LOG_MEL, LogMelParams(), 3).window == 188
    assert Recipe.from_seconds(LOG_MEL, LogMelParams(22050, 1024, 512, 64), 2).window == 87
    assert Recipe.from_seconds(WAVEFORM, LogMelParams(22050), 1.5).window == 33075
    r = Recipe(LOG_MEL, LogMelParams(), 187)
    assert r.step_seconds == 256 / 16000 and r.window_seconds == pytest.approx(2.992)
    assert Recipe(WAVEFORM, LogMelParams(), 24000).window_seconds == 1.5


def test_recipe_round_trip_and_validation():
    r = Recipe(LOG_MEL, LogMelParams(22050, 1024, 512, 64), 87, normalise=False, placement=MUSICNN)
    assert Recipe.from_dict(r.to_dict()) == r
    for bad in (
        dict(frontend="mfcc"),
        dict(placement="random"),
        dict(window=0),
    ):
        with pytest.raises(OrpheusError):
            Recipe(**{"frontend": LOG_MEL, "mel": LogMelParams(), "window": 10, **bad})
    with pytest.raises(OrpheusError, match="unknown window placement 'middle'"):
        r.with_placement("middle")
    assert r.with_placement(None) is r and r.with_placement("even").placement == "even"


@pytest.mark.parametrize("n", [0, 1, 186, 187, 188, 373, 374, 375, 1000, 1876])
@pytest.mark.parametrize("hop", [None, 64, 187, 200])
def test_musicnn_starts_are_musicnn_extractors_loop(n, hop):
    step = hop or 187
    want = list(range(0, n - 187 + 1, step)) or [0]  # musicnn: none; Orpheus: one, filled
    assert features.musicnn_starts(n, 187, hop).tolist() == want


def test_hop_in_steps():
    r = Recipe(LOG_MEL, LogMelParams(), 187)
    assert r.hop_steps() == 187 and r.hop_steps(1.0) == 62  # 1 s / 16 ms = 62.5 -> 62
    assert r.hop_steps(0.001) == 1  # never zero
    assert Recipe(WAVEFORM, LogMelParams(), 16000).hop_steps(0.5) == 8000


def test_recipe_windows_place_fill_and_normalise():
    x = np.repeat(np.arange(10, dtype=np.float32)[:, None], 2, axis=1)  # frame k holds k
    even = Recipe(LOG_MEL, LogMelParams(n_mels=2), 4, normalise=False)
    wins, starts = even.windows(x, 3)
    assert starts.tolist() == [0, 3, 6] and wins[:, :, 0].tolist() == [
        [0, 1, 2, 3],
        [3, 4, 5, 6],
        [6, 7, 8, 9],
    ]
    wins, starts = even.with_placement(MUSICNN).windows(x)  # from 0, tail (8, 9) dropped
    assert starts.tolist() == [0, 4] and wins[:, :, 0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # shorter than a window: one window, the clip repeated, for both placements
    for placement in ("even", MUSICNN):
        wins, starts = even.with_placement(placement).windows(x[:3])
        assert starts.tolist() == [0] and wins[0, :, 0].tolist() == [0, 1, 2, 0]
    # normalised: each window to zero mean, unit variance ([0..3]: mean 1.5, var 1.25)
    wins, _ = Recipe(LOG_MEL, LogMelParams(n_mels=2), 4).windows(x, 3)
    want = (np.arange(4) - 1.5) / np.sqrt(1.25 + 1e-6)
    np.testing.assert_allclose(wins[0, :, 1], want, atol=1e-6)  # float32 rounding near 1


def test_docstring_examples():
    import doctest

    assert doctest.testmod(features).failed == 0


@pytest.mark.parametrize("samples", [100, 512, 513, 16000, 95600])
@pytest.mark.parametrize("mel", [LogMelParams(), LogMelParams(22050, 1024, 512, 64)])
def test_zero_padded_edges_are_librosas_constant_padding(samples, mel):
    import librosa

    from orpheus import audio

    y = (0.3 * np.random.default_rng(samples).standard_normal(samples)).astype(np.float32)
    power = librosa.feature.melspectrogram(
        y=y, sr=mel.sample_rate, n_fft=mel.n_fft, hop_length=mel.hop_length,
        n_mels=mel.n_mels, pad_mode="constant",
    )  # fmt: skip
    want = np.log10(10000 * power.T + 1)
    n = mel.n_fft
    got = features.zero_padded_edges(audio.log_mel(y, mel), y[:n], y[-n:], samples, mel)
    # 1e-5: audio.log_mel's float32 FFT against librosa's, after the log (measured <= 4.5e-6)
    np.testing.assert_allclose(got, want, atol=1e-5)
