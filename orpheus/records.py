"""TFRecord datasets: Example encode/decode, the split by track-ID hash, shards, the build runners.

A build turns (track ID, audio path, clean tags) rows into sharded TFRecord files plus an
`index.json` that says everything a reader needs: the feature (format and log-mel parameters),
the vocabulary (label names, in multi-hot order), the tag popularity, the split, and per shard
its file, split and track IDs. One Example per track:

| key        | type       | content                                                         |
|------------|------------|-----------------------------------------------------------------|
| `tid`      | bytes      | the MSD track ID, UTF-8                                         |
| `audio`    | bytes      | float16 little-endian; log-mel (frames, n_mels) or (samples,)   |
| `shape`    | int64 list | the array's shape                                               |
| `tags`     | int64 list | multi-hot over the whole clean vocabulary (0/1)                 |
| `loudness` | bytes      | float32 little-endian: energy (sum of squares) per block of     |
|            |            | `audio.LOUDNESS_BLOCK` samples of the decoded mono audio        |
| `samples`  | int64 list | that audio's length in samples (its last block may be partial)  |

Float16 bytes take a quarter of the original's float lists (4 bytes + protobuf overhead per value).
The loudness is what `predict`'s silence rule (`audio.Loudness`) reads, so `test` leaves out the
same windows without the audio, which log-mel records cannot give back. It is energy, not dB,
because a window's level is the log of the sum of its blocks' energies; float32, because float16
has no room (a block at -80 dBFS, energy 2.6e-6, is already subnormal), while float32 keeps a
window's level within 1e-6 dB of the float64 original (7e-7 measured, down to -120 dBFS). It
costs 4 bytes per 256 samples: 2% of a log-mel record, 1% of a waveform one. Index version 2
marks records that carry it (the feature's `loudness_block`); version 1 records are still read,
and evaluated on every window.

Splits are decided per track by a hash of its ID (BLAKE2b -> a bucket in [0, 100)), not by file
order, so a track never moves between train and test when the corpus grows. Within a split,
tracks are ordered by the same hash (a fixed pseudo-random order, like the original's shuffle
before writing, but reproducible) and cut into contiguous, equally sized shards.

Builds are resumable: each shard is written under a temp name (`orpheus.io`) and renamed
only once complete, together with a small result file in `_progress/`; a re-run with the same
plan skips finished shards, a different plan starts over. The per-track transform
(`track_feature`: decode + feature) is the same function under the local process pool and under
Apache Beam, and one writer (`write_shard`) encodes and writes under both.

Writing needs no TensorFlow: `encode_example` writes the Example's protobuf fields by hand and
`write_shard` the TFRecord framing (CRC32C from `google-crc32c`), byte for byte what
`tf.train.Example.SerializeToString(deterministic=True)` and `tf.io.TFRecordWriter` write (GZIP
too: zlib with TensorFlow's settings). So the local pool's workers write whole shards, and pay
for neither TensorFlow's import nor sending features back to a single writer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orpheus import audio
from orpheus.audio import AudioError, LogMelParams
from orpheus.errors import OrpheusError
from orpheus.io import atomic_path, write_json_atomic

FORMATS = ("log-mel", "waveform")
SPLIT_NAMES = ("train", "valid", "test")
INDEX_FILE = "index.json"
PROGRESS_DIR = "_progress"
INDEX_VERSION = 2  # 2: Examples carry `loudness` and `samples`
READABLE_VERSIONS = (1, 2)
TRACKS_PER_SHARD = 500  # default shard size: ~180 MB of log-mel, ~480 MB of waveform
SHARD_RE = re.compile(r"^(train|valid|test)-\d{5}-of-\d{5}\.tfrecord(\.gz)?$")
UNTAGGED, UNDECODABLE = "untagged", "undecodable"
# What a pool worker needs, imported once by the pool's fork server (no TensorFlow).
PRELOAD = ("orpheus.records", "orpheus.audio", "soundfile", "soxr", "librosa.feature.spectral")


@dataclass(frozen=True)
class FeatureSpec:
    """What one Example's `audio` holds: the format and the (log-mel) parameters."""

    format: str = "log-mel"
    params: LogMelParams = LogMelParams()

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise OrpheusError(
                f"unknown format '{self.format}'", hint=f"choose one of: {', '.join(FORMATS)}"
            )

    @property
    def sample_rate(self) -> int:
        return self.params.sample_rate

    @property
    def ndim(self) -> int:
        return 2 if self.format == "log-mel" else 1

    @property
    def step_shape(self) -> tuple[int, ...]:
        """One time step's shape: (n_mels,) for log-mel, () for waveform."""
        return (self.params.n_mels,) if self.format == "log-mel" else ()

    def compute(self, path: str | Path) -> np.ndarray:
        """Decode `path` and compute the feature (float32) with the project's one decoder."""
        return self.compute_with_loudness(path)[0]

    def compute_with_loudness(self, path: str | Path) -> tuple[np.ndarray, audio.Loudness]:
        """The feature and the loudness per block (`audio.Loudness`, the input of predict's
        silence rule) of `path`, from one decode at the spec's rate."""
        y = audio.load(path, self.sample_rate)
        loudness = audio.Loudness()
        loudness.push(y)
        return (audio.log_mel(y, self.params) if self.format == "log-mel" else y), loudness

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            **self.params.to_dict(),
            "dtype": "float16",
            "loudness_block": audio.LOUDNESS_BLOCK,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureSpec:
        keys = ("sample_rate", "n_fft", "hop_length", "n_mels")
        return cls(d["format"], LogMelParams(**{k: int(d[k]) for k in keys}))


