"""Silence analysis: non-silent intervals per track, their statistics, and the threshold filters.

Intervals are librosa's (`effects.split` on the mono mix at the native rate, `top_db` below the
track's peak, frame 2048, hop 512), computed on the audio decoded by `orpheus.audio`, the decoder
the TFRecords stage uses. Because librosa measures relative to the peak, digital silence would
count as one long non-silent interval; a track whose peak is below -100 dBFS therefore has no
non-silent interval and is reported `silent` (the original crashed on such tracks).

Statistics depend only on the audio and `top_db`; the filters only on the statistics. So the
statistics are cached per file (keyed by path, size, mtime and `top_db`), and changing a
threshold re-filters without decoding anything.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from orpheus.paths import confined, outside_message

UNDECODABLE = "undecodable"
SILENT = "silent"
TOO_SMALL = "too-small"
TOO_SHORT = "too-short"
TOTAL_SILENCE = "total-silence"
MAX_SILENCE = "max-silence"
REASONS = (UNDECODABLE, SILENT, TOO_SMALL, TOO_SHORT, TOTAL_SILENCE, MAX_SILENCE)

FRAME_LENGTH = 2048
HOP_LENGTH = 512
PEAK_FLOOR = 1e-5  # -100 dBFS: below this a track is digital silence
KEY = ["file_path", "file_size", "mtime_ns", "top_db"]
STAT_COLUMNS = {
    "file_path": "str",
    "file_size": "int64",
    "mtime_ns": "int64",
    "top_db": "float64",
    "sample_rate": "Int64",
    "length": "float64",
    "n_intervals": "Int64",
    "audio_start": "float64",
    "audio_end": "float64",
    "trim_length": "float64",
    "tot_silence": "float64",
    "max_silence": "float64",
    "non_silence_length": "float64",
    "silence_percentage": "float64",
    "error": "str",
}
STATS = [c for c in STAT_COLUMNS if c not in KEY]
NUMERIC = [c for c in STATS if c != "error"]
BATCH = 16  # tracks per task: ~0.5 s of 30 s clips, against ~1 ms of inter-process traffic
# What a worker needs, imported once by the pool's fork server (librosa's lazily loaded parts
# that `effects.split` and the decoder reach: ~2 s of CPU a worker would pay otherwise).
PRELOAD = (
    "orpheus.silence",
    "orpheus.audio",
    "soundfile",
    "librosa.core.audio",
    "librosa.core.spectrum",
    "librosa.feature.spectral",
    "librosa.effects",
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Thresholds:
    """The filters of the original `wrangler_silence.py`; 0 turns a filter off (not min_size)."""

    min_size: int = 200000
    filter_trim_length: float = 15.0
    filter_tot_silence: float = 3.0
    filter_max_silence: float = 1.0


def intervals(y: np.ndarray, sr: int, top_db: float = 60) -> np.ndarray:
    """Non-silent intervals of a mono signal, in seconds, shape (k, 2); empty for silence."""
    import librosa

    if y.size == 0 or float(np.max(np.abs(y))) < PEAK_FLOOR:
        return np.zeros((0, 2), dtype=np.float64)
    spans = librosa.effects.split(
        y, top_db=top_db, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH
    )
    return spans.astype(np.float64) / sr


def statistics(spans: np.ndarray) -> dict[str, float]:
    """The original's statistics from non-silent intervals (seconds); NaN when there are none."""
    if len(spans) == 0:
        nan = float("nan")
        return {c: nan for c in NUMERIC if c not in ("sample_rate", "length")} | {"n_intervals": 0}
    start, end = float(spans[0, 0]), float(spans[-1, 1])
    gaps = spans[1:, 0] - spans[:-1, 1]
    trim = end - start
    tot = float(gaps.sum())
    return {
        "n_intervals": len(spans),
        "audio_start": start,
        "audio_end": end,
        "trim_length": trim,
        "tot_silence": tot,
        "max_silence": float(gaps.max()) if len(gaps) else 0.0,
        "non_silence_length": trim - tot,
        "silence_percentage": 100.0 * tot / trim if trim > 0 else 0.0,
    }


