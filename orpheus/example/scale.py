"""The scale corpus: MSD- and Last.fm-sized metadata (no audio) for the scale benchmarks.

A 1,000,000-row summary HDF5 with the real schema and a Last.fm-shaped tags db (~505k tagged
tracks, ~522k distinct tags, ~8.6M rows). Tag popularity is heavy-tailed like Last.fm's: the
head is the original genre list in its own popularity order (so the seed's 2000-count threshold
selects the same 404 tags), then the vocal-list tags and the example corpus's spelling variants
(counts between the sub-threshold and the threshold), then a long tail of rare tags, most used
once or twice. Everything is vectorised and streamed in blocks so it builds in minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from orpheus.errors import OrpheusError
from orpheus.example import metadata
from orpheus.example.lists import tag_lists
from orpheus.example.tags import REJECTED_SPELLINGS, VARIANTS, VOCAL_VARIANTS
from orpheus.io import staged_folder

BLOCK = 20_000
_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", np.uint8)


def build_scale_corpus(
    dest: Path,
    *,
    tracks: int = 1_000_000,
    lastfm_tracks: int = 505_000,
    tags: int = 522_000,
    rows: int = 8_600_000,
    seed: int = 0,
) -> dict:
    """Write `msd_summary_file.h5` and `lastfm_tags.db` into `dest`; return sizes and timings."""
    dest = Path(dest)
    if min(tracks, lastfm_tracks, tags, rows) <= 0 or lastfm_tracks > tracks:
        raise OrpheusError("scale corpus sizes must be positive, with lastfm_tracks <= tracks")
    with staged_folder(dest) as tmp:
        rng = np.random.default_rng([seed, 5])
        t0 = time.perf_counter()
        track_ids = _ids(rng, b"TR", tracks)
        _write_summary(tmp / "msd_summary_file.h5", track_ids, rng)
        t1 = time.perf_counter()
        tid_rows = np.sort(rng.choice(tracks, lastfm_tracks, replace=False))
        n_rows = _write_lastfm(tmp / "lastfm_tags.db", track_ids[tid_rows], tags, rows, rng)
        t2 = time.perf_counter()
    return {
        "tracks": tracks,
        "lastfm_tracks": lastfm_tracks,
        "tags": tags,
        "rows": n_rows,
        "summary_seconds": round(t1 - t0, 2),
        "lastfm_seconds": round(t2 - t1, 2),
        "seconds": round(t2 - t0, 2),
        "summary_bytes": (dest / "msd_summary_file.h5").stat().st_size,
        "lastfm_bytes": (dest / "lastfm_tags.db").stat().st_size,
    }


def _ids(rng: np.random.Generator, prefix: bytes, n: int) -> np.ndarray:
    """Unique MSD-style IDs: prefix + 16 of [A-Z0-9], six of them the row number in base 36."""
    codes = rng.integers(0, 36, (n, 16), dtype=np.uint8)
    k = np.arange(n)
    for pos in range(9, 3, -1):
        codes[:, pos] = k % 36
        k = k // 36
    chars = _ALPHABET[codes].view("S16").ravel()
    return np.char.add(prefix, chars)


def _write_summary(path: Path, track_ids: np.ndarray, rng: np.random.Generator) -> None:
    n = len(track_ids)
    song_ids = _ids(rng, b"SO", n)
    d7 = rng.permutation(9_000_000)[:n] + 1_000_000

    def blocks() -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, n, BLOCK):
            stop = min(n, start + BLOCK)
            k = stop - start
            t = metadata.empty_tables(k)
            meta, ana, mb = t["metadata/songs"], t["analysis/songs"], t["musicbrainz/songs"]
            idx = np.arange(start, stop)
            meta["track_7digitalid"] = d7[start:stop]
            meta["song_id"] = song_ids[start:stop]
            meta["artist_name"] = np.char.add(b"Artist ", (idx // 10).astype("S7"))
            meta["title"] = np.char.add(b"Song ", idx.astype("S7"))
            meta["release"] = np.char.add(b"Album ", (idx // 12).astype("S7"))
            meta["artist_familiarity"] = rng.uniform(0, 1, k)
            meta["song_hotttnesss"] = rng.uniform(0, 1, k)
            ana["track_id"] = track_ids[start:stop]
            ana["duration"] = rng.uniform(60, 600, k).round(5)
            ana["tempo"] = rng.uniform(50, 200, k).round(3)
            ana["analysis_sample_rate"] = 22050
            years = rng.integers(1950, 2011, k)
            mb["year"] = np.where(rng.random(k) < 0.48, 0, years)
            yield t

    metadata.write_summary(path, blocks(), n)


def tag_names(n: int) -> list[str]:
    """Tag names in popularity order: the genre list, vocal lists, variants, then a long tail."""
    lists = tag_lists()
    head = list(lists.genre_order)
    seen = set(head)
    mid: list[str] = []
    extra = [*sum(lists.vocal_kept.values(), ()), *sum(VARIANTS.values(), ())]
    extra += [*sum(REJECTED_SPELLINGS.values(), ()), *sum(VOCAL_VARIANTS.values(), ())]
    for tag in extra:
        if tag not in seen:
            seen.add(tag)
            mid.append(tag)
    names = (head + mid)[:n]
    words = ("blue", "night", "road", "song", "love", "dark", "sky", "fire", "my", "best")
    names += [f"{words[k % 10]} {words[(k // 10) % 10]} {k}" for k in range(n - len(names))]
    return names


def tag_counts(n_tags: int, n_rows: int, n_tids: int, head: int) -> np.ndarray:
    """Distinct-track counts per tag rank: a power-law head, then a tail fitted to `n_rows`."""
    f = n_tids / 505_000
    r = np.arange(1, n_tags + 1, dtype=np.float64)
    a = np.log(50) / np.log(max(head, 2))
    head_c = np.minimum(100_000 * f * r[:head] ** -a, n_tids)
    tail_r = r[head:] / head
    top = 2000 * f * 0.99
    budget = n_rows - head_c.sum()

    def tail(b: float) -> np.ndarray:
        return np.maximum(1.0, np.floor(top * tail_r**-b))

    lo, hi = 0.01, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if tail(mid).sum() < budget else (mid, hi)
    return np.concatenate([np.floor(head_c), tail(hi)]).astype(np.int64)


def _write_lastfm(
    path: Path, tids: np.ndarray, n_tags: int, n_rows: int, rng: np.random.Generator
) -> int:
    head = min(len(tag_lists().genre_order), n_tags)
    counts = tag_counts(n_tags, n_rows, len(tids), head)
    tag = np.repeat(np.arange(n_tags, dtype=np.int64), counts)
    n = len(tids)
    tid = (rng.random(len(tag)) ** 1.5 * n).astype(np.int64)
    tid[: min(n, len(tag))] = rng.permutation(n)[: len(tag)]
    key = np.unique(tid * n_tags + tag)  # one row per (track, tag), sorted by track
    for _ in range(4):  # redraw the tracks of collided pairs so each tag keeps its count
        short = counts - np.bincount(key % n_tags, minlength=n_tags)
        if not short.sum():
            break
        extra_tag = np.repeat(np.arange(n_tags, dtype=np.int64), short)
        extra_tid = rng.integers(0, n, len(extra_tag))
        key = np.unique(np.concatenate([key, extra_tid * n_tags + extra_tag]))
    tid, tag = key // n_tags + 1, key % n_tags + 1
    val = np.clip(np.floor(rng.random(len(key)) ** 2 * 101), 1, 100)

    def rows() -> Iterator[tuple[int, int, float]]:
        for s in range(0, len(key), 500_000):
            yield from zip(
                tid[s : s + 500_000].tolist(),
                tag[s : s + 500_000].tolist(),
                val[s : s + 500_000].tolist(),
                strict=True,
            )

    names = [t.decode() for t in tids.tolist()]
    metadata.write_lastfm(path, names, tag_names(n_tags), rows())
    return len(key)