@dataclass(frozen=True)
class Track:
    """One row to encode: its ID, the audio file, and its tags as vocabulary indices."""

    tid: str
    path: str
    tags: tuple[int, ...]


@dataclass(frozen=True)
class Shard:
    """One output file: its name, its split and its tracks in write order."""

    file: str
    split: str
    tracks: tuple[Track, ...]


@dataclass
class Plan:
    """Everything that determines a build's output, except the audio bytes themselves."""

    spec: FeatureSpec
    compression: str | None
    vocabulary: list[str]
    popularity: dict[str, int]
    split: list[float]
    shards: list[Shard]
    untagged: list[str] = field(default_factory=list)

    @property
    def n_tracks(self) -> int:
        return sum(len(s.tracks) for s in self.shards)

    @property
    def digest(self) -> str:
        """A fingerprint of the plan; a resumed build continues only under the same digest."""
        h = hashlib.blake2b(digest_size=16)
        head = [self.spec.to_dict(), self.compression, self.vocabulary, self.split]
        h.update(json.dumps(head).encode())
        for s in self.shards:
            h.update(f"\n{s.file}\t{s.split}".encode())
            for t in s.tracks:
                h.update(f"\n{t.tid}\t{t.path}\t{','.join(map(str, t.tags))}".encode())
        return h.hexdigest()


@dataclass(frozen=True)
class ShardResult:
    """What writing one shard produced (also stored as `_progress/<file>.json`)."""

    file: str
    split: str
    tids: list[str]
    undecodable: list[str]
    seconds: float

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "split": self.split,
            "tids": self.tids,
            "count": len(self.tids),
            "undecodable": self.undecodable,
            "seconds": self.seconds,
        }


# -- split and plan ---------------------------------------------------------------------------


