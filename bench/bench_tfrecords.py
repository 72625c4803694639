"""`orpheus tfrecords build`: x realtime per CPU-second, 1 -> 2 workers at two sizes, bytes/track.

N 30-second 44.1 kHz stereo previews (hard links to a few rendered clips), written as log-mel
TFRecords by `orpheus.records.build`, each run in a fresh process as a command is (imports, and
with 2 workers the pool's start-up, included; no TensorFlow: workers encode and write whole
shards). Figures are per CPU-second (parent and workers), which the load of a shared machine
does not change; the wall-clock speed-up is reported with the load average it ran under.
Baseline: what the original `preprocessing.py` did per track, serially on some of the files
(warm, imports left out): `librosa.load(sr=None)`,
`librosa.resample` to 16 kHz (librosa's default resampler, soxr_hq in librosa 0.11; the 2019
original used the slower resampy), `melspectrogram` (n_fft 2048, hop 512, 96 mels),
`power_to_db`, and a float-list Example written with TFRecordWriter.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _clips import SECONDS, previews  # noqa: E402
from _workers import load, run_fresh  # noqa: E402

TRACKS = int(os.environ.get("ORPHEUS_BENCH_TFRECORDS_TRACKS", 600))  # the larger size
SIZES = ((160, 8), (TRACKS, 16))  # (tracks, shards): a shard is one worker's task
BASELINE_TRACKS = 16
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
    """CPU seconds of the original per-track work on `tracks`, imports and warm-up left out."""
    import librosa
    import tensorflow as tf
    from threadpoolctl import threadpool_limits

    hot = np.zeros(155, np.int64)
    hot[[3, 9]] = 1
    librosa.feature.melspectrogram(y=librosa.load(tracks[0][1], sr=None)[0], sr=16000)
    start = _cpu()
    with threadpool_limits(1, user_api="blas"):  # as Orpheus runs: one BLAS thread a core
        with tf.io.TFRecordWriter(str(out)) as writer:
            for tid, path in tracks:
                y, sr = librosa.load(path, sr=None)
                y = librosa.resample(y, orig_sr=sr, target_sr=16000)
                mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_mels=96))
                writer.write(float_list_example(tid, mel, hot))
    return _cpu() - start


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(tracks, tags, shards: int, out: Path, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of a build, in a fresh process like the command."""
    code = (
        "from pathlib import Path\n"
        "from orpheus import records\n"
        f"tracks, tags = {tracks!r}, {tags!r}\n"
        f"plan = records.plan(tracks, tags, {VOCABULARY!r}, {{}}, split=[100], shards={shards})\n"
        f"result = records.build(Path({str(out)!r}), plan, workers={workers})\n"
        "assert result.index['tracks'] == len(tracks) and result.written == len(plan.shards)\n"
    )
    return run_fresh(code)


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

    root = DATA / "tfrecords"
    paths = build(root / "audio")
    tracks, tags = _tracks(paths)
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    base = baseline(tracks[:BASELINE_TRACKS], out / "baseline.tfrecord") / BASELINE_TRACKS
    rows = []
    for n, shards in SIZES:
        audio = n * SECONDS
        part = tracks[:n]
        one, cpu_one = _run(part, tags, shards, out / f"one-{n}", 1)
        two, cpu_two = _run(part, tags, shards, out / f"two-{n}", 2)
        rows += [
            {
                "figure": f"tfrecords build audio s per CPU-s, log-mel, 1 worker ({n} x 30 s)",
                "orpheus": audio / cpu_one,
                "baseline": SECONDS / base,
                "baseline_is": "original: librosa load, resample, mel, power_to_db, float list",
                "ratio": base * n / cpu_one,
                "goal": ">= 1.5",
            },
            {
                "figure": f"tfrecords 1 -> 2 workers, wall speed-up ({n} x 30 s, {shards} shards;"
                f" {load()})",
                "orpheus": one / two,
                "baseline": 1.0,
                "baseline_is": "1 worker",
                "ratio": one / two,
                "goal": ">= 1.7 at 600 tracks on 2 free cores",
            },
            {
                "figure": f"tfrecords audio s per CPU-s, 2 workers vs 1 ({n} x 30 s)",
                "orpheus": audio / cpu_two,
                "baseline": audio / cpu_one,
                "baseline_is": "1 worker",
                "ratio": cpu_one / cpu_two,
                "goal": "close to 1 (the pool wastes little CPU)",
            },
        ]
    sizes = bytes_per_track(paths[0])
    return rows + [
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
