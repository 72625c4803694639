"""The Tagger: windows over whole tracks, batched inference, taggram, mean, embeddings, runs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tagger_helpers import SR, make_run, music, write

from orpheus import audio
from orpheus.dataset import even_windows, normalise
from orpheus.errors import OrpheusError
from orpheus.models.musicnn import PATCH_FRAMES
from orpheus.tagger import Tagger


@pytest.fixture(scope="module")
def msd() -> Tagger:
    return Tagger.pretrained("msd-musicnn", batch_size=4)


def test_taggram_windows_cover_the_track(msd):
    y = music(10.0)
    result = msd.tag(y, embeddings=True)
    n_frames = len(audio.log_mel(y))
    expected = len(even_windows(np.zeros((n_frames, 1)), PATCH_FRAMES, PATCH_FRAMES))
    assert result.taggram.shape == (expected, 50) and expected == 4
    assert result.embeddings.shape == (expected, 200)
    np.testing.assert_allclose(result.probabilities, result.taggram.mean(axis=0), rtol=1e-6)
    # windows are evenly spaced from 0 to the end of the track
    assert result.starts[0] == 0
    last_end = result.starts[-1] + result.window_seconds
    assert abs(last_end - n_frames * 256 / SR) < 1e-6
    # the batched taggram is the model applied window by window
    windows, _ = msd.windows(audio.log_mel(y))
    np.testing.assert_allclose(
        msd.model.predict_on_batch(windows[1:2])[0], result.taggram[1], atol=1e-5
    )


def test_start_times_are_the_windows_starts(msd):
    n = 1000
    feats = np.repeat(np.arange(n, dtype=np.float32)[:, None], 96, axis=1)
    for hop in (None, 1.0, 0.5):
        windows, starts = msd.windows(feats, hop)
        np.testing.assert_array_equal(windows[:, 0, 0], np.round(starts * SR / 256))
    assert len(msd.windows(feats, 1.0)[0]) > len(msd.windows(feats)[0])


def test_top_threshold_and_top_k(msd):
    result = msd.tag(music(4.0))
    probs = result.probabilities
    kept = result.top(0.05)
    assert [p for _, p in kept] == sorted((p for _, p in kept), reverse=True)
    assert {t for t, _ in kept} == {
        lab for lab, p in zip(result.labels, probs, strict=True) if p >= 0.05
    }
    assert result.top(0.0, top_k=3) == result.top(0.0)[:3]
    assert result.top(1.01) == []


def test_short_audio_is_repeat_padded(msd):
    result = msd.tag(music(0.5))
    assert result.taggram.shape == (1, 50) and np.isfinite(result.taggram).all()


def test_files_arrays_and_resampling_agree(msd, tmp_path):
    y44 = music(5.0, sr=44100, seed=1)
    path = write(tmp_path / "song.wav", y44, sr=44100, subtype="FLOAT")
    from_file = msd.tag_file(path)
    from_array = msd.tag(y44, sr=44100)
    np.testing.assert_allclose(from_file.taggram, from_array.taggram, atol=1e-6)
    (tmp_path / "broken.mp3").write_text("not audio")
    out = list(msd.tag_files([path, tmp_path / "broken.mp3", path]))
    assert [type(r).__name__ for _, r in out] == ["TagResult", "AudioError", "TagResult"]
    np.testing.assert_allclose(out[2][1].taggram, from_file.taggram, atol=1e-6)


def test_unknown_pretrained_name():
    with pytest.raises(OrpheusError, match="unknown model"):
        Tagger.pretrained("nope")


@pytest.mark.parametrize("frontend", ["log-mel", "waveform"])
def test_from_run_uses_the_trained_window_and_normalisation(tmp_path, frontend):
    make_run(tmp_path, "r1", frontend=frontend)
    tagger = Tagger.from_run(tmp_path, "run/r1")
    assert tagger.name == "run/r1" and tagger.labels == ["a", "b", "c"]
    assert abs(tagger.window_seconds - 1.0) < 0.02
    y = music(3.3, seed=2)
    result = tagger.tag(y, embeddings=True)
    feats = audio.log_mel(y) if frontend == "log-mel" else y
    windows = normalise(even_windows(feats, tagger.window, tagger.window), batched=True)
    model = keras.models.load_model(tmp_path / "runs" / "r1" / "model.keras")
    np.testing.assert_allclose(result.taggram, model.predict_on_batch(windows), atol=1e-5)
    assert result.embeddings.shape == (len(windows), 8)


def test_from_run_refuses_unfinished_or_missing_runs(tmp_path):
    run_dir = make_run(tmp_path, "r2")
    (run_dir / "model.keras").unlink()
    with pytest.raises(OrpheusError, match="no model.keras"):
        Tagger.from_run(tmp_path, "r2")
    with pytest.raises(OrpheusError, match="no run run/zz"):
        Tagger.from_run(tmp_path, "zz")