def analyse(path: str | Path, top_db: float = 60) -> dict:
    """Decode one file and return its statistics, or `{"error": ...}` if it cannot be decoded."""
    from orpheus.audio import AudioError, read_audio, to_mono

    try:
        data, sr = read_audio(path)
    except AudioError as exc:
        return {"error": exc.message}
    y = to_mono(data)
    return {"sample_rate": sr, "length": len(y) / sr} | statistics(intervals(y, sr, top_db))


def _analyse_batch(root: str, items: list[tuple[str, int, int]], top_db: float) -> list[dict]:
    out = []
    for rel, size, mtime in items:
        path = confined(root, rel)
        row = {"error": outside_message(rel)} if path is None else analyse(path, top_db)
        out.append({"file_path": rel, "file_size": size, "mtime_ns": mtime, "top_db": top_db} | row)
    return out


@dataclass
class StatsResult:
    stats: pd.DataFrame  # one row per input track, columns STAT_COLUMNS
    cache: pd.DataFrame  # the updated cache (old rows kept, new rows added)
    computed: int
    reused: int


def compute_stats(
    root: str | Path,
    tracks: pd.DataFrame,
    *,
    top_db: float = 60,
    cache: pd.DataFrame | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    checkpoint: Callable[[list[dict]], None] | None = None,
) -> StatsResult:
    """Statistics for every `tracks.file_path` under `root`, decoding only files not in `cache`.

    Files are stat'ed now, so a file changed since the scan is re-analysed. `checkpoint`, if
    given, receives every batch of new rows (STAT_COLUMNS, at most `BATCH` tracks) as soon as
    it is computed, so the caller can save them and an interrupted run resumes where it stopped.
    """
    root = Path(root)
    if (workers or os.cpu_count() or 1) > 1:  # the pool's imports run while files are stat'ed
        from orpheus import pool

        pool.start(PRELOAD)
    wanted = _stat_files(root, tracks["file_path"])
    wanted["top_db"] = float(top_db)
    cache = _empty_stats() if cache is None or cache.empty else _typed(cache)
    cache = cache.drop_duplicates(KEY, keep="last")  # the saved cache plus a journal may overlap
    hit = wanted.merge(cache, on=KEY, how="inner").drop_duplicates(KEY)
    todo = wanted[~_key(wanted).isin(_key(hit))]
    items = list(
        zip(
            todo["file_path"].tolist(),
            todo["file_size"].tolist(),
            todo["mtime_ns"].tolist(),
            strict=True,
        )
    )
    new_rows: list[dict] = []
    total = len(wanted)
    if progress:
        progress(len(hit), total)
    for rows in _run(str(root), items, top_db, workers):
        new_rows.extend(rows)
        if checkpoint:
            checkpoint(rows)
        if progress:
            progress(len(hit) + len(new_rows), total)
    cache = _merge_cache(cache, new_rows)
    stats = wanted[KEY].merge(cache, on=KEY, how="left")
    return StatsResult(_typed(stats), cache, computed=len(items), reused=len(hit))


def _stat_files(root: Path, paths: pd.Series) -> pd.DataFrame:
    sizes, mtimes = [], []
    for rel in paths.tolist():
        try:
            path = confined(root, rel)
            if path is None:  # never stat a file outside the root either
                raise FileNotFoundError(rel)
            st = os.stat(path)
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
        except OSError:
            sizes.append(-1)
            mtimes.append(-1)
    return pd.DataFrame(
        {
            "file_path": pd.array(paths.tolist(), dtype="str"),
            "file_size": np.array(sizes, dtype="int64"),
            "mtime_ns": np.array(mtimes, dtype="int64"),
        }
    )


