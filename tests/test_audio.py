"""The one decoder and the one log-mel: musicnn's own numbers, messages for unreadable files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orpheus.audio import AudioError, LogMelParams, load, log_mel, read_audio

# Made once by musicnn 0.1.0's own `extractor.batch_data` (librosa 0.8.1, NumPy 1.23.5): see
# tools/musicnn_logmel_reference.py and tests/fixtures/README.md.
MUSICNN_LOGMEL = Path(__file__).parent / "fixtures" / "musicnn_logmel_reference.npz"


@pytest.fixture(scope="module")
def musicnn_logmel(tmp_path_factory):
    """The reference arrays, and Orpheus's log-mel of the reference waveform decoded from a WAV."""
    ref = dict(np.load(MUSICNN_LOGMEL))
    wav = tmp_path_factory.mktemp("logmel") / "reference.wav"
    sf.write(wav, ref["pcm"], int(ref["sr"]), subtype="PCM_16")
    y = load(wav)  # 16 kHz in, 16 kHz out: no resampling, as librosa.load did for musicnn
    np.testing.assert_array_equal(y, ref["pcm"] / np.float32(32768))
    return ref, log_mel(y)


def test_log_mel_equals_musicnns_melspectrogram_before_its_float16_cast(musicnn_logmel):
    ref, ours = musicnn_logmel
    assert ours.shape == ref["mel"].shape == (251, 96)
    want = np.log10(10000.0 * ref["mel"] + 1.0)
    # Measured here (Orpheus's float64 FFT against the reference's librosa 0.8.1 in float32):
    # 4.8e-7, one float32 step at the largest values. What differs between
    # CPUs is float32 rounding in the FFT and the mel matrix product (BLAS kernels): at worst
    # ~1.6e-5 relative on a mel value, i.e. 0.434 * 1.6e-5 = 7e-6 after the log10. 2e-5 covers
    # that and is far below any real change: zero padding at the ends (librosa >= 0.9's default)
    # moves the last frame by 1.6, HTK mels or another n_fft by more than 0.1.
    np.testing.assert_allclose(ours, want, rtol=0, atol=2e-5)


def test_log_mel_equals_musicnns_float16_patches_without_their_overflow(musicnn_logmel):
    ref, ours = musicnn_logmel
    patches, hop = ref["patches"], int(ref["patch_hop"])
    n = patches.shape[1]
    mine = np.stack([ours[s : s + n] for s in range(0, len(ours) - n + 1, hop)])
    assert mine.shape == patches.shape == (2, 187, 96)
    # musicnn rounds the mel to float16 before the log: half a float16 step is 2**-11 relative,
    # log10(1 + 2**-11) = 2.12e-4 after the log (below float16's normal range the step is
    # absolute, 2**-25 * 10000 / ln 10 = 1.3e-4), plus the 2e-5 allowed above: 2.5e-4.
    # Measured: 2.09e-4.
    np.testing.assert_allclose(mine, patches, rtol=0, atol=2.5e-4)
    # The fixture holds loud bins where musicnn's float16 product overflows under NumPy 2
    # (10000 x > 65504: 1.3% of the bins here); Orpheus computes them in float32.
    assert (10000.0 * ref["mel"] > np.finfo(np.float16).max).mean() > 0.01
    assert np.isfinite(ours).all()


def test_log_mel_of_a_clip_shorter_than_one_frame_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features = log_mel(np.zeros(100, dtype=np.float32))
    assert features.shape == (1, LogMelParams().n_mels) and features.dtype == np.float32


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "no such file"), (b"", "empty file"), (b"<html>not audio</html>" * 50, "not a recog")],
)
def test_unreadable_files_say_why(tmp_path: Path, content: bytes | None, reason: str):
    path = tmp_path / "x.clip.mp3"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=reason):
        read_audio(path)