def track_hash(tid: str) -> int:
    """A stable 64-bit hash of a track ID (BLAKE2b), the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(tid.encode("utf-8"), digest_size=8).digest(), "big")


def split_of(tid: str, split: Sequence[float]) -> str:
    """The split of a track: its hash bucket in [0, 100) against the cumulative percentages."""
    bucket = (track_hash(tid) % 10000) / 100.0
    edge = 0.0
    for name, pct in zip(SPLIT_NAMES, split, strict=False):
        edge += pct
        if bucket < edge:
            return name
    return SPLIT_NAMES[len(split) - 1]


def check_split(split: Sequence[float]) -> list[float]:
    values = list(split)
    if not 1 <= len(values) <= 3 or any(v < 0 for v in values) or abs(sum(values) - 100) > 1e-9:
        raise OrpheusError(
            f"split must be 1 to 3 non-negative percentages adding up to 100, got {values}"
        )
    return [float(v) for v in values]


def plan(
    tracks: Iterable[tuple[str, str | Path]],
    tags: Mapping[str, Sequence[str]],
    vocabulary: Sequence[str],
    popularity: Mapping[str, int],
    *,
    spec: FeatureSpec = FeatureSpec(),
    split: Sequence[float] = (80, 10, 10),
    shards: int | None = None,
    compression: str | None = None,
    assigned: Mapping[str, str] | None = None,
) -> Plan:
    """Decide which track goes into which shard of which split.

    `tracks` are (track ID, audio path) pairs; `tags` maps a track ID to its clean tag names.
    Tracks without a tag in `vocabulary` are left out (counted as untagged). `shards` is the
    total number of files, about; each non-empty split gets at least one, in proportion to its
    tracks; None means one per TRACKS_PER_SHARD tracks. `assigned` gives tracks their split
    (a dataset's split files, or by artist: `orpheus.labels.splits`); the others, and those
    assigned to a split that `split` leaves out, go by their hash.
    """
    split = check_split(split)
    if shards is not None and shards < 1:
        raise OrpheusError(f"--shards must be at least 1, got {shards}")
    if compression not in (None, "GZIP"):
        raise OrpheusError(f"unknown compression '{compression}'", hint="use GZIP or none")
    if not vocabulary:
        raise OrpheusError("the clean tag vocabulary is empty", hint="run `orpheus tags clean`")
    column = {name: i for i, name in enumerate(vocabulary)}
    by_split: dict[str, list[tuple[int, Track]]] = {name: [] for name in SPLIT_NAMES[: len(split)]}
    untagged: list[str] = []
    seen: set[str] = set()
    n_rows = 0
    for tid, path in tracks:
        n_rows += 1
        if tid in seen:
            continue
        seen.add(tid)
        idx = tuple(sorted({column[t] for t in tags.get(tid, ()) if t in column}))
        if not idx:
            untagged.append(tid)
            continue
        name = (assigned or {}).get(tid)
        name = name if name in by_split else split_of(tid, split)
        by_split[name].append((track_hash(tid), Track(tid, str(path), idx)))
    if n_rows == 0:
        raise OrpheusError("the track list is empty: nothing to write")
    n_tagged = len(seen) - len(untagged)
    if n_tagged == 0:
        raise OrpheusError(
            f"none of the {len(seen)} tracks has a clean tag",
            hint="check that the clean tag db matches the track list (`orpheus tags clean`)",
        )
    total = shards if shards is not None else math.ceil(n_tagged / TRACKS_PER_SHARD)
    out: list[Shard] = []
    for name, rows in by_split.items():
        if not rows:
            continue
        rows.sort(key=lambda r: (r[0], r[1].tid))
        k = min(len(rows), max(1, round(total * len(rows) / n_tagged)))
        for i in range(k):
            chunk = rows[i * len(rows) // k : (i + 1) * len(rows) // k]
            ext = ".tfrecord.gz" if compression else ".tfrecord"
            out.append(Shard(f"{name}-{i:05d}-of-{k:05d}{ext}", name, tuple(t for _, t in chunk)))
    pop = {t: int(popularity.get(t, 0)) for t in vocabulary}
    return Plan(spec, compression, list(vocabulary), pop, split, out, sorted(untagged))


# -- Example encode / decode ------------------------------------------------------------------


def encode_example(
    tid: str,
    feature: np.ndarray,
    tags: Sequence[int],
    n_tags: int,
    loudness: audio.Loudness | None = None,
) -> bytes:
    """A serialised tf.train.Example: float16 audio bytes + shape, multi-hot tags, and the
    loudness per block (float32 energy bytes + the sample count; None: an Example as index
    version 1 wrote it, without them).

    Written field by field, without TensorFlow: the bytes TensorFlow's deterministic
    serialisation gives (map entries sorted by key; int64 lists packed).
    """
    arr = np.asarray(feature, dtype="<f2")
    hot = np.zeros(n_tags, dtype=np.uint8)  # 0/1: each packed varint is that one byte
    hot[list(tags)] = 1
    features = {
        "audio": _field(1, _field(1, arr.tobytes())),
        "shape": _field(3, _field(1, b"".join(map(_varint, arr.shape))) if arr.ndim else b""),
        "tags": _field(3, _field(1, hot.tobytes()) if n_tags else b""),
        "tid": _field(1, _field(1, tid.encode("utf-8"))),
    }
    if loudness is not None:
        energy = loudness.energy().astype("<f4")
        features["loudness"] = _field(1, _field(1, energy.tobytes()))
        features["samples"] = _field(3, _field(1, _varint(loudness.samples)))
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, value))
        for key, value in sorted(features.items())
    )
    return _field(1, entries)


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint (an int64 below zero takes its 64-bit two's complement)."""
    n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): a message, bytes or a packed list."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def decode_example(serialized: bytes, loudness_block: int = audio.LOUDNESS_BLOCK) -> dict:
    """Decode one Example to numpy: tid (str), audio (float32, shaped), tags (int64 multi-hot),
    loudness (`audio.Loudness` of blocks of `loudness_block`; None in a version 1 Example)."""
    import tensorflow as tf

    f = tf.train.Example.FromString(serialized).features.feature
    shape = tuple(f["shape"].int64_list.value)
    raw = np.frombuffer(f["audio"].bytes_list.value[0], dtype="<f2")
    loudness = None
    if "loudness" in f:
        energy = np.frombuffer(f["loudness"].bytes_list.value[0], dtype="<f4")
        samples = f["samples"].int64_list.value[0]
        loudness = audio.Loudness.from_energy(energy, samples, loudness_block)
    return {
        "tid": f["tid"].bytes_list.value[0].decode("utf-8"),
        "audio": raw.reshape(shape).astype(np.float32),
        "tags": np.asarray(f["tags"].int64_list.value, dtype=np.int64),
        "loudness": loudness,
    }


