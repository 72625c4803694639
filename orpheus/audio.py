"""Audio in, features out: the one decoder and the one log-mel every stage calls.

Decoding is libsndfile (via soundfile: WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF, ...) first, then
PyAV (FFmpeg) for what libsndfile cannot open: MP4/AAC/ALAC, WMA, APE, WavPack, Matroska audio;
resampling is soxr. Decoders disagree by a few hundred samples on the same MP3, which shifts frames
and changes model outputs, so every stage decodes through `read_audio` and a given file always
meets the same decoder.

The log-mel is musicnn's (Pons & Serra 2019): 16 kHz, n_fft 512, hop 256, 96 Slaney mel bands,
power spectrogram of centred frames with the signal reflected at its ends (the librosa musicnn was
trained with; librosa 0.9 changed its default to zeros, which changes the first and last frame),
then log10(10000 x + 1), computed in float32 (musicnn's float16 cast overflows under NumPy 2).
Orpheus's own log-mel models use the same function, so the TFRecords, `predict`, `record` and the
pretrained models all see identical features. `tests/test_audio.py` checks it against musicnn's
own preprocessing (`tools/musicnn_logmel_reference.py`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from orpheus.errors import OrpheusError

DEFAULT_SR = 16000


@dataclass(frozen=True)
class LogMelParams:
    """Parameters of the log-mel feature; stored with every artifact that holds features."""

    sample_rate: int = DEFAULT_SR
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96

    def to_dict(self) -> dict:
        return asdict(self)

    def frames(self, seconds: float) -> int:
        """Number of centred STFT frames covering `seconds` of audio."""
        return int(seconds * self.sample_rate) // self.hop_length + 1


# Files a folder expansion treats as audio: libsndfile's formats, then what PyAV adds (.m4p is
# listed so that a protected file is reported, not silently passed over).
AUDIO_EXTENSIONS = frozenset(
    {
        ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
        ".au", ".snd", ".w64", ".caf", ".m4a", ".m4b", ".m4p", ".mp4", ".aac", ".alac",
        ".wma", ".asf", ".ape", ".wv", ".mka", ".webm",
    }
)  # fmt: skip
# Sample-entry codes of encrypted audio: Apple FairPlay (.m4p) and Common Encryption.
PROTECTED_CODECS = frozenset({"drms", "drmi", "enca"})


class AudioError(OrpheusError):
    """A file that cannot be decoded as audio: `path` and a short `reason` for skip lines."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot decode {path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # picklable across process pools despite the two-argument init
        return AudioError, (self.path, self.reason)


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file at its native rate: float32 array of shape (frames, channels), and the rate.

    libsndfile first; a file it cannot open goes to PyAV, whose first audio stream is decoded (so
    a video .mp4 is tagged from its sound).
    """
    import soundfile as sf

    if not Path(path).is_file():
        raise AudioError(path, "no such file")
    if Path(path).stat().st_size == 0:
        raise AudioError(path, "empty file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        data, sr = _read_with_av(path, _short_reason(exc))
    if data.shape[0] == 0:
        raise AudioError(path, "no audio frames")
    return data, int(sr)


def _read_with_av(path: str | Path, sndfile_reason: str) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with FFmpeg; `sndfile_reason` is the reason if it cannot."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError):
        raise AudioError(path, sndfile_reason) from None
    with container:
        if not container.streams.audio:
            raise AudioError(path, "no audio stream")
        stream = container.streams.audio[0]
        if (stream.codec_context.codec_tag or "").strip().lower() in PROTECTED_CODECS:
            raise AudioError(path, "protected")
        blocks, rate = [], stream.codec_context.sample_rate
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    blocks.append(_frame_samples(frame))
                    rate = frame.sample_rate
        except (av.error.FFmpegError, ValueError) as exc:
            if not blocks:  # a damaged tail keeps what came before it, as libsndfile does
                raise AudioError(path, _short_reason(exc)) from None
    if not blocks or not rate:  # FFmpeg guessed a format but found nothing in it
        raise AudioError(path, sndfile_reason)
    return np.concatenate(blocks, axis=1).T, int(rate)


def _frame_samples(frame) -> np.ndarray:
    """One decoded frame as float32 (channels, samples) in [-1, 1], whatever FFmpeg's layout."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    if data.dtype.kind == "u":  # unsigned 8-bit: 128 is zero
        return ((data.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if data.dtype.kind == "i":
        return data.astype(np.float32) / np.float32(2 ** (8 * data.dtype.itemsize - 1))
    return data.astype(np.float32, copy=False)


def audio_files(folder: str | Path) -> tuple[list[Path], int, list[str]]:
    """(audio files, count of other files, problems) under `folder`, sorted.

    Symlinked subfolders are followed, each real folder once (a link back up cannot loop), so a
    library that links to other disks is read whole. A file counts as audio by its extension
    (`AUDIO_EXTENSIONS`); a folder that cannot be listed is a problem `PATH: reason`.
    """
    files: list[Path] = []
    problems: list[str] = []
    ignored = 0
    seen: set[tuple[int, int]] = set()
    pending = [Path(folder)]
    while pending:
        current = pending.pop()
        try:
            st = current.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            problems.append(f"{current}: cannot read this folder ({exc.strerror or exc})")
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                pending.append(path)
            elif path.suffix.lower() in AUDIO_EXTENSIONS:
                files.append(path)
            else:
                ignored += 1
    return sorted(files), ignored, problems


def to_mono(data: np.ndarray) -> np.ndarray:
    """Mix (frames, channels) down to (frames,) by averaging the channels."""
    if data.ndim == 1:
        return data.astype(np.float32, copy=False)
    # Column by column: ~8x faster than mean(axis=1) on (frames, 2), bit-identical for stereo.
    mono = data[:, 0].astype(np.float32, copy=True)
    for c in range(1, data.shape[1]):
        mono += data[:, c]
    return mono * np.float32(1.0 / data.shape[1])


def resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr (high quality)."""
    if sr_in == sr_out:
        return y.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def load(path: str | Path, sr: int | None = DEFAULT_SR) -> np.ndarray:
    """Decode, mix to mono and resample to `sr` (None keeps the native rate)."""
    data, native = read_audio(path)
    y = to_mono(data)
    return y if sr is None else resample(y, native, sr)


SILENCE_DB = -60.0  # a window quieter than this (RMS, dBFS) is silence
MIN_SECONDS = 1.0  # a file shorter than this is too short to tag
LOUDNESS_BLOCK = 256  # samples per energy block: the log-mel hop at 16 kHz


def window_rms_db(
    y: np.ndarray, sr: int, starts: np.ndarray, seconds: float, block: int = LOUDNESS_BLOCK
) -> np.ndarray:
    """RMS level in dBFS (1.0 is full scale, so a full-scale sine is -3 dB) under each window.

    The window rule of song-level tagging: a window below a floor (`SILENCE_DB`) is left out of
    the song's mean, because a model asked about silence still answers confidently. Computed on
    blocks of `block` samples (windows are widened to whole blocks), so it costs one pass over
    the audio whatever the number of windows. A window past a short clip's end (the model sees
    the clip repeated) measures the clip itself.
    """
    y = np.asarray(y, dtype=np.float32)
    whole = len(y) // block * block
    blocks = y[:whole].reshape(-1, block)
    energy = np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64)
    if whole < len(y):
        energy = np.append(energy, np.dot(y[whole:].astype(np.float64), y[whole:]))
    cumulative = np.concatenate([[0.0], np.cumsum(energy)])
    first = np.clip(np.floor(np.asarray(starts) * sr / block).astype(int), 0, len(energy) - 1)
    ends = np.ceil((np.asarray(starts) + seconds) * sr / block).astype(int)
    last = np.clip(ends, first + 1, len(energy))
    samples = np.minimum(last * block, len(y)) - first * block
    mean_square = (cumulative[last] - cumulative[first]) / samples
    return 10.0 * np.log10(np.maximum(mean_square, 1e-20))


def audible_windows(
    y: np.ndarray, sr: int, starts: np.ndarray, seconds: float, silence_db: float = SILENCE_DB
) -> np.ndarray:
    """The window rule, in one place: True for each window at or above the silence floor."""
    return window_rms_db(y, sr, starts, seconds) >= silence_db


def log_mel(y: np.ndarray, params: LogMelParams = LogMelParams()) -> np.ndarray:
    """Log-compressed mel spectrogram, float32, shape (frames, n_mels)."""
    import librosa

    with warnings.catch_warnings():
        # Clips shorter than one FFT frame are expected (callers repeat-pad the features).
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        mel = librosa.feature.melspectrogram(
            y=np.asarray(y, dtype=np.float32),
            sr=params.sample_rate,
            n_fft=params.n_fft,
            hop_length=params.hop_length,
            n_mels=params.n_mels,
            pad_mode="reflect",
        )
    return np.log10(10000.0 * mel.T.astype(np.float32) + 1.0)


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    reason = text[-1] if text else type(exc).__name__
    # libsndfile says this of any file it cannot open, including an existing non-audio file;
    # read_audio has already ruled out a missing file, so say what is really wrong.
    if "possibly a pipe" in reason or "Format not recognised" in reason:
        return "not a recognised audio format"
    return reason
