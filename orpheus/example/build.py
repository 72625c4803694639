"""Build the example corpus: plan, render the audio in parallel, write metadata, errata, truth.

Everything is written into a temporary sibling of the destination and renamed into place at the
end, so an interrupted or failed build leaves nothing half-written behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from orpheus.errors import OrpheusError
from orpheus.example import metadata
from orpheus.example.plan import (
    MP3_56K,
    MP3_80K_22K,
    MP3_96K,
    MP3_320K,
    PREVIEW_SECONDS,
    SHORT_SECONDS,
    SILENCE_CONFIG,
    Plan,
    Track,
    fill_expected,
    make_plan,
)
from orpheus.example.tags import VAL_THRESHOLD
from orpheus.io import staged_folder

# What `init --example` sets so that a model trains on this small corpus in a few CPU minutes:
# its 16 most popular clean tags less the decades (which leaves the styles and vocals: the
# decade cues are too subtle for ~140 training tracks and score at chance), 3 s windows, a
# smaller network (n_filters 8, 200 dense units, and a back end 64 filters wide instead of the
# paper's 512: at 512 the back end is most of a CPU training step, and ~140 training tracks score
# the same at 64, 128 or 512; figures in bench/RESULTS.md), 40 steps of 32 windows per epoch, 8
# epochs of one-cycle learning rate, and a 70/15/15 split. With 6 epochs at a constant rate and
# an 80/10/10 split, the best epoch was picked on 16 validation tracks and scored on 23 test
# tracks, one of them the only rnb (also funk, soul) track: macro PR-AUC ranged over 0.69-0.91
# between runs. 70/15/15 gives ~120 training, 25 validation and 35 test tracks (4 rnb), and
# 0.91-0.92 (README, "Results on the example corpus").
EXAMPLE_TRAINING_CONFIG = {
    "tags": {"top": 16, "without": ["00s", "90s", "80s", "70s", "60s"]},
    "model": {"n_filters": 8, "n_dense_units": 200, "n_backend_filters": 64},
    "model-training": {
        "window_length": 3,
        "batch_size": 32,
        "iterations": 40,
        "epochs": 8,
        "schedule": "one-cycle",
        "split": [70, 15, 15],
        "optimizer": {"name": "Adam", "learning_rate": 0.002},
    },
}
VERSION = 1
NOT_AUDIO = (
    "<html><head><title>404 Not Found</title></head>\n"
    "<body><h1>Not Found</h1><p>The requested preview is not available.</p></body></html>\n"
)


def build(
    dest: Path,
    *,
    tracks: int = 200,
    seed: int = 0,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the example corpus into `dest` (absent or empty) and return its truth dict."""
    dest = Path(dest)
    if tracks <= 0:
        raise OrpheusError(f"--tracks must be positive, got {tracks}")
    with staged_folder(dest) as tmp:
        truth = _build_into(tmp, tracks, seed, workers, progress)
    return truth


