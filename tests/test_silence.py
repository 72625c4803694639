"""Silence: intervals and statistics on real MP3s, the filters in order, and the stats cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from orpheus import silence as sil

SR = 22050


def write(path: Path, pieces: list[tuple[float, bool]]) -> Path:
    """An MP3 made of (seconds, loud?) pieces: a tone or digital silence."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for seconds, loud in pieces:
        n = int(seconds * SR)
        t = np.arange(n) / SR
        parts.append(0.5 * np.sin(2 * np.pi * 330 * t) if loud else np.zeros(n))
    y = np.concatenate(parts).astype(np.float32)
    sf.write(path, np.stack([y, y], axis=1), SR, format="MP3")
    return path


def test_statistics_from_intervals():
    spans = np.array([[0.5, 2.0], [2.5, 4.0], [6.0, 7.0]])
    s = sil.statistics(spans)
    assert s["audio_start"] == 0.5 and s["audio_end"] == 7.0
    assert s["trim_length"] == 6.5
    assert s["tot_silence"] == pytest.approx(2.5)
    assert s["max_silence"] == pytest.approx(2.0)
    assert s["non_silence_length"] == pytest.approx(4.0)
    assert s["silence_percentage"] == pytest.approx(100 * 2.5 / 6.5)
    one = sil.statistics(np.array([[0.0, 3.0]]))
    assert one["max_silence"] == 0.0 and one["tot_silence"] == 0.0
    assert sil.statistics(np.zeros((0, 2)))["n_intervals"] == 0


def test_analyse_finds_the_gap(tmp_path):
    path = write(tmp_path / "a.mp3", [(1.0, False), (3.0, True), (2.0, False), (3.0, True)])
    s = sil.analyse(path)
    assert s["n_intervals"] == 2
    assert s["audio_start"] == pytest.approx(1.0, abs=0.1)
    assert s["max_silence"] == pytest.approx(2.0, abs=0.15)
    assert s["trim_length"] == pytest.approx(8.0, abs=0.15)
    assert s["sample_rate"] == SR


def test_digital_silence_is_silent_not_a_crash(tmp_path):
    s = sil.analyse(write(tmp_path / "z.mp3", [(2.0, False)]))
    assert s["n_intervals"] == 0 and np.isnan(s["trim_length"])


def test_undecodable_file_is_reported(tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"junk" * 1000)
    assert "cannot decode" in sil.analyse(bad)["error"]


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "audio"
    specs = {
        "good.mp3": [(6.0, True)],
        "gappy.mp3": [(2.0, True), (1.5, False), (3.0, True)],
        "short.mp3": [(2.0, True)],
        "silent.mp3": [(3.0, False)],
    }
    for name, pieces in specs.items():
        write(root / name, pieces)
    (root / "broken.mp3").write_bytes(b"x" * 5000)
    names = ["good.mp3", "gappy.mp3", "short.mp3", "silent.mp3", "broken.mp3"]
    sizes = [(root / n).stat().st_size for n in names]
    tracks = pd.DataFrame({"track_id": [f"T{i}" for i in range(5)], "file_path": names})
    tracks["file_size"] = sizes
    return root, tracks


def reasons(rejects: pd.DataFrame) -> dict[str, str]:
    return dict(zip(rejects["file_path"], rejects["reason"], strict=True))


def test_filters_in_order_and_cache_reuse(corpus):
    root, tracks = corpus
    first = sil.compute_stats(root, tracks, workers=1)
    assert (first.computed, first.reused) == (5, 0)
    t = sil.Thresholds(min_size=0, filter_trim_length=4, filter_tot_silence=1, filter_max_silence=1)
    kept, rejects = sil.filter_tracks(tracks, first.stats, t)
    assert kept["file_path"].tolist() == ["good.mp3"]
    assert reasons(rejects) == {
        "gappy.mp3": "total-silence",
        "short.mp3": "too-short",
        "silent.mp3": "silent",
        "broken.mp3": "undecodable",
    }
    assert "trim_length" in kept.columns and "error" not in kept.columns

    # Only thresholds change: nothing is decoded again, and 0 turns filters off.
    again = sil.compute_stats(root, tracks, cache=first.cache, workers=1)
    assert (again.computed, again.reused) == (0, 5)
    loose = sil.Thresholds(
        min_size=0, filter_trim_length=0, filter_tot_silence=0, filter_max_silence=2
    )
    kept, rejects = sil.filter_tracks(tracks, again.stats, loose)
    assert kept["file_path"].tolist() == ["good.mp3", "gappy.mp3", "short.mp3"]
    assert set(reasons(rejects).values()) == {"silent", "undecodable"}


