"""Streaming decode: a file decoded block by block into features (`audio.decode_track`) equals
whole-file decoding, and its memory grows with the features, never with the decoded audio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import soxr
from tagger_helpers import make_run, music

from orpheus import audio
from orpheus.audio import LogMelParams, LogMelStream

MEL = LogMelParams()


def librosa_log_mel(y: np.ndarray) -> np.ndarray:
    """The oracle: librosa's mel spectrogram, in float64, of the whole signal reflected at both
    ends by half an FFT (what `center=True, pad_mode="reflect"` means, and what musicnn's
    librosa 0.8.1 did; librosa 0.11 pads a short signal's last frames by separate code that
    lands up to 1e-4 away on faint bins)."""
    padded = np.pad(y.astype(np.float64), MEL.n_fft // 2, mode="reflect")
    mel = librosa.feature.melspectrogram(
        y=padded, sr=MEL.sample_rate, n_fft=MEL.n_fft, hop_length=MEL.hop_length,
        n_mels=MEL.n_mels, center=False,
    )  # fmt: skip
    return np.log10(10000.0 * mel.T + 1.0)


# Tolerances. Against `audio.log_mel` of the whole signal: the same code on other frame counts,
# where only the float32 mel product's BLAS kernel (chosen by size) rounds differently:
# measured 4.8e-7, one float32 step at the largest values (~5); 2e-6 is four steps. Against the
# float64 oracle: the float32 mel product and log, measured 6.5e-7; 2e-6 again. A wrong
# reflection or a dropped carried sample moves a frame by more than 0.1.
TOLERANCE = 2e-6


@pytest.mark.parametrize("n", [1, 3, 255, 256, 257, 512, 513, 768, 1280, 16000, 40001])
def test_log_mel_in_any_pieces_equals_the_whole(n):
    rng = np.random.default_rng(n)
    y = (0.3 * rng.standard_normal(n)).astype(np.float32)
    whole = audio.log_mel(y)
    assert whole.shape == (1 + n // MEL.hop_length, MEL.n_mels)
    np.testing.assert_allclose(whole, librosa_log_mel(y), rtol=0, atol=TOLERANCE)
    for sizes in ([1] * min(n, 600), [7, 255, 256, 600], rng.integers(1, 3000, 40)):
        stream, frames, at = LogMelStream(MEL), [], 0
        for size in sizes:
            frames.append(stream.push(y[at : at + size]))
            at += size
        frames += [stream.push(y[at:]), stream.finish()]
        np.testing.assert_allclose(np.concatenate(frames), whole, rtol=0, atol=TOLERANCE)


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> dict[str, Path]:
    """13 s of music at 44.1 kHz in stereo (three decode blocks) as FLAC and MP3."""
    d = tmp_path_factory.mktemp("stream")
    y = music(13.0, sr=44100, seed=5)
    stereo = np.stack([y, 0.6 * y[::-1]], axis=1)
    flac, mp3 = d / "song.flac", d / "song.mp3"
    sf.write(flac, stereo, 44100, subtype="PCM_16")
    sf.write(mp3, stereo, 44100, format="MP3")
    return {"flac": flac, "mp3": mp3}


@pytest.mark.parametrize("kind", ["flac", "mp3"])
def test_a_streamed_track_equals_whole_file_decoding(song, kind):
    # The oracle decodes the whole file with libsndfile, mixes it down and resamples it at once.
    data, sr = sf.read(song[kind], dtype="float32", always_2d=True)
    assert len(data) > 2 * audio.BLOCK_FRAMES  # the stream carries state across blocks
    y = soxr.resample(data.mean(axis=1), sr, MEL.sample_rate, quality="HQ")

    samples = audio.decode_track(song[kind], MEL, waveform=True)
    # soxr's stream carries its filter state: the same samples, measured bit for bit; the mean
    # of two channels in float32 may round differently from to_mono's sum: 1 step of 2**-24.
    np.testing.assert_allclose(samples.features, y, rtol=0, atol=2**-22)
    track = audio.decode_track(song[kind], MEL)
    assert track.samples == len(y) and track.seconds == pytest.approx(13.0, abs=0.06)
    np.testing.assert_allclose(track.features, librosa_log_mel(y), rtol=0, atol=TOLERANCE)

    # Loudness per window from the blocks' energies, against the RMS of the samples themselves
    # (windows of whole 256-sample blocks; the last two run past the end, and measure the
    # clip up to its end).
    starts, seconds = np.array([0.0, 0.48, 5.12, 10.24, 12.8]), 188 * 256 / 16000
    want = []
    for s in starts:
        part = y[round(s * 16000) : round((s + seconds) * 16000)].astype(np.float64)
        want.append(10 * np.log10(np.mean(part**2)))
    # float64 sums in another order: ~1e-12 dB; 1e-9 dB is rounding
    got = track.loudness.window_rms_db(16000, starts, seconds)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


LONG_SCRIPT = """
import json, resource, sys
from orpheus import audio
track = audio.decode_track(sys.argv[1], audio.LogMelParams())
print(json.dumps({"frames": len(track.features), "samples": track.samples,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def tone_flac(path: Path, minutes: float) -> Path:
    """A 44.1 kHz stereo FLAC of a steady tone, written in 10 s blocks (fast, and small)."""
    t = np.arange(441000) / 44100
    y = (0.3 * np.sin(2 * np.pi * 441 * t)).astype(np.float32)
    with sf.SoundFile(path, "w", 44100, 2, format="FLAC", compression_level=0.0) as f:
        for _ in range(int(minutes * 6)):
            f.write(np.stack([y, 0.8 * y], axis=1))
    return path


def run_fresh(script: str, *args: str | Path) -> dict:
    """The JSON line `script` prints last, run with `args` in a fresh process (so its peak
    resident memory is its own; one BLAS thread, TensorFlow's logs off)."""
    env = {"OPENBLAS_NUM_THREADS": "1", "PATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
        env=env, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_60_minute_file_decodes_in_the_memory_of_a_3_minute_one(tmp_path):
    short = run_fresh(LONG_SCRIPT, tone_flac(tmp_path / "3 min.flac", 3))
    path = tone_flac(tmp_path / "60 min.flac", 60)
    try:
        long = run_fresh(LONG_SCRIPT, path)
    finally:
        path.unlink()  # 130 MB
    for info, minutes in ((short, 3), (long, 60)):
        assert info["samples"] == minutes * 60 * 16000
        assert info["frames"] == 1 + info["samples"] // MEL.hop_length
    # Whole-file decoding held the decoded hour (635 MB at 44.1 kHz in stereo, then its mono
    # and 16 kHz copies): 3.3 GB peak. Streaming adds the hour's log-mel (86 MB) and its
    # assembly from blocks (86 MB more, briefly): measured 171 MB above the 3-minute file.
    assert long["peak_mb"] - short["peak_mb"] < 300, (short, long)


TAG_SCRIPT = """
import json, resource, sys
from orpheus.tagger import Tagger
hop = None if sys.argv[3] == "none" else float(sys.argv[3])
result = Tagger.from_run_dir(sys.argv[1]).tag_file(sys.argv[2], hop=hop)
print(json.dumps({"windows": len(result.starts),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_a_small_hop_costs_the_memory_of_its_taggram_not_of_its_windows(tmp_path):
    """Windows 4 frames (64 ms) apart over 5 minutes (18,751 frames): 1 + ceil((18751 - 188) / 4)
    = 4,642 overlapping 3 s windows, 335 MB as arrays. Cut from the features a batch at a time,
    they peak within 100 MB of the default hop's 100 windows (measured +931 MB when every window
    was cut first, then copied again without the silent ones; a process's peak varies by a few
    tens of MB between runs)."""
    run = make_run(tmp_path, "tiny", seconds=3.0)
    path = tone_flac(tmp_path / "5 min.flac", 5)
    default = run_fresh(TAG_SCRIPT, run, path, "none")
    dense = run_fresh(TAG_SCRIPT, run, path, "0.064")
    assert default["windows"] == 100 and dense["windows"] == 4642, (default, dense)
    assert dense["peak_mb"] - default["peak_mb"] < 100, (default, dense)


def test_streamed_tags_equal_those_of_whole_file_decoding(song):
    """The pretrained tagger on a 13 s MP3 streamed in blocks, against the same model on the
    whole file decoded at once (libsndfile, channel mean, one soxr call)."""
    from orpheus.tagger import Tagger

    tagger = Tagger.pretrained("msd-musicnn")
    data, sr = sf.read(song["mp3"], dtype="float32", always_2d=True)
    whole = tagger.tag(data.mean(axis=1), sr, hop=1.0)
    streamed = tagger.tag_file(song["mp3"], hop=1.0)
    np.testing.assert_array_equal(streamed.starts, whole.starts)
    assert streamed.duration == whole.duration
    # Measured 0 (soxr's stream is bit-exact and `log_mel` is the same stream fed once); the
    # features may differ by 2e-6 (above) where BLAS kernels differ: 1e-5 after the model leaves
    # room for that. A frame off by one, or a lost block, moves them by 1e-3 or more.
    np.testing.assert_allclose(streamed.probabilities, whole.probabilities, rtol=0, atol=1e-5)


def test_files_tagged_together_equal_files_tagged_alone(song, tmp_path):
    """tag_files puts several files' windows into one model call: each file's result must be
    the one it gets alone, in the files' order, a broken file in between."""
    from orpheus.tagger import Tagger

    tagger = Tagger.pretrained("msd-musicnn")
    paths = []
    for k, seconds in enumerate((4.0, 7.0, 3.5, 5.0)):
        paths.append(tmp_path / f"clip{k}.flac")
        sf.write(paths[-1], music(seconds, sr=22050, seed=k), 22050)
    (tmp_path / "broken.mp3").write_bytes(b"not audio" * 100)
    paths.insert(2, tmp_path / "broken.mp3")
    together = list(tagger.tag_files(paths + [song["mp3"]], hop=1.0))
    assert [p for p, _ in together] == paths + [song["mp3"]]
    assert isinstance(together[2][1], audio.AudioError)
    for path, result in together[:2] + together[3:]:
        alone = tagger.tag_file(path, hop=1.0)
        np.testing.assert_array_equal(result.starts, alone.starts)
        # other batch shapes round differently in the model's kernels: ~1e-7
        np.testing.assert_allclose(result.taggram, alone.taggram, rtol=0, atol=1e-5)