def read_records(path: str | Path, compression: str | None = None) -> Iterable[bytes]:
    """The serialised Examples of one shard, in file order."""
    import tensorflow as tf

    for rec in tf.data.TFRecordDataset(str(path), compression_type=compression or ""):
        yield rec.numpy()


class DamagedShard(OrpheusError):
    """A shard of a finished build is missing or cannot be read back (`check_shards`)."""


def check_shards(records_dir: str | Path, index: Mapping, split: str | None = None) -> None:
    """Read every shard of `split` (default: all) whole; raise `DamagedShard` naming the first
    that is missing or damaged: a bad checksum or torn end, or an Example that does not decode
    to the build's feature (its shape, or loudness that cannot cover its length).

    tf.data's own errors say "corrupted record at 1234" without the file, so the datasets call
    this when their iterator fails (`naming_damaged_shards`); it reads the whole split.
    """
    import tensorflow as tf

    feature = spec_of(index).step_shape
    block = loudness_block(index) or audio.LOUDNESS_BLOCK
    for shard in index["shards"]:
        if split is not None and shard["split"] != split:
            continue
        path = Path(records_dir) / shard["file"]
        if not path.is_file():
            raise DamagedShard(
                f"{path}: TFRecord shard missing",
                hint=f"rebuild the TFRecords with `{rebuild_command(index)}`",
            )
        try:
            for n, raw in enumerate(read_records(path, index.get("compression"))):
                shape = decode_example(raw, block)["audio"].shape
                if shape[1:] != feature:
                    raise ValueError(
                        f"Example {n} has shape {shape}, the build's is (*, {feature})"
                    )
        except (tf.errors.OpError, ValueError, KeyError, IndexError) as exc:
            raise DamagedShard(
                f"{path}: damaged TFRecord shard ({_reason(exc)})",
                hint=f"delete it, then rebuild the TFRecords with `{rebuild_command(index)}`",
            ) from None


def _reason(exc: Exception) -> str:
    """An error's first line without TensorFlow's op decorations, e.g. "corrupted record at 74203"
    from "{{function_node __wrapped__IteratorGetNext...}} corrupted record at 74203 [Op:...]"."""
    text = str(getattr(exc, "message", None) or exc).splitlines()[0]
    return re.sub(r"\s*\[Op:.*$", "", re.sub(r"^\{\{.*?\}\}\s*", "", text)).strip()


