"""Audio in, features out: the one decoder and the one log-mel every stage calls.

Decoding is libsndfile (via soundfile: WAV, FLAC, Ogg Vorbis/Opus, MP3, AIFF, ...) first, then
PyAV (FFmpeg) for what libsndfile cannot open: MP4/AAC/ALAC, WMA, APE, WavPack, Matroska audio;
resampling is soxr. Decoders disagree by a few hundred samples on the same MP3, which shifts frames
and changes model outputs, so every stage decodes through `stream_audio` and a given file always
meets the same decoder. Files stream (`stream_audio`, `mono_blocks`, `decode_track`): decoded in
blocks, mixed down and resampled as they arrive, reduced to the log-mel and per-block loudness
on the way, so tagging an hour costs the memory of its features, not of its audio.

The log-mel is musicnn's (Pons & Serra 2019): 16 kHz, n_fft 512, hop 256, 96 Slaney mel bands,
power spectrogram of centred frames with the signal reflected at its ends (the librosa musicnn was
trained with; librosa 0.9 changed its default to zeros, which changes the first and last frame),
then log10(10000 x + 1), computed in float32 (musicnn's float16 cast overflows under NumPy 2).
Orpheus's own log-mel models use the same function, so the TFRecords, `predict`, `record` and the
pretrained models all see identical features. `tests/test_audio.py` checks it against musicnn's
own preprocessing (`tools/musicnn_logmel_reference.py`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from orpheus.config import settings
from orpheus.errors import OrpheusError

_FEATURES = settings().tfrecords  # the feature defaults live in the config schema only
DEFAULT_SR = _FEATURES.sample_rate


@dataclass(frozen=True)
class LogMelParams:
    """Parameters of the log-mel feature; stored with every artifact that holds features."""

    sample_rate: int = DEFAULT_SR
    n_fft: int = _FEATURES.n_fft
    hop_length: int = _FEATURES.hop_length
    n_mels: int = _FEATURES.n_mels

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


BLOCK_FRAMES = 1 << 18  # native-rate frames per decoded block: ~6 s (2 MB in stereo) at 44.1 kHz


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a whole file at its native rate: float32 (frames, channels), and the rate."""
    blocks = list(stream_audio(path))
    return np.concatenate([block for block, _ in blocks]), blocks[0][1]


def stream_audio(
    path: str | Path, block_frames: int = BLOCK_FRAMES
) -> Iterator[tuple[np.ndarray, int]]:
    """Decode a file block by block at its native rate: (float32 (frames, channels), rate).

    The one decoder: libsndfile first; a file it cannot open (or whose first block it cannot
    read) goes to PyAV, whose first audio stream is decoded (so a video .mp4 is tagged from its
    sound). A damaged tail ends the stream with what came before it. Raises `AudioError`, on
    iteration, for a file with no audio at all.
    """
    import soundfile as sf

    if not Path(path).is_file():
        raise AudioError(path, "no such file")
    if Path(path).stat().st_size == 0:
        raise AudioError(path, "empty file")
    errors = (sf.LibsndfileError, RuntimeError, ValueError, OSError)
    yielded = False
    try:
        with sf.SoundFile(str(path)) as f:
            # Not `f.blocks`: after a short read (a truncated MP3 whose header promises more)
            # it yields its buffer's stale frames again until the promised length is reached.
            while len(block := f.read(block_frames, dtype="float32", always_2d=True)):
                yielded = True
                yield block, int(f.samplerate)
    except errors as exc:
        if not yielded:  # else a damaged tail: keep what came before it
            yield from _stream_av(path, _short_reason(exc), block_frames)
        return
    if not yielded:
        raise AudioError(path, "no audio frames")


def _stream_av(path: str | Path, sndfile_reason: str, block_frames: int):
    """Decode the first audio stream with FFmpeg, its ~1,000-sample frames gathered into blocks
    of about `block_frames` (so the per-block work stays cheap); `sndfile_reason` is the reason
    if FFmpeg cannot read the file either. A change of rate or channels mid-stream (a recorded
    broadcast) ends the stream there: what follows would be mistimed.
    """
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
        pending: list[np.ndarray] = []
        layout, size, yielded = None, 0, False
        try:
            for frame in container.decode(stream):
                samples = _frame_samples(frame)
                if layout not in (None, (frame.sample_rate, len(samples))):
                    break
                layout = (frame.sample_rate, len(samples))
                pending.append(samples)
                size += samples.shape[1]
                if size >= block_frames:
                    yield np.concatenate(pending, axis=1).T, layout[0]
                    pending, size, yielded = [], 0, True
        except (av.error.FFmpegError, ValueError) as exc:
            if not (pending or yielded):  # a damaged tail keeps what came before it
                raise AudioError(path, _short_reason(exc)) from None
    if pending and layout[0]:
        yield np.concatenate(pending, axis=1).T, layout[0]
    elif not yielded:  # FFmpeg guessed a format but found nothing in it
        raise AudioError(path, sndfile_reason)


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


