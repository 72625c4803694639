"""Every format a library holds: real files encoded by FFmpeg (PyAV) and a Monkey's Audio fixture,
decoded by `orpheus.audio.read_audio` and tagged by `orpheus predict` as the same audio in WAV is.

The source is 12 s of `tagger_helpers.music` at 44.1 kHz in stereo (the right channel at 0.8 of
the left, so a swapped or dropped channel shows). Lossless files must decode to the source's
samples; lossy ones must decode in step with it (aligned, the error well below the signal).
"""

from __future__ import annotations

import fractions
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from cli_helpers import orpheus
from scipy.signal import correlate
from tagger_helpers import music, write

from orpheus import audio
from orpheus.audio import AudioError, read_audio

SR = 44100
FIXTURES = Path(__file__).parent / "fixtures"
# name -> (codec, options): a sample format given explicitly, since PyAV otherwise encodes in the
# codec's first format (u8p for WavPack: an 8-bit "lossless" file); WMA needs a bit rate.
LOSSLESS = {
    "song.wv": ("wavpack", {"format": "fltp"}),
    "song alac.m4a": ("alac", {"format": "s32p"}),
    "song.mka": ("flac", {"format": "s16"}),
}
LOSSY = {
    "song aac.m4a": ("aac", {"bit_rate": 192_000}),
    "song.opus": ("libopus", {"format": "flt", "bit_rate": 128_000, "rate": 48_000}),
    "song.wma": ("wmav2", {"bit_rate": 192_000}),
    "video.mp4": ("aac", {"bit_rate": 192_000, "video": True}),
}


def stereo(seconds: float = 12.0) -> np.ndarray:
    y = music(seconds, sr=SR, seed=3)
    return np.stack([y, 0.8 * y], axis=1)


def encode(path: Path, codec: str, y: np.ndarray, *, format: str = "fltp", bit_rate=None,
           rate: int = SR, video: bool = False) -> Path:  # fmt: skip
    """Encode (frames, 2) float audio at SR into `path` with FFmpeg, as a real file would be."""
    with av.open(str(path), "w") as out:
        picture = out.add_stream("mpeg4", rate=1) if video else None  # as in a music video
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        stream.codec_context.format = format
        if bit_rate:
            stream.bit_rate = bit_rate
        if picture is not None:
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
            for second in range(int(len(y) / SR)):
                image = np.full((48, 64, 3), 20 * second, np.uint8)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = second
                out.mux(picture.encode(frame))
            out.mux(picture.encode(None))
        resampler = av.AudioResampler(format=format, layout="stereo", rate=rate)
        planar = np.ascontiguousarray(y.T, dtype=np.float32)
        for start in range(0, planar.shape[1], 4096):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planar[:, start : start + 4096]),
                format="fltp",
                layout="stereo",
            )
            frame.sample_rate, frame.pts, frame.time_base = SR, start, fractions.Fraction(1, SR)
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            out.mux(stream.encode(converted))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> dict[str, Path]:
    """The source as a float WAV, every encoded format, and the APE fixture with its own WAV."""
    d = tmp_path_factory.mktemp("formats")
    y = stereo()
    files = {"wav": write(d / "song.wav", y, sr=SR, subtype="FLOAT")}
    for name, (codec, options) in {**LOSSLESS, **LOSSY}.items():
        files[name] = encode(d / name, codec, y, **options)
    files["ape"] = shutil.copy(FIXTURES / "music.ape", d / "music.ape")
    ape_source = music(3.5, seed=7)  # how the fixture was made: tests/fixtures/README.md
    files["ape wav"] = write(d / "music.wav", ape_source, subtype="PCM_16")
    return {k: Path(v) for k, v in files.items()}


def aligned(decoded: np.ndarray, source: np.ndarray) -> tuple[int, float]:
    """(lag in samples, SNR in dB) of `decoded` against `source` once aligned."""
    n = min(len(decoded), len(source), 2 * SR)
    lag = int(np.argmax(correlate(decoded[:n], source[:n], method="fft"))) - (n - 1)
    a, b = decoded[max(lag, 0) :], source[max(-lag, 0) :]
    m = min(len(a), len(b))
    return lag, 10 * np.log10(np.sum(b[:m] ** 2) / np.sum((a[:m] - b[:m]) ** 2))


def test_lossless_formats_decode_to_the_source_samples(library):
    source, _ = read_audio(library["wav"])
    for name in LOSSLESS:
        data, sr = read_audio(library[name])
        assert sr == SR and data.shape == source.shape, name
        # one 16-bit step: the FLAC copy holds 16-bit samples, the others are closer still
        np.testing.assert_allclose(data, source, atol=2**-15, rtol=0, err_msg=name)
    ape, sr = read_audio(library["ape"])
    wav, _ = read_audio(library["ape wav"])
    assert sr == 16000 and np.array_equal(ape, wav)  # APE is lossless: bit for bit