def test_size_filter_is_strict(corpus):
    root, tracks = corpus
    stats = sil.compute_stats(root, tracks, workers=1).stats
    good = int(tracks.loc[tracks.file_path == "good.mp3", "file_size"].iloc[0])
    t = sil.Thresholds(
        min_size=good, filter_trim_length=0, filter_tot_silence=0, filter_max_silence=0
    )
    _, rejects = sil.filter_tracks(tracks, stats, t)
    assert reasons(rejects)["good.mp3"] == "too-small"


def test_changed_file_or_top_db_is_reanalysed(corpus):
    root, tracks = corpus
    first = sil.compute_stats(root, tracks, workers=1)
    write(root / "short.mp3", [(5.0, True)])
    second = sil.compute_stats(root, tracks, cache=first.cache, workers=1)
    assert (second.computed, second.reused) == (1, 4)
    third = sil.compute_stats(root, tracks, cache=second.cache, top_db=40, workers=1)
    assert third.computed == 5


def test_parallel_matches_serial(corpus):
    root, tracks = corpus
    serial = sil.compute_stats(root, tracks, workers=1).stats
    parallel = sil.compute_stats(root, tracks, workers=2).stats
    pd.testing.assert_frame_equal(serial, parallel)


# -- the command ------------------------------------------------------------------------------


def test_silence_command_caches_statistics(tmp_path):
    from test_scan import orpheus
    from test_wrangle import make_workspace

    ws, _ = make_workspace(tmp_path, n=4, seconds=6.0)
    w = str(ws.root)
    assert orpheus("-w", w, "silence").exit_code == 2  # no wrangle yet: a one-line error
    assert orpheus("-w", w, "scan", "-j", "1").exit_code == 0
    assert orpheus("-w", w, "wrangle").exit_code == 0  # 2 of 4 kept

    flags = ["--min-size", "1000", "--filter-trim-length", "5", "-j", "1"]
    first = orpheus("-w", w, "silence", *flags)
    assert first.exit_code == 0, first.output
    assert "silence: 2 of 2 kept" in first.stdout and "decoded 2 tracks" in first.stderr
    kept = pd.read_parquet(ws.path("data/silence.parquet"))
    assert {"track_id", "file_path", "trim_length", "max_silence"} <= set(kept.columns)

    strict = orpheus("-w", w, "silence", "--min-size", "1000", "--filter-trim-length", "10")
    assert strict.exit_code == 0
    assert "decoded 0 tracks" in strict.stderr and "too-short" in strict.stdout
    rejects = pd.read_parquet(ws.path("data/silence_rejects.parquet"))
    assert rejects["reason"].tolist() == ["too-short", "too-short"]
    assert ws.entry("silence")["params"]["filter_trim_length"] == 10
    assert ws.entry("silence")["params"]["filter_max_silence"] == 1.0  # from config.json
    assert ws.state("silence") == "ok"

    bad = orpheus("-w", w, "silence", "--top-db", "0")
    assert bad.exit_code == 2 and "--top-db must be positive" in bad.stderr

    dup = Path(ws.config["paths"]["duplicates"])
    dup.write_text(dup.read_text() + "%2\n" + "TR" + "9" * 16 + "\n")
    assert ws.state("wrangle") == "stale" and ws.state("silence") == "stale"


# -- the example corpus: every planted fault caught by the right stage ------------------------