PIECE_FRAMES = 1 << 16  # native frames mixed down and resampled at a time: see mono_blocks


def mono_blocks(
    path: str | Path, sr: int | None = DEFAULT_SR, block_frames: int = BLOCK_FRAMES
) -> Iterator[np.ndarray]:
    """A file as mono float32 at `sr` (None: its own rate), piece by piece as it decodes.

    The resampler is soxr's stream (`soxr.ResampleStream`, HQ), which carries its filter state
    between pieces: its output equals `soxr.resample` of the whole signal bit for bit.

    Each decoded block is mixed down and resampled in pieces of `PIECE_FRAMES`, so that every
    temporary made from a piece, here and downstream (`LogMelStream`'s windowed frames and
    spectrum), stays under ~0.5 MB: glibc's malloc serves those from memory it keeps, where
    whole 2 MB blocks had it map fresh pages and fault them in again, block after block (24 x
    30 s 44.1 kHz stereo MP3s decoded into Tracks by 2 threads, medians of two runs of 10-12
    rounds: 1,628 and 1,327 -> 343 and 254 page faults, 35.6 and 34.1 -> 34.7 and 32.4 CPU-ms
    per clip). The blocks read stay
    `block_frames`: libsndfile decodes some damaged MP3s differently when read in other sizes
    (tests/fixtures/musicnn_clips/jazz-22k.mp3 by up to 0.37 in 2**16-frame reads).
    """
    resampler = None
    for block, rate in stream_audio(path, block_frames):
        for start in range(0, len(block), PIECE_FRAMES):
            y = to_mono(block[start : start + PIECE_FRAMES])
            if sr is None or rate == sr:
                yield y
                continue
            if resampler is None:
                import soxr

                resampler = soxr.ResampleStream(rate, sr, 1, dtype="float32", quality="HQ")
            yield resampler.resample_chunk(y)
    if resampler is not None:
        yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def load(path: str | Path, sr: int | None = DEFAULT_SR) -> np.ndarray:
    """Decode, mix to mono and resample to `sr` (None keeps the native rate)."""
    return np.concatenate(list(mono_blocks(path, sr)))


SILENCE_DB = -60.0  # a window quieter than this (RMS, dBFS) is silence
MIN_SECONDS = 1.0  # a file shorter than this is too short to tag
LOUDNESS_BLOCK = 256  # samples per energy block: the log-mel hop at 16 kHz
FFT_FRAMES = 2048  # frames per FFT call: ~4 MB of float32 input at n_fft 512


