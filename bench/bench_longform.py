"""Full-length songs: `orpheus predict`'s tagger vs the original musicnn 0.1.0 extractor.

A folder of ORPHEUS_BENCH_LONG_SONGS (default 20) songs of ORPHEUS_BENCH_LONG_SECONDS (default
200 s) each, 44.1 kHz stereo MP3, rendered by the example-corpus composer (cycling its styles),
tagged by both in the same run, warm (TensorFlow imported, model load included): tracks/s,
CPU-seconds per hour of audio, the realtime factor (seconds of audio per wall second), and
Orpheus's peak resident memory. The baseline runs in its side venv (see bench_predict.py).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_predict import DATA, STYLES, baseline, ensure_venv  # noqa: E402

SONGS = int(os.environ.get("ORPHEUS_BENCH_LONG_SONGS", 20))
SECONDS = float(os.environ.get("ORPHEUS_BENCH_LONG_SECONDS", 200))


def build_songs(folder: Path, n: int = SONGS, seconds: float = SECONDS) -> list[Path]:
    """n songs of `seconds` (cached: rebuilt only if the count or length differs)."""
    import soundfile as sf

    from orpheus.example.music import compose, render

    marker = folder / f".complete-{n}-{seconds:g}"
    paths = [folder / f"song-{i:03d}-{STYLES[i % len(STYLES)]}.mp3" for i in range(n)]
    if marker.exists():
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(paths):
        song = compose(STYLES[i % len(STYLES)], "00s", "instrumental", seconds, [100 + i])
        sf.write(str(path), render(song, seconds, 44100), 44100, format="MP3")
    marker.touch()
    return paths


def orpheus_tagging(paths: list[Path]) -> tuple[float, float, float]:
    """(wall s, CPU s, seconds of audio) to load msd-musicnn and tag every song, warm."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  (imported before the clock starts, as for the baseline)

    from orpheus.tagger import Tagger

    start, cpu = time.perf_counter(), time.process_time()
    tagger = Tagger.pretrained("msd-musicnn")
    audio_seconds = 0.0
    for _, result in tagger.tag_files(paths):
        assert hasattr(result, "taggram"), result
        audio_seconds += result.duration
    return time.perf_counter() - start, time.process_time() - cpu, audio_seconds


def main() -> list[dict]:
    paths = build_songs(DATA / "longform" / f"{SECONDS:g}s")
    python = ensure_venv()
    base_loop, base_cpu, _, _, _ = baseline(python, paths)
    wall, cpu, audio_seconds = orpheus_tagging(paths)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n, hours = len(paths), audio_seconds / 3600
    label = f"({n} x {SECONDS:g} s songs)"
    rows = [
        {"figure": f"long-form tracks/s, warm {label}", "orpheus": n / wall,
         "baseline": n / base_loop, "ratio": base_loop / wall, "goal": "reported"},
        {"figure": f"long-form CPU-s per hour of audio {label}", "orpheus": cpu / hours,
         "baseline": base_cpu / hours, "ratio": base_cpu / cpu, "goal": "reported"},
        {"figure": f"long-form realtime factor on this machine {label}",
         "orpheus": audio_seconds / wall, "baseline": audio_seconds / base_loop,
         "ratio": base_loop / wall, "goal": ">= 150x realtime on 2 cores"},
        {"figure": f"long-form peak RSS MB, Orpheus process {label}", "orpheus": peak_mb,
         "baseline": None, "ratio": None, "goal": "reported"},
    ]  # fmt: skip
    for row in rows:
        ratio = "" if row["ratio"] is None else f"  ratio {row['ratio']:.2f}"
        base = "" if row["baseline"] is None else f"  baseline {row['baseline']:.4g}"
        print(f"{row['figure']}: orpheus {row['orpheus']:.4g}{base}{ratio}  (goal {row['goal']})")
    return rows


if __name__ == "__main__":
    main()