def _build_into(
    root: Path,
    n: int,
    seed: int,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> dict:
    plan = make_plan(n, seed)
    fill_expected(plan)
    jobs = _jobs(plan, root / "7digital")
    _run_jobs(jobs, workers, progress)
    _write_summary(root / "msd_summary_file.h5", plan)
    _write_lastfm(root / "lastfm_tags.db", plan)
    _write_errata(root, plan)
    truth = _truth(plan)
    (root / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return truth


def _jobs(plan: Plan, audio_root: Path) -> list[dict]:
    """One job per distinct audio file (two ambiguous rows share one)."""
    jobs: dict[str, dict] = {}
    for t in [*plan.tracks, *plan.orphans]:
        if t.file_path is None or t.file_path in jobs:
            continue
        fault = t.audio_fault()
        job = {
            "path": str(audio_root / t.file_path),
            "kind": "music",
            "style": t.style,
            "decade": t.decade,
            "vocals": t.vocals,
            "seconds": PREVIEW_SECONDS,
            "sr": t.sr,
            "channels": t.channels,
            "bit_rate": MP3_80K_22K if t.sr == 22050 else MP3_96K,
            "gaps": [],
            "truncate": None,
            "seed": [plan.seed, t.index if t.song_of is None else t.song_of, 2],
        }
        if fault == "empty-file":
            job["kind"] = "empty"
        elif fault == "not-audio":
            job["kind"] = "text"
        elif fault == "silent":
            job["kind"] = "silent"
        elif fault == "short-clip":
            job["seconds"], job["bit_rate"] = SHORT_SECONDS, MP3_320K
        elif fault == "truncated-short":  # ~10 s of 320 kbit/s left: long enough in bytes
            job["bit_rate"], job["truncate"] = MP3_320K, 400_000 + 17
        elif fault == "truncated-small":  # ~21 s of 56 kbit/s left: long enough in seconds
            job["bit_rate"], job["truncate"] = MP3_56K, 150_000 + 17
        elif fault == "silent-gaps":  # five 0.8 s gaps: 4 s in all, none longer than 1 s
            job["gaps"] = [(4.0 + 5.0 * k, 0.8) for k in range(5)]
        elif fault == "long-silent-gap":  # one 2 s gap
            job["gaps"] = [(12.0, 2.0)]
        jobs[t.file_path] = job
    return list(jobs.values())


def _run_jobs(
    jobs: list[dict], workers: int | None, progress: Callable[[int, int], None] | None
) -> None:
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    for job in jobs:
        Path(job["path"]).parent.mkdir(parents=True, exist_ok=True)
    done = 0
    if progress:
        progress(0, len(jobs))
    if workers == 1:
        for job in jobs:
            write_audio(job)
            done += 1
            if progress:
                progress(done, len(jobs))
        return
    import multiprocessing

    # spawn, not fork: the caller may hold TensorFlow or other threads that fork would copy.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in pool.imap_unordered(write_audio, jobs):
            done += 1
            if progress:
                progress(done, len(jobs))


def write_audio(job: dict) -> int:
    """Render, damage as planned, encode to MP3 and write one preview; returns its size."""
    from orpheus.example.encoding import write_mp3

    path = Path(job["path"])
    if job["kind"] == "empty":
        path.write_bytes(b"")
        return 0
    if job["kind"] == "text":
        path.write_text(NOT_AUDIO, encoding="ascii")
        return path.stat().st_size
    frames = int(round(job["seconds"] * job["sr"]))
    if job["kind"] == "silent":
        audio = np.zeros((frames, 2), np.float32)
    else:
        from orpheus.example.music import compose, render

        song = compose(job["style"], job["decade"], job["vocals"], job["seconds"], job["seed"])
        audio = render(song, job["seconds"], job["sr"])
        for start, length in job["gaps"]:
            audio[int(start * job["sr"]) : int((start + length) * job["sr"])] = 0.0
        fade = min(frames // 2, int(0.05 * job["sr"]))
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
        audio[:fade] *= ramp
        audio[frames - fade :] *= ramp[::-1]
    if job["channels"] == 1:
        audio = audio.mean(axis=1, keepdims=True)
    write_mp3(path, audio, job["sr"], job["bit_rate"])
    if job["truncate"] is not None:
        with open(path, "r+b") as f:
            f.truncate(job["truncate"])
    return path.stat().st_size


def _write_summary(path: Path, plan: Plan) -> None:
    rng = np.random.default_rng([plan.seed, 3])
    n = len(plan.tracks)
    tables = metadata.empty_tables(n)
    meta, ana, mb = tables["metadata/songs"], tables["analysis/songs"], tables["musicbrainz/songs"]
    artist_ids: dict[str, str] = {}
    for r, t in enumerate(plan.tracks):
        aid = artist_ids.setdefault(
            t.artist, f"AR{rng.integers(16**8):08X}{rng.integers(16**8):08X}"
        )
        meta[r] = _meta_row(t, aid, rng)
        ana["track_id"][r] = t.track_id.encode()
        ana["duration"][r] = t.duration
        ana["analysis_sample_rate"][r] = 22050
        ana["audio_md5"][r] = (f"{rng.integers(16**8):08x}" * 4).encode()
        ana["key"][r] = int(rng.integers(12))
        ana["mode"][r] = int(rng.integers(2))
        ana["tempo"][r] = round(float(rng.uniform(60, 190)), 3)
        ana["time_signature"][r] = 4
        ana["loudness"][r] = round(float(rng.uniform(-20, -4)), 3)
        ana["end_of_fade_in"][r] = round(float(rng.uniform(0, 2)), 3)
        ana["start_of_fade_out"][r] = round(t.duration - float(rng.uniform(2, 15)), 3)
        for field in ("key_confidence", "mode_confidence", "time_signature_confidence"):
            ana[field][r] = round(float(rng.uniform(0, 1)), 3)
        mb["year"][r] = t.year
    metadata.write_summary(path, tables)


def _meta_row(t: Track, artist_id: str, rng: np.random.Generator) -> tuple:
    row = np.zeros((), metadata.METADATA_SONGS)
    row["analyzer_version"] = b""
    row["artist_7digitalid"] = int(rng.integers(1000, 900_000))
    row["artist_familiarity"] = float(rng.uniform(0.3, 0.9))
    row["artist_hotttnesss"] = float(rng.uniform(0.2, 0.7))
    row["artist_id"] = artist_id.encode()
    row["artist_latitude"] = row["artist_longitude"] = np.nan
    row["artist_name"] = t.artist.encode()
    row["release"] = t.release.encode()
    row["release_7digitalid"] = int(rng.integers(10_000, 900_000))
    row["song_hotttnesss"] = float(rng.uniform(0, 1))
    row["song_id"] = t.song_id.encode()
    row["title"] = t.title.encode()
    row["track_7digitalid"] = t.d7
    return row.item()


def _write_lastfm(path: Path, plan: Plan) -> None:
    """Tracks in plan order; tags numbered by first appearance (rowids are the numbers)."""
    tids: list[str] = []
    tag_num: dict[str, int] = {}
    rows: list[tuple[int, int, float]] = []
    for t in plan.tracks:
        if t.index not in plan.tags.raw:
            continue
        tids.append(t.track_id)
        for tag, val in plan.tags.raw[t.index].items():
            num = tag_num.setdefault(tag, len(tag_num) + 1)
            rows.append((len(tids), num, val))
    metadata.write_lastfm(path, tids, list(tag_num), rows)


def _write_errata(root: Path, plan: Plan) -> None:
    by_id = {t.track_id: t for t in plan.tracks}
    groups = [(f"{by_id[ids[0]].artist} - {by_id[ids[0]].title}", ids) for ids in plan.dup_groups]
    metadata.write_duplicates(root / "msd_duplicates.txt", groups)
    lines = [
        metadata.mismatch_line(t.song_id, t.track_id, (artist, title), (t.artist, t.title))
        for t, artist, title in plan.mismatches
    ]
    (root / "sid_mismatches.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _truth(plan: Plan) -> dict:
    entries = []
    exp: dict = {
        "scan_ok": set(),
        "scan_rejects": {},
        "wrangle_keep": [],
        "wrangle_drops": {},
        "silence_keep": [],
        "silence_drops": {},
        "clean_tags": {},
    }
    for t in [*plan.tracks, *plan.orphans]:
        raw = plan.tags.raw.get(t.index, {})
        clean = plan.tags.clean.get(t.index, [])
        entries.append(
            {
                "track_id": t.track_id,
                "song_id": t.song_id,
                "track_7digitalid": t.d7,
                "file_path": t.file_path,
                "style": t.style,
                "decade": t.decade,
                "vocals": t.vocals,
                "tags": clean,
                "raw_tags": raw,
                "faults": t.faults,
                "expected": t.expected,
            }
        )
        e = t.expected
        if e["scan"] == "ok":
            exp["scan_ok"].add(t.d7)
        elif e["scan"]:
            exp["scan_rejects"][str(t.d7)] = e["scan"].split(":", 1)[1]
        key = t.track_id if t.track_id is not None else str(t.d7)
        if e["wrangle"] == "keep":
            exp["wrangle_keep"].append(key)
        elif e["wrangle"]:
            exp["wrangle_drops"][key] = e["wrangle"].split(":", 1)[1]
        if e["silence"] == "keep":
            exp["silence_keep"].append(key)
        elif e["silence"]:
            exp["silence_drops"][key] = e["silence"].split(":", 1)[1]
        if t.index in plan.tags.raw:
            exp["clean_tags"][key] = clean
    exp["scan_ok"] = sorted(exp["scan_ok"])
    for k in ("wrangle_keep", "silence_keep"):
        exp[k] = sorted(exp[k])
    return {
        "seed": plan.seed,
        "n_tracks": len(plan.tracks),
        "version": VERSION,
        "config": {
            "silence": dict(SILENCE_CONFIG),
            "tags-cleaning": {
                "threshold": plan.tags.threshold,
                "sub_threshold": plan.tags.sub_threshold,
                "val": VAL_THRESHOLD,
            },
            **EXAMPLE_TRAINING_CONFIG,
        },
        "tracks": entries,
        "expected": exp,
    }
