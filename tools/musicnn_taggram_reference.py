"""Clips and musicnn 0.1.0's own taggrams of them, for `predict --windows musicnn` (run once).

`tests/test_tagger.py` checks that `Tagger.pretrained(...).tag_file(clip, windows="musicnn")`
gives the original extractor's mean taggram. Run with Orpheus's Python from the repository root:

    .venv/bin/python tools/musicnn_taggram_reference.py

It renders a few seconds of example-corpus music (`orpheus.example.music`, the composer and
FluidSynth renderer of the example corpus) per clip, writes them as MP3 at 44.1 kHz (stereo) and
22.05 kHz (mono) under tests/fixtures/musicnn_clips/, then runs this same file in musicnn's side
environment (`$ORPHEUS_MUSICNN_VENV`, default /tmp/musicnn-venv, made as bench/bench_predict.py
says: `pip install --no-deps musicnn==0.1.0`, then `tensorflow==2.21.* tf-keras==2.21.*
"numpy<2" librosa`; TF_USE_LEGACY_KERAS=1) with `--reference`, which calls
`musicnn.extractor.extractor(path, model=M, extract_features=False)` for MSD_musicnn and
MTT_musicnn and stores each taggram's mean over its patches in
tests/fixtures/musicnn_taggram_reference.npz.

Keys: `clips` (file names), per model `<model>/means` (clips, 50) and `<model>/patches` (patches
per clip), `labels/<model>`, and the side environment's `librosa`, `numpy`, `soundfile`,
`libsndfile` and `soxr` versions (its decoder: librosa.load through soundfile, soxr_hq).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# (file name, style, seed, seconds, sample rate, channels): 5-10 s, so 1-3 patches of 187 frames
# and dropped tails of different lengths; metal's 5.975 s make exactly 374 frames at 16 kHz, so
# its last patch ends with the last (zero-padded) frame
CLIPS = [
    ("rock-44k.mp3", "rock", 1, 10.0, 44100, 2),
    ("electronic-44k.mp3", "electronic", 2, 5.0, 44100, 2),
    ("jazz-22k.mp3", "jazz", 3, 9.5, 22050, 1),
    ("metal-22k.mp3", "metal", 4, 5.975, 22050, 1),
]
MODELS = ("MSD_musicnn", "MTT_musicnn")
ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "tests/fixtures/musicnn_clips"
OUT = ROOT / "tests/fixtures/musicnn_taggram_reference.npz"
VENV = Path(os.environ.get("ORPHEUS_MUSICNN_VENV", "/tmp/musicnn-venv"))


def write_clips() -> list[Path]:
    """Render and encode the clips (Orpheus's environment)."""
    import soundfile as sf

    from orpheus.example.music import compose, render

    FOLDER.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, style, seed, seconds, sr, channels in CLIPS:
        y = render(compose(style, "00s", "instrumental", seconds, [seed]), seconds, sr)
        y = y if channels == 2 else y.mean(axis=1)
        sf.write(str(FOLDER / name), y, sr, format="MP3", compression_level=0.9)
        paths.append(FOLDER / name)
    return paths


def reference(paths: list[str]) -> dict:
    """musicnn's mean taggrams (musicnn's side environment)."""
    import librosa
    import numpy as np
    import soundfile
    import soxr
    from musicnn import configuration as config
    from musicnn.extractor import extractor

    out = {
        "librosa": librosa.__version__,
        "numpy": np.__version__,
        "soundfile": soundfile.__version__,
        "libsndfile": soundfile.__libsndfile_version__,
        "soxr": soxr.__version__,
        "labels": {"MSD_musicnn": config.MSD_LABELS, "MTT_musicnn": config.MTT_LABELS},
    }
    for model in MODELS:
        taggrams = [extractor(p, model=model, extract_features=False)[0] for p in paths]
        out[model] = {
            "means": [t.astype(np.float64).mean(axis=0).tolist() for t in taggrams],
            "patches": [len(t) for t in taggrams],
        }
    return out


def main() -> None:
    import numpy as np

    paths = write_clips()
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [str(VENV / "bin/python"), __file__, "--reference", *map(str, paths)],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    ref = json.loads(done.stdout.strip().splitlines()[-1])
    arrays = {"clips": np.array([p.name for p in paths])}
    for model in MODELS:
        arrays[f"{model}/means"] = np.array(ref[model]["means"], dtype=np.float64)
        arrays[f"{model}/patches"] = np.array(ref[model]["patches"], dtype=np.int64)
        arrays[f"labels/{model}"] = np.array(ref["labels"][model])
    for key in ("librosa", "numpy", "soundfile", "libsndfile", "soxr"):
        arrays[key] = np.str_(ref[key])
    np.savez_compressed(OUT, **arrays)
    sizes = ", ".join(f"{p.name} {p.stat().st_size // 1000} kB" for p in paths)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size // 1000} kB) and {sizes}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reference"]:
        print(json.dumps(reference(sys.argv[2:])))
    else:
        main()
