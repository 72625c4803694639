"""`orpheus test` leaves out silent windows by `predict`'s rule (issue #15, item 5).

The records store each track's loudness per block, so the song-level evaluation applies
`audio.Loudness`'s window rule without the audio. The oracles: window levels computed with numpy
on the decoded signal, predict's own loudness of the file (`audio.decode_track`), and a tiny
Keras model called in the test on the windows a numpy RMS calls audible. Four 16 kHz WAV tracks
whose quiet parts are noise at -80 dBFS and whose loud parts are tones at about -18 dBFS, at
least 1 s from any window edge, so which windows are silent is plain.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import tensorflow as tf
from cli_helpers import in_workspace
from records_helpers import VOCABULARY, Corpus, make_workspace, write_clean_db

from orpheus import audio, evaluation, records, runs
from orpheus.workspace import Workspace

SR = 16000
WINDOW_S = 2.0  # the run's window: 126 frames, 2.016 s; hop one window
LABELS = ["rock", "pop", "jazz"]
QUIET, LOUD = 1e-4, 0.3  # the quiet noise's std (-80 dBFS RMS) and the tones' peak
# (tid, [(seconds, loud?)...], tags): the mixed track's windows start at 0, 2, 4, 6, 8, 10 s
TRACKS = [
    ("TRMIXED", [(3.0, True), (6.5, False), (2.5, True)], ["rock"]),
    ("TRLOUDA", [(6.0, True)], ["pop", "rock"]),
    ("TRLOUDB", [(5.0, True)], ["jazz"]),
    ("TRSILENT", [(5.0, False)], ["rock"]),
]
MIXED_AUDIBLE = [True, True, False, False, True, True]


def _signal(parts: list[tuple[float, bool]], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for seconds, loud in parts:
        n = int(seconds * SR)
        t = np.arange(n) / SR
        tone = LOUD * np.sin(2 * np.pi * (220 + 110 * seed) * t) * (0.6 + 0.4 * np.sin(3 * t))
        out.append(tone if loud else QUIET * rng.standard_normal(n))
    return np.concatenate(out).astype(np.float32)


def _corpus(root: Path) -> Corpus:
    audio_root = root / "audio"
    audio_root.mkdir(parents=True)
    rows, tracks = [], []
    for i, (tid, parts, _) in enumerate(TRACKS):
        path = audio_root / f"{tid}.wav"
        sf.write(str(path), _signal(parts, i), SR, subtype="FLOAT")
        rows.append({"track_id": tid, "track_7digitalid": i, "file_path": path.name})
        tracks.append((tid, str(path)))
    tags = {tid: names for tid, _, names in TRACKS}
    pd.DataFrame(rows).to_parquet(root / "silence.parquet")
    write_clean_db(root / "clean_lastfm.db", tags)
    popularity = {t: sum(t in v for v in tags.values()) for t in VOCABULARY}
    return Corpus(
        audio_root, root / "silence.parquet", root / "clean_lastfm.db", tracks, tags, popularity
    )


@pytest.fixture(scope="module")
def silent_ws(tmp_path_factory) -> Path:
    """A workspace whose log-mel records hold the four tracks, all in the test split, and a
    finished run of a tiny (untrained, seeded) model on them."""
    root = tmp_path_factory.mktemp("silence")
    corpus = _corpus(root / "corpus")
    ws = make_workspace(root / "ws", corpus)
    plan = records.plan(
        corpus.tracks,
        corpus.tags,
        VOCABULARY,
        corpus.popularity,
        shards=1,
        assigned={tid: "test" for tid, _ in corpus.tracks},
    )
    out = ws.path("tfrecords/log-mel")
    records.build(out, plan, workers=1)
    ws.register("tfrecords/log-mel", out, params=plan.spec.to_dict())
    recipe = runs.recipe_for("log-mel", plan.spec.params, WINDOW_S)
    cfg = ws.config
    cfg["model-training"]["window_length"] = WINDOW_S
    folder = runs.create_run(
        runs.runs_dir(ws),
        "tiny",
        config={**cfg, "frontend": "log-mel"},
        labels=LABELS,
        recipe=recipe,
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((recipe.window, recipe.mel.n_mels)),
            keras.layers.Flatten(),
            keras.layers.Dense(len(LABELS), activation="sigmoid"),
        ]
    )
    model.save(folder / runs.MODEL_FILE)
    ws.register("run/tiny", folder, params={"frontend": "log-mel"})
    return ws.root


def _examples(ws: Path) -> dict[str, dict]:
    out = ws / "tfrecords/log-mel"
    index = records.read_index(out)
    return {
        ex["tid"]: ex
        for s in index["shards"]
        for ex in map(records.decode_example, records.read_records(out / s["file"]))
    }


def _path(ws: Path, tid: str) -> Path:
    return Workspace.open(ws).audio_root() / f"{tid}.wav"


def _audible_by_numpy(ws: Path, tid: str, starts_s: np.ndarray, seconds: float) -> np.ndarray:
    """Windows at least -60 dBFS RMS on the decoded file, the samples under each window."""
    y = audio.load(_path(ws, tid), SR).astype(np.float64)
    levels = []
    for s in starts_s:
        a = int(round(s * SR))
        segment = y[a : a + int(round(seconds * SR))]
        levels.append(10 * np.log10(np.mean(segment**2)))
    return np.array(levels) >= audio.SILENCE_DB


def _oracle_scores(ws: Path, use_rule: bool) -> dict[str, np.ndarray]:
    """Per track: the model's mean output over its audible windows (every window without the
    rule), the windows cut from the stored log-mel and the model called here."""
    run = runs.open_run(ws, "tiny")
    model = runs.load_model(run)
    scores = {}
    for tid, ex in _examples(ws).items():
        windows, starts = run.recipe.windows(ex["audio"])
        keep = np.ones(len(starts), bool)
        if use_rule:
            seconds = run.recipe.window_seconds
            keep = _audible_by_numpy(ws, tid, starts * run.recipe.step_seconds, seconds)
        if keep.any():
            scores[tid] = np.asarray(model(windows[keep], training=False)).mean(axis=0)
    return scores


def test_records_store_loudness_whose_window_levels_are_predicts(silent_ws):
    ex = _examples(silent_ws)["TRMIXED"]
    y = audio.load(_path(silent_ws, "TRMIXED"), SR)
    loudness = ex["loudness"]
    assert loudness.samples == len(y) == 12 * SR
    # windows on whole blocks (2 s = 125 blocks, exact in binary): numpy on the decoded signal
    for seconds in (2.0, 4.0):
        starts = np.arange(0.0, 12.0 - seconds + 1, 2.0)
        want = [
            10 * np.log10(np.mean(y[int(s) * SR : int(s + seconds) * SR].astype(np.float64) ** 2))
            for s in starts
        ]
        np.testing.assert_allclose(loudness.window_rms_db(SR, starts, seconds), want, atol=1e-4)
    # the run's windows, anywhere: the levels predict computes from the file it decodes itself
    run = runs.open_run(silent_ws, "tiny")
    starts = run.recipe.starts(len(ex["audio"])) * run.recipe.step_seconds
    predicted = audio.decode_track(_path(silent_ws, "TRMIXED"), run.recipe.mel).loudness
    seconds = run.recipe.window_seconds
    np.testing.assert_allclose(
        loudness.window_rms_db(SR, starts, seconds),
        predicted.window_rms_db(SR, starts, seconds),
        atol=1e-4,
    )
    assert loudness.audible(SR, starts, seconds).tolist() == MIXED_AUDIBLE
    assert _audible_by_numpy(silent_ws, "TRMIXED", starts, seconds).tolist() == MIXED_AUDIBLE


def test_waveform_records_store_the_same_loudness(silent_ws, tmp_path):
    plan = records.plan(
        [("TRMIXED", str(_path(silent_ws, "TRMIXED")))],
        {"TRMIXED": ["rock"]},
        VOCABULARY,
        {},
        spec=records.FeatureSpec("waveform"),
        shards=1,
    )
    records.build(tmp_path, plan, workers=1)
    (raw,) = records.read_records(tmp_path / plan.shards[0].file)
    stored = records.decode_example(raw)["loudness"]
    logmel = _examples(silent_ws)["TRMIXED"]["loudness"]
    assert stored.samples == logmel.samples
    np.testing.assert_array_equal(stored.energy(), logmel.energy())


def test_song_predictions_average_the_audible_windows_and_count_silent_tracks(silent_ws):
    ws = Workspace.open(silent_ws)
    done = evaluation.evaluate_run(ws, runs.open_run(silent_ws, "tiny"))
    assert done.note is None
    preds = done.predictions
    assert preds.silent == ["TRSILENT"]
    assert sorted(preds.tids) == ["TRLOUDA", "TRLOUDB", "TRMIXED"]
    want = _oracle_scores(silent_ws, use_rule=True)
    assert sorted(want) == sorted(preds.tids)  # the oracle finds TRSILENT silent too
    for tid, score in zip(preds.tids, preds.y_score, strict=True):
        np.testing.assert_allclose(score, want[tid], atol=1e-5)
    # the rule matters here: every window's mean is another answer for the mixed track
    every = _oracle_scores(silent_ws, use_rule=False)["TRMIXED"]
    assert np.abs(every - want["TRMIXED"]).max() > 1e-3
    assert done.results["silent_tracks"] == 1 and done.results["tracks"] == 3
    assert done.results["silence_db"] == audio.SILENCE_DB


def test_the_cli_reports_silent_tracks_and_takes_silence_db(silent_ws):
    shown = in_workspace(silent_ws, "test", "--run", "tiny", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["silent_tracks"] == 1
    assert "note: 1 silent test tracks (no window at or above -60.0 dBFS)" in shown.stderr
    saved = json.loads((silent_ws / "runs/tiny/metrics.json").read_text())["test"]
    assert saved["silent_tracks"] == 1 and saved["tracks"] == 3
    # a floor under the quiet noise (-80 dBFS) keeps every window of every track
    lower = in_workspace(silent_ws, "test", "--run", "tiny", "--json", "--silence-db", "-100")
    assert lower.exit_code == 0, lower.stderr
    assert json.loads(lower.stdout)["silent_tracks"] == 0 and "silent" not in lower.stderr
    saved = json.loads((silent_ws / "runs/tiny/metrics.json").read_text())["test"]
    assert saved["tracks"] == 4 and saved["silence_db"] == -100.0
    # a floor over every track (the tones are about -18 dBFS): one line, exit 2, no traceback
    above = in_workspace(silent_ws, "test", "--run", "tiny", "--silence-db", "0")
    assert above.exit_code == 2 and "Traceback" not in above.stderr, above.stderr
    assert "every one of the 4 test tracks is silent" in above.stderr


def test_records_without_loudness_evaluate_every_window_with_a_note(silent_ws, tmp_path):
    """Records as index version 1 wrote them: no loudness in the Examples or the index."""
    old = Path(shutil.copytree(silent_ws, tmp_path / "ws"))
    out = old / "tfrecords/log-mel"
    index = records.read_index(out)
    n_tags = len(index["vocabulary"])
    for shard in index["shards"]:
        examples = list(map(records.decode_example, records.read_records(out / shard["file"])))
        with tf.io.TFRecordWriter(str(out / shard["file"])) as writer:
            for ex in examples:
                tags = np.flatnonzero(ex["tags"]).tolist()
                writer.write(records.encode_example(ex["tid"], ex["audio"], tags, n_tags))
    index["version"] = 1
    del index["feature"]["loudness_block"]
    (out / records.INDEX_FILE).write_text(json.dumps(index))
    Workspace.open(old).register("tfrecords/log-mel", out)

    done = evaluation.evaluate_run(Workspace.open(old), runs.open_run(old, "tiny"))
    assert "predate the silence rule" in done.note
    assert done.predictions.silent == [] and len(done.predictions.tids) == 4
    want = _oracle_scores(old, use_rule=False)
    for tid, score in zip(done.predictions.tids, done.predictions.y_score, strict=True):
        np.testing.assert_allclose(score, want[tid], atol=1e-5)
    assert done.results["silent_tracks"] == 0 and done.results["silence_db"] is None

    shown = in_workspace(old, "test", "--run", "tiny", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stderr.count("predate the silence rule") == 1
    assert "`orpheus tfrecords build --format log-mel --sr 16000 --mels 96`" in shown.stderr
    assert json.loads(shown.stdout)["silent_tracks"] == 0


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _tear_the_end(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1000])


def _loudness_too_short(path: Path) -> None:
    """Rewrite the shard (valid framing) with one Example's loudness a block short."""
    examples = [tf.train.Example.FromString(raw) for raw in records.read_records(path)]
    feature = examples[0].features.feature["loudness"].bytes_list
    feature.value[0] = feature.value[0][:-4]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for ex in examples:
            writer.write(ex.SerializeToString())


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_flip_a_byte, "corrupted record"),
        (_tear_the_end, "truncated record"),
        (_loudness_too_short, "cannot hold"),
        (Path.unlink, "TFRecord shard missing"),
    ],
)
def test_a_damaged_shard_is_one_line_naming_it(silent_ws, tmp_path, damage, reason):
    ws = Path(shutil.copytree(silent_ws, tmp_path / "ws"))
    out = ws / "tfrecords/log-mel"
    shard = out / records.read_index(out)["shards"][0]["file"]
    damage(shard)
    run = {p: p.read_bytes() for p in (ws / "runs/tiny").rglob("*") if p.is_file()}

    shown = in_workspace(ws, "test", "--run", "tiny")
    assert shown.exit_code == 2, shown.stderr
    assert "Traceback" not in shown.stderr and "internal error" not in shown.stderr
    error = next(line for line in shown.stderr.splitlines() if line.startswith("error:"))
    assert str(shard) in error and reason in error
    assert "rebuild the TFRecords with `orpheus tfrecords build --format log-mel" in shown.stderr
    after = {p: p.read_bytes() for p in (ws / "runs/tiny").rglob("*") if p.is_file()}
    assert after == run  # no metrics recorded from part of the split