@contextlib.contextmanager
def naming_damaged_shards(records_dir: str | Path, index: Mapping, split: str | None = None):
    """Turn a tf.data failure while reading these records into `check_shards`' one-line error
    naming the shard; a failure it cannot pin on a shard propagates as it was."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        check_shards(records_dir, index, split)
        raise


# -- the per-track transform and the shard writer ---------------------------------------------


def track_feature(track: Track, spec: FeatureSpec) -> tuple[np.ndarray, audio.Loudness] | None:
    """The per-track transform of every runner: decode + feature, as stored (float16), and the
    loudness per block.

    None when the file cannot be decoded (the track is counted as undecodable, not fatal).
    """
    try:
        feature, loudness = spec.compute_with_loudness(track.path)
    except AudioError:
        return None
    return feature.astype("<f2"), loudness


def write_shard(
    out_dir: str | Path,
    shard: Shard,
    spec: FeatureSpec,
    n_tags: int,
    compression: str | None,
    on_track: Callable[[int], None] | None = None,
) -> ShardResult:
    """Compute, encode and write a shard's tracks atomically (temp name, then rename).

    The result file in `_progress/` is renamed into place before the shard, so a finished
    shard always has its result; a killed writer leaves only temp files behind.
    """
    out = Path(out_dir)
    start = time.perf_counter()
    tids: list[str] = []
    bad: list[str] = []
    with atomic_path(out / shard.file) as tmp:
        with _tfrecord_file(tmp, compression) as write:
            for track in shard.tracks:
                computed = track_feature(track, spec)
                if computed is None:
                    bad.append(track.tid)
                else:
                    feature, loudness = computed
                    write(encode_example(track.tid, feature, track.tags, n_tags, loudness))
                    tids.append(track.tid)
                if on_track is not None:
                    on_track(1)
        result = ShardResult(shard.file, shard.split, tids, bad, time.perf_counter() - start)
        write_json_atomic(out / PROGRESS_DIR / f"{shard.file}.json", result.to_dict(), indent=1)
    return result


@contextlib.contextmanager
def _tfrecord_file(path: Path, compression: str | None) -> Iterator[Callable[[bytes], None]]:
    """A `write(record)` that frames records as TFRecordWriter does.

    Each record: its length (uint64, little-endian), the length's masked CRC32C, the data, the
    data's masked CRC32C. GZIP is one zlib stream with TensorFlow's settings (gzip header,
    default level, memLevel 9), so the compressed bytes match TensorFlow's too.
    """
    z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 31, 9) if compression else None
    with open(path, "wb") as fh:

        def put(data: bytes) -> None:
            fh.write(z.compress(data) if z is not None else data)

        def write(record: bytes) -> None:
            length = len(record).to_bytes(8, "little")
            put(length + _masked_crc32c(length))
            put(record)
            put(_masked_crc32c(record))

        yield write
        if z is not None:
            fh.write(z.flush())


def _masked_crc32c(data: bytes) -> bytes:
    """TFRecord's checksum: CRC32C rotated right by 15 bits plus a constant, little-endian."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF).to_bytes(4, "little")


# -- runners ----------------------------------------------------------------------------------


def _run_local(
    out_dir: Path,
    todo: list[Shard],
    spec: FeatureSpec,
    n_tags: int,
    compression: str | None,
    workers: int,
    on_track: Callable[[int], None],
) -> None:
    """Write the shards: here when 1 worker, else each in a pool worker, whole.

    A worker computes, encodes and writes its shard, so nothing but track counts travels back;
    shards are handed out largest first, so the last one to finish is a small one. A build
    uses at most one worker per shard: `--shards` at least the number of cores keeps them busy.
    """
    if workers <= 1 or len(todo) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):  # one core: a 2nd BLAS thread only spins
            for shard in todo:
                write_shard(out_dir, shard, spec, n_tags, compression, on_track)
        return
    from orpheus import pool

    queue = pool.simple_queue()  # track counts from the workers, None to stop the reader
    reader = threading.Thread(target=_forward, args=(queue, on_track), daemon=True)
    reader.start()
    order = sorted(todo, key=lambda s: -len(s.tracks))
    try:
        with pool.executor(min(workers, len(todo)), PRELOAD, _set_progress, (queue,)) as ex:
            futures = [
                ex.submit(write_shard, out_dir, s, spec, n_tags, compression, _report)
                for s in order
            ]
            try:
                for future in as_completed(futures):
                    future.result()  # the first error stops the build
            finally:
                ex.shutdown(cancel_futures=True)
    finally:  # the reader drains the queue until every worker is gone, so none blocks on it
        queue.put(None)
        reader.join()
        queue.close()