class Loudness:
    """Energy (sum of squares, float64) per `block` samples of a signal that arrives in pieces:
    all the silence rule needs, so it never needs the audio itself."""

    def __init__(self, block: int = LOUDNESS_BLOCK):
        self.block = block
        self.samples = 0
        self._parts: list[np.ndarray] = []
        self._rest = np.zeros(0, np.float32)

    @classmethod
    def from_energy(cls, energy: np.ndarray, samples: int, block: int = LOUDNESS_BLOCK) -> Loudness:
        """The loudness of a `samples`-long signal already reduced to `energy` per block (the
        TFRecords store it), so `test` applies predict's window rule without the audio."""
        if len(energy) != -(-int(samples) // block):
            raise ValueError(f"{len(energy)} blocks of {block} cannot hold {samples} samples")
        loudness = cls(block)
        loudness.samples = int(samples)
        loudness._parts = [np.asarray(energy, dtype=np.float64)]
        return loudness

    def push(self, y: np.ndarray) -> None:
        self.samples += len(y)
        y = np.concatenate([self._rest, y]) if len(self._rest) else np.asarray(y, np.float32)
        whole = len(y) // self.block * self.block
        blocks = y[:whole].reshape(-1, self.block)
        self._parts.append(np.einsum("ij,ij->i", blocks, blocks, dtype=np.float64))
        self._rest = y[whole:].copy()

    def energy(self) -> np.ndarray:
        """Energy per block, the last block partial if the signal does not fill it."""
        rest = [np.array([np.dot(self._rest.astype(np.float64), self._rest)])]
        return np.concatenate(self._parts + (rest if len(self._rest) else []))

    def window_rms_db(self, sr: int, starts: np.ndarray, seconds: float) -> np.ndarray:
        """RMS level in dBFS under each window of `seconds` starting at `starts` (seconds).

        Windows are widened to whole blocks; a window past a short clip's end (the model sees
        the clip repeated) measures the clip itself.
        """
        block, energy = self.block, self.energy()
        cumulative = np.concatenate([[0.0], np.cumsum(energy)])
        first = np.clip(np.floor(np.asarray(starts) * sr / block).astype(int), 0, len(energy) - 1)
        ends = np.ceil((np.asarray(starts) + seconds) * sr / block).astype(int)
        last = np.clip(ends, first + 1, len(energy))
        samples = np.minimum(last * block, self.samples) - first * block
        mean_square = (cumulative[last] - cumulative[first]) / samples
        return 10.0 * np.log10(np.maximum(mean_square, 1e-20))

    def audible(
        self, sr: int, starts: np.ndarray, seconds: float, silence_db: float = SILENCE_DB
    ) -> np.ndarray:
        """The window rule, in one place: True for each window at or above the silence floor."""
        return self.window_rms_db(sr, starts, seconds) >= silence_db


def window_rms_db(
    y: np.ndarray, sr: int, starts: np.ndarray, seconds: float, block: int = LOUDNESS_BLOCK
) -> np.ndarray:
    """RMS level in dBFS (1.0 is full scale, so a full-scale sine is -3 dB) under each window.

    The window rule of song-level tagging: a window below a floor (`SILENCE_DB`) is left out of
    the song's mean, because a model asked about silence still answers confidently. Computed on
    blocks of `block` samples (`Loudness`), so it costs one pass over the audio whatever the
    number of windows, and a streamed file needs no whole-file audio for it.
    """
    loudness = Loudness(block)
    loudness.push(np.asarray(y, dtype=np.float32))
    return loudness.window_rms_db(sr, starts, seconds)


def audible_windows(
    y: np.ndarray, sr: int, starts: np.ndarray, seconds: float, silence_db: float = SILENCE_DB
) -> np.ndarray:
    """The window rule, in one place: True for each window at or above the silence floor."""
    return window_rms_db(y, sr, starts, seconds) >= silence_db


def log_mel(y: np.ndarray, params: LogMelParams = LogMelParams()) -> np.ndarray:
    """Log-compressed mel spectrogram, float32, shape (frames, n_mels): `LogMelStream` fed the
    whole signal at once."""
    stream = LogMelStream(params)
    return np.concatenate([stream.push(y), stream.finish()])


class LogMelStream:
    """The log-mel of a signal that arrives in pieces, frame for frame that of the whole.

    Frames are centred (frame t covers samples t*hop - n_fft/2 .. t*hop + n_fft/2) and the
    signal is reflected at both ends, as librosa's `melspectrogram(center=True,
    pad_mode="reflect")` does: the head's reflection is added once the first n_fft samples are
    in, the tail's at `finish`, and between pieces the samples of frames not yet complete are
    carried over. A piece yields the frames it completes, holding back a little over one FFT
    so the tail can still be reflected. The FFT runs in float64 (scipy.fft; the mel product in
    float32): within 1e-6 of librosa's float64 `melspectrogram` of the reflect-padded signal
    (tests/test_streaming.py), exactly what musicnn's librosa 0.8.1 computed (librosa 0.11 pads
    the last frames of a short signal by separate code, up to 1e-4 away on faint bins).

    >>> s = LogMelStream(LogMelParams())
    >>> [len(s.push(np.zeros(8000, np.float32))) for _ in range(4)] + [len(s.finish())]
    [29, 31, 31, 32, 3]
    >>> len(log_mel(np.zeros(32000, np.float32)))   # 1 + 32000 // 256
    126
    """

    def __init__(self, params: LogMelParams = LogMelParams()):
        self.params = params
        self._basis, self._window = _mel_basis(params)
        self._buffer = np.zeros(0, np.float32)  # unpadded until started, then the padded signal
        self._started = False

    def push(self, y: np.ndarray) -> np.ndarray:
        """The frames completed by `y` (the next samples), shape (frames, n_mels)."""
        n_fft, hop = self.params.n_fft, self.params.hop_length
        self._buffer = np.concatenate([self._buffer, np.asarray(y, dtype=np.float32)])
        if not self._started:
            if len(self._buffer) <= n_fft:
                return self._frames(0)
            head = self._buffer[n_fft // 2 : 0 : -1]  # np.pad's "reflect": the edge not repeated
            self._buffer = np.concatenate([head, self._buffer])
            self._started = True
        return self._frames(max(0, (len(self._buffer) - 2 * n_fft) // hop + 1))

    def finish(self) -> np.ndarray:
        """The remaining frames, the tail reflected."""
        pad = self.params.n_fft // 2
        if not self._started:  # shorter than one FFT: np.pad reflects as often as it must
            if not len(self._buffer):
                return self._frames(0)
            self._buffer = np.pad(self._buffer, pad, mode="reflect")
        else:
            self._buffer = np.concatenate([self._buffer, self._buffer[-2 : -pad - 2 : -1]])
        frames = self._frames((len(self._buffer) - self.params.n_fft) // self.params.hop_length + 1)
        self._buffer, self._started = np.zeros(0, np.float32), False
        return frames

    def _frames(self, count: int) -> np.ndarray:
        """Log-mel of the first `count` frames of the buffer, which then drops their hops."""
        import scipy.fft

        n_fft, hop = self.params.n_fft, self.params.hop_length
        if count <= 0:
            return np.zeros((0, self.params.n_mels), np.float32)
        span = self._buffer[: (count - 1) * hop + n_fft]
        frames = np.lib.stride_tricks.sliding_window_view(span, n_fft)[::hop]
        out = np.empty((count, self.params.n_mels), np.float32)
        for i in range(0, count, FFT_FRAMES):  # bounded temporaries, however long the piece
            spectrum = scipy.fft.rfft(frames[i : i + FFT_FRAMES] * self._window, axis=-1)
            power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
            out[i : i + FFT_FRAMES] = power @ self._basis
        self._buffer = self._buffer[count * hop :].copy()
        return np.log10(np.float32(10000.0) * out + np.float32(1.0), out=out)


@functools.lru_cache(maxsize=8)
def _mel_basis(params: LogMelParams) -> tuple[np.ndarray, np.ndarray]:
    """(Slaney mel filterbank transposed, (n_fft/2 + 1, n_mels), float32; periodic Hann window,
    float64): librosa's `melspectrogram` defaults."""
    import librosa

    basis = librosa.filters.mel(sr=params.sample_rate, n_fft=params.n_fft, n_mels=params.n_mels)
    window = librosa.filters.get_window("hann", params.n_fft, fftbins=True)
    return np.ascontiguousarray(basis.T, np.float32), window


@dataclass
class Track:
    """A file (or array) reduced, as its audio arrived, to what tagging needs: the features of
    the whole track and the loudness of every block, never its decoded audio, except that a
    waveform model's features are the samples themselves (float32 at the model's rate)."""

    features: np.ndarray  # (frames, n_mels) log-mel, or (samples,) for a waveform model
    loudness: Loudness
    sample_rate: int
    head: np.ndarray  # the first and last n_fft samples (all of a shorter signal), for frames
    tail: np.ndarray  # recomputed over other edges (`features.zero_padded_edges`)

    @property
    def samples(self) -> int:
        return self.loudness.samples

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


def reduce_track(
    blocks: Iterable[np.ndarray], mel: LogMelParams, *, waveform: bool = False
) -> Track:
    """Mono blocks at `mel.sample_rate` in, a `Track` out: the log-mel (`LogMelStream`) or the
    samples, and the loudness, computed block by block, so memory grows by the features only
    (the log-mel of an hour: ~90 MB)."""
    stream = None if waveform else LogMelStream(mel)
    loudness = Loudness()
    parts = [np.zeros((0,) if waveform else (0, mel.n_mels), np.float32)]
    head = tail = np.zeros(0, np.float32)
    for y in blocks:
        loudness.push(y)
        parts.append(y if stream is None else stream.push(y))
        if len(head) < mel.n_fft:
            head = np.concatenate([head, y[: mel.n_fft - len(head)]])
        tail = np.concatenate([tail, y])[-mel.n_fft :]
    if stream is not None:
        parts.append(stream.finish())
    return Track(np.concatenate(parts), loudness, mel.sample_rate, head, tail)


def decode_track(path: str | Path, mel: LogMelParams, *, waveform: bool = False) -> Track:
    """Decode a file in blocks straight into a `Track` at `mel.sample_rate` (`mono_blocks`)."""
    return reduce_track(mono_blocks(path, mel.sample_rate), mel, waveform=waveform)


def _short_reason(exc: BaseException) -> str:
    """A decoder's error as a skip reason: FFmpeg's own words without PyAV's errno and call
    ("[Errno 1094995529] Invalid data found when processing input: 'avcodec_send_packet()'"
    becomes "invalid data found when processing input"), libsndfile's last line."""
    strerror = getattr(exc, "strerror", None)  # PyAV's FFmpegError
    if isinstance(strerror, str) and strerror:
        return strerror[0].lower() + strerror[1:]
    text = str(exc).strip().splitlines()
    reason = text[-1] if text else type(exc).__name__
    # libsndfile says this of any file it cannot open, including an existing non-audio file;
    # read_audio has already ruled out a missing file, so say what is really wrong.
    if "possibly a pipe" in reason or "Format not recognised" in reason:
        return "not a recognised audio format"
    return reason
