"""`orpheus tfrecords build` throughput (x realtime per core), 1 -> 2 worker scaling, bytes/track.

N 30-second 44.1 kHz stereo previews (hard links to a few rendered clips), written as log-mel
TFRecords by `orpheus.records.build` (TensorFlow already imported; the 2-worker run includes
the pool's start-up: spawned workers importing and warming up librosa). Baseline: what the
original `preprocessing.py` did per track, serially on the same files: `librosa.load(sr=None)`,
`librosa.resample` to 16 kHz (librosa's default resampler, soxr_hq in librosa 0.11; the 2019
original used the slower resampy), `melspectrogram` (n_fft 2048, hop 512, 96 mels),
`power_to_db`, and a float-list Example written with TFRecordWriter.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _clips import SECONDS, previews  # noqa: E402

TRACKS = int(os.environ.get("ORPHEUS_BENCH_TFRECORDS_TRACKS", 160))
DATA = Path(os.environ.get("ORPHEUS_BENCH_DATA", Path(tempfile.gettempdir()) / "orpheus-bench"))
VOCABULARY = [f"tag{i}" for i in range(155)]


def build(root: Path, tracks: int = TRACKS) -> list[str]:
    """Absolute paths of `tracks` previews (hard links to a few rendered clips)."""
    return [str(p) for p in previews(root, tracks, distinct=8, seed=2)]


def _tracks(paths: list[str]) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    tids = [f"TRBENCH{i:011d}" for i in range(len(paths))]
    tags = {tid: [VOCABULARY[i % 155], VOCABULARY[(7 * i) % 155]] for i, tid in enumerate(tids)}
    return list(zip(tids, paths, strict=True)), tags


def float_list_example(tid: str, feature: np.ndarray, hot: np.ndarray) -> bytes:
    """The original's Example: audio as a FloatList, tags as an Int64List."""
    import tensorflow as tf

    feats = {
        "audio": tf.train.Feature(float_list=tf.train.FloatList(value=feature.ravel())),
        "tid": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tid.encode()])),
        "tags": tf.train.Feature(int64_list=tf.train.Int64List(value=hot)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def baseline(tracks: list[tuple[str, str]], out: Path) -> float:
    import librosa
    import tensorflow as tf

    hot = np.zeros(155, np.int64)
    hot[[3, 9]] = 1
    start = time.perf_counter()
    with tf.io.TFRecordWriter(str(out)) as writer:
        for tid, path in tracks:
            y, sr = librosa.load(path, sr=None)
            y = librosa.resample(y, orig_sr=sr, target_sr=16000)
            mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_mels=96))
            writer.write(float_list_example(tid, mel, hot))
    return time.perf_counter() - start


def _timed(tracks, tags, out: Path, workers: int) -> float:
    from orpheus import records

    plan = records.plan(tracks, tags, VOCABULARY, {}, split=[100], shards=8)
    start = time.perf_counter()
    result = records.build(out, plan, workers=workers)
    assert result.index["tracks"] == len(tracks) and result.written == len(plan.shards)
    return time.perf_counter() - start


def bytes_per_track(path: str) -> tuple[int, int, int, int]:
    """Serialised Example sizes: (log-mel float16, log-mel float list, waveform f16, f-list)."""
    from orpheus import records

    hot = np.zeros(155, np.int64)
    hot[[3, 9]] = 1
    sizes = []
    for fmt in ("log-mel", "waveform"):
        feature = records.FeatureSpec(fmt).compute(path)
        sizes.append(len(records.encode_example("TRBENCH00000000000", feature, [3, 9], 155)))
        sizes.append(len(float_list_example("TRBENCH00000000000", feature, hot)))
    return tuple(sizes)


def main() -> list[dict]:
    import shutil

    import librosa

    from orpheus import audio

    root = DATA / "tfrecords"
    paths = build(root / "audio")
    tracks, tags = _tracks(paths)
    audio.log_mel(audio.load(paths[0]))  # warm-up: numba, TensorFlow, page cache
    librosa.feature.melspectrogram(y=np.zeros(16000, np.float32), sr=16000)
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    n_base = max(16, len(tracks) // 3)
    base = baseline(tracks[:n_base], out / "baseline.tfrecord") * len(tracks) / n_base
    one = _timed(tracks, tags, out / "one", 1)
    two = _timed(tracks, tags, out / "two", 2)
    sizes = bytes_per_track(paths[0])
    total = len(tracks) * SECONDS
    return [
        {
            "figure": f"tfrecords build x realtime/core, log-mel, 1 worker ({len(tracks)} x 30 s)",
            "orpheus": total / one,
            "baseline": total / base,
            "baseline_is": "original: librosa load+resample, n_fft 2048, power_to_db, float list",
            "ratio": base / one,
            "goal": ">= 1.5",
        },
        {
            "figure": "tfrecords build x realtime per core, 2 workers (incl. pool start-up)",
            "orpheus": total / two / 2,
            "baseline": total / one,
            "baseline_is": "orpheus, 1 worker",
            "ratio": (total / two / 2) / (total / one),
            "goal": "reported",
        },
        {
            "figure": "tfrecords scaling 1 -> 2 workers (speed-up)",
            "orpheus": one / two,
            "baseline": 1.0,
            "baseline_is": "1 worker",
            "ratio": one / two,
            "goal": "close to 2 on 2 free cores",
        },
        {
            "figure": "bytes per 30 s track, log-mel float16 vs float list",
            "orpheus": sizes[0],
            "baseline": sizes[1],
            "baseline_is": "same array as a FloatList Example",
            "ratio": sizes[1] / sizes[0],
            "goal": "about 2x smaller or better",
        },
        {
            "figure": "bytes per 30 s track, waveform float16 vs float list",
            "orpheus": sizes[2],
            "baseline": sizes[3],
            "baseline_is": "same array as a FloatList Example",
            "ratio": sizes[3] / sizes[2],
            "goal": "about 2x smaller or better",
        },
    ]


if __name__ == "__main__":
    for row in main():
        print(row, file=sys.stdout)
