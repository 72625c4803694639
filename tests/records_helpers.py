"""A tiny, real input set for the TFRecord tests: short MP3s, a silence table, a clean tag db."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from orpheus.records import split_of

VOCABULARY = ["rock", "pop", "jazz", "electronic", "female vocalists", "indie"]


@dataclass
class Corpus:
    audio_root: Path
    silence: Path
    db: Path
    tracks: list[tuple[str, str]]  # (tid, absolute path)
    tags: dict[str, list[str]]
    popularity: dict[str, int]


def tids_covering_splits(n: int, split=(80, 10, 10), per_split: int = 2) -> list[str]:
    """n MSD-shaped track IDs with at least `per_split` tracks in every split."""
    out: list[str] = []
    counts = {"train": 0, "valid": 0, "test": 0}
    i = 0
    while len(out) < n:
        tid = f"TRTEST{i:012d}"
        i += 1
        name = split_of(tid, split)
        short = [k for k, c in counts.items() if c < per_split]
        if len(out) + len(short) >= n and name not in short:
            continue
        counts[name] += 1
        out.append(tid)
    return out


def write_mp3(path: Path, seconds: float, seed: int, sr: int = 44100, channels: int = 2) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    noise = 0.05 * rng.standard_normal(t.size)
    y = (tone + noise).astype(np.float32)
    data = np.stack([y, 0.8 * y], axis=1) if channels == 2 else y
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, format="MP3")


def write_clean_db(path: Path, tags: dict[str, list[str]], vocabulary=VOCABULARY) -> None:
    """A db in the Last.fm schema: tids, tags, tid_tag with rowid references."""
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);"
        "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);"
    )
    con.executemany("INSERT INTO tags (tag) VALUES (?)", [(t,) for t in vocabulary])
    for tid, names in tags.items():
        rowid = con.execute("INSERT INTO tids (tid) VALUES (?)", (tid,)).lastrowid
        con.executemany(
            "INSERT INTO tid_tag VALUES (?, ?, 100.0)",
            [(rowid, vocabulary.index(t) + 1) for t in names],
        )
    con.commit()
    con.close()


def make_corpus(root: Path, n: int = 8, untagged: int = 1, broken: int = 0) -> Corpus:
    """n MP3 tracks of 1-4 s (44.1 kHz stereo), `untagged` without tags, `broken` not audio."""
    audio_root = root / "audio"
    tids = tids_covering_splits(n)
    rows, tracks, tags = [], [], {}
    for i, tid in enumerate(tids):
        digital_id = 1000 + i
        rel = f"{i % 10}/{i % 7}/{digital_id}.clip.mp3"
        path = audio_root / rel
        if i < broken:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"not an mp3 at all" * 100)
        else:
            write_mp3(path, seconds=1.0 + (i % 4), seed=i)
        rows.append({"track_id": tid, "track_7digitalid": digital_id, "file_path": rel})
        tracks.append((tid, str(path)))
        if i >= n - untagged:
            continue
        tags[tid] = [VOCABULARY[i % 3], VOCABULARY[3 + i % 3]] if i % 2 else [VOCABULARY[i % 6]]
    silence = root / "silence.parquet"
    pd.DataFrame(rows).to_parquet(silence)
    db = root / "clean_lastfm.db"
    write_clean_db(db, tags)
    popularity = {t: sum(t in v for v in tags.values()) for t in VOCABULARY}
    return Corpus(audio_root, silence, db, tracks, tags, popularity)


def make_workspace(root: Path, corpus: Corpus):
    """A workspace whose scan, silence and clean-tags artifacts are the corpus's files."""
    import shutil

    from orpheus.workspace import Workspace

    ws = Workspace.create(root)
    (root / "data").mkdir(exist_ok=True)
    (root / "tags").mkdir(exist_ok=True)
    pd.DataFrame({"track_7digitalid": [0]}).to_parquet(root / "data/scan.parquet")
    shutil.copy(corpus.silence, root / "data/silence.parquet")
    shutil.copy(corpus.db, root / "tags/clean_lastfm.db")
    ws.register("scan", "data/scan.parquet", params={"audio_root": str(corpus.audio_root)})
    ws.register("silence", "data/silence.parquet", inputs={"scan": "scan"})
    ws.register("clean-tags", "tags/clean_lastfm.db")
    return ws