def _forward(queue, on_track: Callable[[int], None]) -> None:
    while (n := queue.get()) is not None:
        on_track(n)


_progress_queue = None  # in a pool worker: where `_report` sends track counts


def _set_progress(queue) -> None:
    global _progress_queue
    _progress_queue = queue


def _report(n: int) -> None:
    _progress_queue.put(n)


def _run_beam(
    out_dir: Path,
    todo: list[Shard],
    spec: FeatureSpec,
    n_tags: int,
    compression: str | None,
    beam_options: str | None,
) -> None:
    """Write the shards as an Apache Beam pipeline: one element per shard, same writer."""
    from orpheus.beam import pipeline

    p = pipeline(beam_options)  # first: a missing Beam is a one-line error
    import apache_beam as beam

    with p:
        _ = (
            p
            | "Shards" >> beam.Create(todo)
            | "Spread" >> beam.Reshuffle()
            | "Write"
            >> beam.Map(
                _beam_write, out_dir=str(out_dir), spec=spec, n_tags=n_tags, compression=compression
            )
        )


def _beam_write(shard: Shard, out_dir: str, spec: FeatureSpec, n_tags: int, compression) -> str:
    """One Beam element: a whole shard, through the same writer as the local runner, with one
    BLAS thread as there: a 2nd thread splits the mel projection differently, and 1 value in
    ~10^5 then rounds to a neighbouring float16 (seen as a Beam-vs-local records mismatch)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return write_shard(out_dir, shard, spec, n_tags, compression).file


# -- build ------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    """The outcome of `build`: the index written, and how many shards this run wrote."""

    index: dict
    written: int
    reused: int

    @property
    def skipped(self) -> dict[str, int]:
        return self.index["skipped"]


def build(
    out_dir: str | Path,
    the_plan: Plan,
    *,
    workers: int = 1,
    runner: str = "local",
    beam_options: str | None = None,
    on_track: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> BuildResult:
    """Write the plan's shards into `out_dir` (resuming a killed build) and its `index.json`.

    `on_start(n)` is called once with the number of tracks still to encode, `on_track(k)` as
    tracks are done (for a progress bar).
    """
    if runner not in ("local", "beam"):
        raise OrpheusError(f"unknown runner '{runner}'", hint="use local or beam")
    if runner == "local" and workers > 1 and len(the_plan.shards) > 1:
        from orpheus import pool

        pool.start(PRELOAD)  # its imports run while finished shards are looked for
    out = Path(out_dir)
    progress_dir = out / PROGRESS_DIR
    digest = the_plan.digest
    files = [s.file for s in the_plan.shards]
    try:
        index = read_index(out, missing_ok=True)
    except OrpheusError:  # an unreadable index is rebuilt, not trusted
        index = None
    if (
        index is not None
        and index.get("plan") == digest
        and all((out / f).is_file() for f in files)
    ):
        return BuildResult(index, written=0, reused=len(files))
    _prepare_dir(out, progress_dir)
    marker = progress_dir / "plan.json"
    previous = json.loads(marker.read_text()) if marker.is_file() else {}
    if previous.get("plan") != digest:
        _clear(out, progress_dir)
        write_json_atomic(marker, {"plan": digest}, indent=1)
    for p in out.glob(".*.tmp"):  # left by a killed build
        p.unlink(missing_ok=True)
    for p in progress_dir.glob(".*.tmp"):
        p.unlink(missing_ok=True)
    todo = [
        s
        for s in the_plan.shards
        if not ((out / s.file).is_file() and (progress_dir / f"{s.file}.json").is_file())
    ]
    if on_start is not None:
        on_start(sum(len(s.tracks) for s in todo))
    n_tags = len(the_plan.vocabulary)
    try:
        if runner == "beam":
            _run_beam(out, todo, the_plan.spec, n_tags, the_plan.compression, beam_options)
        else:
            count = on_track or (lambda _n: None)
            _run_local(out, todo, the_plan.spec, n_tags, the_plan.compression, workers, count)
    except OSError as exc:
        raise OrpheusError(f"cannot write TFRecords in {out}: {exc.strerror or exc}") from None
    results = [json.loads((progress_dir / f"{f}.json").read_text()) for f in files]
    index = _index(the_plan, results)
    write_json_atomic(out / INDEX_FILE, index, indent=1)
    shutil.rmtree(progress_dir, ignore_errors=True)
    return BuildResult(index, written=len(todo), reused=len(files) - len(todo))


def _prepare_dir(out: Path, progress_dir: Path) -> None:
    """Create the output folders and prove they are writable, before any audio is decoded."""
    try:
        progress_dir.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe.{os.getpid()}.tmp"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        raise OrpheusError(
            f"cannot write TFRecords in {out}: {exc.strerror or exc}",
            hint="choose a writable workspace, or free some space",
        ) from None


def _clear(out: Path, progress_dir: Path) -> None:
    """Remove the shards, index and progress of an earlier, different build."""
    (out / INDEX_FILE).unlink(missing_ok=True)
    for p in out.iterdir():
        if SHARD_RE.match(p.name):
            p.unlink()
    for p in progress_dir.iterdir():
        p.unlink()


def _index(the_plan: Plan, results: list[dict]) -> dict:
    counts = {name: 0 for name in SPLIT_NAMES[: len(the_plan.split)]}
    undecodable: list[str] = []
    shards = []
    for r in results:
        counts[r["split"]] += r["count"]
        undecodable += r["undecodable"]
        shards.append({k: r[k] for k in ("file", "split", "count", "tids")})
    bad = set(undecodable)
    per_tag = np.zeros(len(the_plan.vocabulary), np.int64)
    for s in the_plan.shards:
        for t in s.tracks:
            if t.tid not in bad:
                per_tag[list(t.tags)] += 1
    return {
        "version": INDEX_VERSION,
        "plan": the_plan.digest,
        "feature": the_plan.spec.to_dict(),
        "compression": the_plan.compression,
        "split": dict(zip(counts, the_plan.split, strict=True)),
        "counts": counts,
        "tracks": sum(counts.values()),
        "skipped": {UNTAGGED: len(the_plan.untagged), UNDECODABLE: len(undecodable)},
        "skipped_tids": {UNTAGGED: the_plan.untagged, UNDECODABLE: sorted(undecodable)},
        "vocabulary": the_plan.vocabulary,
        "popularity": the_plan.popularity,
        "tag_counts": dict(zip(the_plan.vocabulary, per_tag.tolist(), strict=True)),
        "shards": shards,
    }


def read_index(records_dir: str | Path, *, missing_ok: bool = False) -> dict | None:
    """The `index.json` of a finished build (None, or an error, when there is none)."""
    path = Path(records_dir) / INDEX_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise OrpheusError(
            f"no TFRecords in {records_dir} (no {INDEX_FILE})",
            hint="run `orpheus tfrecords build`",
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise OrpheusError(f"cannot read {path}: {exc}") from None
    if index.get("version") not in READABLE_VERSIONS:
        raise OrpheusError(f"{path}: unknown index version", hint="rebuild the TFRecords")
    return index


def spec_of(index: Mapping) -> FeatureSpec:
    """The feature spec a build used."""
    return FeatureSpec.from_dict(index["feature"])


def loudness_block(index: Mapping) -> int | None:
    """Samples per loudness block in the build's Examples; None for records built before they
    stored loudness (index version 1), which the silence rule cannot be applied to."""
    block = index["feature"].get("loudness_block")
    return None if block is None else int(block)


def rebuild_command(index: Mapping) -> str:
    """The `orpheus tfrecords build` that rebuilds these records with the same feature."""
    spec = spec_of(index)
    words = ["orpheus tfrecords build", f"--format {spec.format}", f"--sr {spec.sample_rate}"]
    if spec.format == "log-mel":
        words.append(f"--mels {spec.params.n_mels}")
    if index.get("compression"):
        words.append("--gzip")
    return " ".join(words)