def _run(root: str, items: list, top_db: float, workers: int | None):
    """Batches of rows as they are done: here when 1 worker, else from one pool made once."""
    from orpheus import pool

    workers = workers or os.cpu_count() or 1
    size = max(1, min(BATCH, math.ceil(len(items) / (4 * workers))))  # >= ~4 tasks a worker
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    if workers <= 1 or len(batches) <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):  # one core, as each pool worker has
            for b in batches:
                yield _analyse_batch(root, b, top_db)
        return
    with pool.executor(min(workers, len(batches)), PRELOAD) as ex:
        futures = [ex.submit(_analyse_batch, root, b, top_db) for b in batches]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:  # an error, or a caller that stops early: do not run the batches left
            ex.shutdown(cancel_futures=True)


def filter_tracks(
    tracks: pd.DataFrame, stats: pd.DataFrame, thresholds: Thresholds
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the filters in the original's order; return (kept, dropped with reason, detail).

    `tracks` and `stats` are row-aligned. Order: undecodable, silent, too-small (size must be
    strictly greater than `min_size`), too-short (trim length >= T keeps), total-silence
    (<= T keeps), max-silence (<= T keeps). A threshold of 0 turns its filter off.
    """
    t = thresholds
    frame = tracks.reset_index(drop=True).copy()
    for col in STATS:
        frame[col] = stats[col].to_numpy()
    size = frame["file_size"].to_numpy()
    num = {c: frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in NUMERIC}
    tests = [
        (UNDECODABLE, frame["error"].notna().to_numpy(), frame["error"].fillna("").to_numpy()),
        (SILENT, num["n_intervals"] == 0, "no non-silent interval"),
        (TOO_SMALL, ~(size > t.min_size), f"file size <= {t.min_size} bytes"),
    ]
    if t.filter_trim_length:
        bad = ~(num["trim_length"] >= t.filter_trim_length)
        tests.append((TOO_SHORT, bad, f"trimmed length < {t.filter_trim_length:g} s"))
    if t.filter_tot_silence:
        bad = ~(num["tot_silence"] <= t.filter_tot_silence)
        tests.append((TOTAL_SILENCE, bad, f"total silence > {t.filter_tot_silence:g} s"))
    if t.filter_max_silence:
        bad = ~(num["max_silence"] <= t.filter_max_silence)
        tests.append((MAX_SILENCE, bad, f"longest silence > {t.filter_max_silence:g} s"))
    reason = np.full(len(frame), None, dtype=object)
    detail = np.full(len(frame), None, dtype=object)
    for name, bad, text in tests:
        hit = bad & (reason == None)  # noqa: E711 (element-wise)
        reason[hit] = name
        detail[hit] = text[hit] if isinstance(text, np.ndarray) else text
    dropped = reason != None  # noqa: E711
    kept = frame[~dropped].drop(columns=["error"]).reset_index(drop=True)
    rejects = frame[dropped].copy()
    rejects["reason"] = pd.array(reason[dropped], dtype="str")
    rejects["detail"] = pd.array(detail[dropped], dtype="str")
    return kept, rejects.reset_index(drop=True)


def counts(rejects: pd.DataFrame) -> dict[str, int]:
    """Tracks dropped per reason, in filter order."""
    got = rejects["reason"].value_counts()
    return {r: int(got.get(r, 0)) for r in REASONS}


def _merge_cache(cache: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return cache
    new = _typed(pd.DataFrame.from_records(rows))
    parts = [c for c in (cache, new) if not c.empty]
    merged = pd.concat(parts, ignore_index=True)
    return merged.drop_duplicates(KEY, keep="last").reset_index(drop=True)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reindex(columns=list(STAT_COLUMNS))
    return frame.astype(STAT_COLUMNS)


def _empty_stats() -> pd.DataFrame:
    return _typed(pd.DataFrame(columns=list(STAT_COLUMNS)))


def _key(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[KEY])
