"""Synthetic 30 s MP3 previews shared by the benchmarks: a few rendered clips, hard-linked many
times, so a large folder costs little disk and no rendering time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SECONDS = 30.0
SAMPLE_RATE = 44100


def previews(root: Path, tracks: int, *, distinct: int, seed: int) -> list[Path]:
    """Paths of `tracks` stereo 44.1 kHz previews under `root` (reused if already there)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    for k in range(distinct):
        path = root / f"src-{k}.mp3"
        if path.exists():
            continue
        y = 0.3 * np.sin(2 * np.pi * (110 + 40 * k) * t) * (np.sin(2 * np.pi * 0.5 * t) > -0.8)
        y = y + 0.01 * rng.standard_normal(len(t))
        stereo = np.stack([y, y[::-1]], axis=1).astype(np.float32)
        sf.write(path, stereo, SAMPLE_RATE, format="MP3")
    paths = []
    for i in range(tracks):
        path = root / f"t{i:05d}.clip.mp3"
        if not path.exists():
            os.link(root / f"src-{i % distinct}.mp3", path)
        paths.append(path)
    return paths