def test_example_corpus_matches_truth(example_corpus, tmp_path):
    import json

    from test_scan import orpheus

    from orpheus.commands.init import use_example
    from orpheus.workspace import Workspace

    truth = json.loads((example_corpus / "truth.json").read_text())
    expected = truth["expected"]
    ws = Workspace.create(tmp_path / "ws")
    use_example(ws, example_corpus, truth)
    w = str(ws.root)

    scan = orpheus("-w", w, "scan", "-j", "2")
    assert scan.exit_code == 0, scan.output
    table = pd.read_parquet(ws.path("data/scan.parquet"))
    rejects = pd.read_parquet(ws.path("data/scan_rejects.parquet"))
    assert sorted(table["track_7digitalid"]) == expected["scan_ok"]
    got = {str(k): v for k, v in zip(rejects["track_7digitalid"], rejects["reason"], strict=True)}
    assert got == expected["scan_rejects"]

    wrangle = orpheus("-w", w, "wrangle")
    assert wrangle.exit_code in (0, 1), wrangle.output
    kept = pd.read_parquet(ws.path("data/wrangle.parquet"))
    dropped = pd.read_parquet(ws.path("data/wrangle_rejects.parquet"))
    assert kept["track_id"].tolist() == expected["wrangle_keep"]
    keys = dropped["track_id"].where(dropped["track_id"].notna(), dropped["track_7digitalid"])
    got = {str(k): v for k, v in zip(keys, dropped["reason"], strict=True)}
    assert got == expected["wrangle_drops"]

    silence = orpheus("-w", w, "silence", "-j", "2")
    assert silence.exit_code == 0, silence.output
    kept = pd.read_parquet(ws.path("data/silence.parquet"))
    dropped = pd.read_parquet(ws.path("data/silence_rejects.parquet"))
    assert sorted(kept["track_id"]) == expected["silence_keep"]
    assert (
        dict(zip(dropped["track_id"], dropped["reason"], strict=True)) == expected["silence_drops"]
    )

    states = {name: ws.state(name) for name in ("scan", "wrangle", "silence")}
    assert states == {"scan": "ok", "wrangle": "ok", "silence": "ok"}


@pytest.mark.slow
def test_sigkill_during_silence_then_rerun_reuses_its_progress(example_corpus, tmp_path):
    import json
    import shutil

    from test_scan import assert_same_rows, kill_once_saved, orpheus, reused, saved_rows

    from orpheus.commands.init import use_example
    from orpheus.workspace import Workspace

    clean = Workspace.create(tmp_path / "clean")
    use_example(clean, example_corpus, json.loads((example_corpus / "truth.json").read_text()))
    for args in (["scan", "-j", "1"], ["wrangle"]):
        assert orpheus("-w", str(clean.root), *args).exit_code in (0, 1)
    killed = Workspace.open(shutil.copytree(clean.root, tmp_path / "killed"))
    cfg = killed.config
    cfg["silence"] |= {"checkpoint_tracks": 1, "checkpoint_seconds": 60}
    killed.save_config(cfg)
    journal = killed.path("data/silence.journal")
    tracks = len(pd.read_parquet(killed.path("data/wrangle.parquet")))

    kill_once_saved(["-w", killed.root, "silence", "-j", "1"], journal, tmp_path / "killed.log")
    json.loads((killed.root / "manifest.json").read_text())  # never half-written
    saved = saved_rows(journal)
    assert 0 < saved < tracks
    rerun = orpheus("-w", str(killed.root), "silence", "-j", "2")
    assert rerun.exit_code == 0, rerun.output
    assert reused(rerun.stderr) == saved  # every track the killed run measured, and only those
    assert not journal.exists()
    assert orpheus("-w", str(clean.root), "silence", "-j", "2").exit_code == 0

    for table in ("silence", "silence_rejects", "silence_stats"):
        assert_same_rows(killed.path(f"data/{table}.parquet"), clean.path(f"data/{table}.parquet"))
    assert Workspace.open(killed.root).state("silence") == "ok"


def test_pool_hands_every_track_to_checkpoint_once(corpus):
    """With 2 workers, the saved batches are exactly the new statistics, one row per track."""
    root, tracks = corpus
    saved: list[dict] = []
    result = sil.compute_stats(root, tracks, workers=2, checkpoint=saved.extend)
    assert sorted(row["file_path"] for row in saved) == sorted(tracks["file_path"])
    from_rows = sil._typed(pd.DataFrame.from_records(saved)).sort_values("file_path")
    expected = result.stats.sort_values("file_path")
    pd.testing.assert_frame_equal(from_rows.reset_index(drop=True), expected.reset_index(drop=True))
