"""The Pons et al. 2018 models: shapes, the original's parameter count, safe-mode round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from orpheus.audio import LogMelParams
from orpheus.models import build_model
from orpheus.models.pons import _min_waveform_length


def _trainable(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_log_mel_model_has_the_original_parameter_count_at_50_tags():
    frames = LogMelParams().frames(15)
    model = build_model("log-mel", 50, n_filters=16, n_dense_units=500, input_length=frames)
    assert model.input_shape == (None, frames, 96)
    assert model.output_shape == (None, 50)
    assert _trainable(model) == 5_924_154  # the seed's checkpoint, counted (peers.md B3)
    # the front end's ten branches give 29 * n_filters channels, time unchanged
    assert model.get_layer("frontend_concat").output.shape == (None, frames, 29 * 16)
    # the two post-permute BatchNorms have one scalar gamma/beta (the original's quirk)
    assert model.get_layer("conv2_back_bn").gamma.shape == (1,)


def test_waveform_front_end_reduces_15_s_to_108_steps_of_256_channels():
    model = build_model("waveform", 50, n_filters=16, n_dense_units=500, input_length=240_000)
    assert model.input_shape == (None, 240_000)
    assert model.get_layer("wave6_pool").output.shape == (None, 108, 256)
    assert model.output_shape == (None, 50)


@pytest.mark.parametrize(("frontend", "length"), [("log-mel", 40), ("waveform", 20_000)])
def test_small_models_predict_probabilities_and_reload_in_safe_mode(tmp_path, frontend, length):
    model = build_model(frontend, 4, n_filters=2, n_dense_units=8, input_length=length)
    shape = (3, length, 96) if frontend == "log-mel" else (3, length)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    y = model.predict_on_batch(x)
    assert y.shape == (3, 4) and np.all((y > 0) & (y < 1))
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict_on_batch(x), y, rtol=1e-5, atol=1e-6)


def test_too_short_windows_and_unknown_frontends_are_refused():
    n = _min_waveform_length()
    build_model("waveform", 2, n_filters=2, n_dense_units=4, input_length=n)
    with pytest.raises(ValueError, match=f"needs at least {n} samples"):
        build_model("waveform", 2, n_filters=2, n_dense_units=4, input_length=n - 1)
    with pytest.raises(ValueError, match="at least 8"):
        build_model("log-mel", 2, n_filters=2, n_dense_units=4, input_length=7)
    with pytest.raises(ValueError, match="unknown frontend"):
        build_model("mfcc", 2, n_filters=2, n_dense_units=4, input_length=100)