def test_lossy_formats_decode_in_step_with_the_source(library):
    source = audio.to_mono(read_audio(library["wav"])[0])
    for name in LOSSY:
        data, sr = read_audio(library[name])
        assert data.shape[1] == 2, name
        mono = audio.resample(audio.to_mono(data), sr, SR)
        lag, snr = aligned(mono, source)
        # Measured (PyAV 18.1): AAC and Opus lag 0 at 22.0 and 24.3 dB; WMA drops the first
        # 2,048 samples (lag -2048) at 24.6 dB. A wrong channel layout, sample format or rate
        # would be far below 15 dB, a lost priming or edit list far off 0 / -2048.
        assert lag in ((-2048,) if name.endswith(".wma") else (0,)), (name, lag)
        assert snr > 15, (name, snr)
        # AAC adds 208 samples at the end (padding to a whole frame), WMA 1,232 less the 2,048.
        assert abs(len(mono) - len(source)) <= 2048, name


def test_a_drm_protected_file_is_skipped_as_protected(library, tmp_path):
    # A FairPlay .m4p is an MP4 whose sample entry says `drms` instead of `mp4a`, so FFmpeg's
    # demuxer reports the codec tag `drms` (the sound itself, encrypted, cannot be decoded).
    protected = tmp_path / "bought.m4p"
    data = library["song aac.m4a"].read_bytes()
    assert data.count(b"mp4a") == 1
    protected.write_bytes(data.replace(b"mp4a", b"drms"))
    with pytest.raises(AudioError) as caught:
        read_audio(protected)
    assert caught.value.reason == "protected" and caught.value.path == str(protected)


def test_files_that_no_decoder_reads_say_why(tmp_path):
    picture = tmp_path / "cover.mp4"
    with av.open(str(picture), "w") as out:  # a video with no sound at all
        stream = out.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    garbage = tmp_path / "garbage.m4a"
    garbage.write_bytes(b"\x00\x01junk" * 100)
    cut = tmp_path / "cut.flac"  # a FLAC header, then audio cut off inside its first frame
    sf.write(cut, np.random.default_rng(0).normal(0, 0.1, (44100, 2)), 44100)
    cut.write_bytes(cut.read_bytes()[:3000])
    reasons = {}
    for path in (picture, garbage, cut):
        with pytest.raises(AudioError) as caught:
            read_audio(path)
        reasons[path.name] = caught.value.reason
    assert reasons == {
        "cover.mp4": "no audio stream",
        "garbage.m4a": "not a recognised audio format",
        "cut.flac": "invalid data found when processing input",  # FFmpeg's words, not PyAV's
    }


def test_folders_follow_symlinks_once_and_count_other_files(tmp_path):
    lib = tmp_path / "library"
    (lib / "a" / "b").mkdir(parents=True)
    elsewhere = tmp_path / "other disk"
    elsewhere.mkdir()
    for p in (lib / "a" / "one.m4a", lib / "a" / "b" / "two.WMA", elsewhere / "three.ape"):
        p.write_bytes(b"x")
    for p in (lib / "cover.jpg", lib / "a" / "album.cue", elsewhere / "rip.log"):
        p.write_text("not audio")
    (lib / "linked").symlink_to(elsewhere, target_is_directory=True)
    (lib / "a" / "b" / "loop").symlink_to(lib, target_is_directory=True)  # a link back up
    files, ignored, problems = audio.audio_files(lib)
    assert files == sorted([lib / "a" / "one.m4a", lib / "a" / "b" / "two.WMA",
                            lib / "linked" / "three.ape"])  # fmt: skip
    assert ignored == 3 and problems == []


@pytest.mark.slow
def test_predict_tags_every_format_as_it_tags_the_wav(library, tmp_path):
    """One `orpheus predict` over a folder of all the formats (one model load)."""
    folder = tmp_path / "music"
    folder.mkdir()
    for path in library.values():
        shutil.copy(path, folder / path.name)
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff not audio")
    result = orpheus("predict", folder, "-f", "jsonl")
    assert result.exit_code == 0, result.stderr
    probs = {
        Path(rec["path"]).name: np.array(list(rec["probabilities"].values()))
        for rec in map(json.loads, result.stdout.splitlines())
    }
    assert set(probs) == {p.name for p in library.values()}
    assert "1 non-audio file(s) ignored" in result.stderr
    wav = probs["song.wav"]
    for name in LOSSLESS:
        # same samples (16-bit at worst): measured differences below 2e-5
        np.testing.assert_allclose(probs[name], wav, atol=1e-4, rtol=0, err_msg=name)
    for name in LOSSY:
        # Measured max |difference| over the 50 tags: AAC 0.014, Opus 0.031, WMA 0.052 (at 192
        # and 128 kbit/s); the codecs' delay alone (2,048 samples cut, 820 added) moves them
        # by at most 0.013 on the WAV. 0.08 covers both with room (the codecs are FFmpeg's own,
        # bundled in the av wheel, so the files are the same on every machine).
        np.testing.assert_allclose(probs[name], wav, atol=0.08, rtol=0, err_msg=name)
        assert np.argmax(probs[name]) == np.argmax(wav), name
    np.testing.assert_allclose(probs["music.ape"], probs["music.wav"], atol=1e-6, rtol=0)
