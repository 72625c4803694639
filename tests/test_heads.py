"""Learning from the pretrained taggers: heads on cached embeddings and fine-tuning, end to end
(train, test, predict), the cache itself and the pipeline's musicnn windows, on the example corpus.

One workspace (the example corpus through `tfrecords build`, musicnn's features: 16 kHz, 96 mels,
n_fft 512, hop 256) is shared by the module; a test that changes what others read works on a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from orpheus import embeddings, features, finetune, heads, pretrained, records
from orpheus.cli import app
from orpheus.example.layouts import use_example
from orpheus.models.musicnn import build_musicnn
from orpheus.workspace import STALE, Workspace

runner = CliRunner()
NO_WS = {"ORPHEUS_WORKSPACE": ""}
SPLIT = [40, 20, 40]  # several labelled tracks in every split of the 20 tagged example tracks
REFERENCE = Path(__file__).parent / "fixtures" / "musicnn_reference.npz"
CROSS_CPU = 5e-5  # test_musicnn's tolerance: 4x the measured AVX2/AVX-512 difference of TF1 runs
# A record holds the log-mel rounded to float16 (relative error <= 5e-4) while predict computes it
# in float32 from audio: a bound on what that moves song-level probabilities through musicnn.
FLOAT16_INPUT = 5e-3


def orpheus(ws: Path, *args: str):
    return runner.invoke(app, ["-w", str(ws), *map(str, args)], env=NO_WS)


def ok(result) -> None:
    assert result.exit_code == 0, (result.stdout + result.stderr)[-3000:]


@pytest.fixture(scope="module")
def workspace(example_corpus: Path, tmp_path_factory) -> Path:
    """The example corpus through `tfrecords build` (log-mel with musicnn's features)."""
    root = tmp_path_factory.mktemp("heads") / "ws"
    ws = Workspace.create(root)
    use_example(ws, example_corpus, json.loads((example_corpus / "truth.json").read_text()))
    cfg = ws.config
    cfg["model-training"].update(split=SPLIT, batch_size=4)
    ws.save_config(cfg)
    for args in (
        ["scan", "-j", "1"],
        ["wrangle"],
        ["silence", "-j", "2"],
        ["tags", "clean"],
        ["tfrecords", "build", "-j", "2"],
    ):
        ok(orpheus(root, "-q", *args))
    return root


def _test_track(ws: Path) -> tuple[dict, Path]:
    """The first test-split record, decoded, and its audio file."""
    ex = _decoded(ws / "tfrecords/log-mel", "test")[0]
    table = pd.read_parquet(ws / "data/silence.parquet").set_index("track_id")["file_path"]
    return ex, Path(Workspace.open(ws).config["paths"]["audio_root"]) / table[ex["tid"]]


def _predicted(ws: Path, run: str, song: Path) -> np.ndarray:
    result = orpheus(ws, "predict", str(song), "--model", run, "-f", "json", "-t", "0")
    ok(result)
    (record,) = json.loads(result.stdout)
    labels = json.loads((ws / "runs" / run / "labels.json").read_text())
    return np.array([record["probabilities"][label] for label in labels])


def _tested(ws: Path, run: str) -> dict:
    result = orpheus(ws, "-q", "test", "--run", run, "--json")
    ok(result)
    metrics = json.loads(result.stdout)
    assert 0.0 <= metrics["roc_auc_macro"] <= 1.0 and 0.0 <= metrics["pr_auc_macro"] <= 1.0
    return metrics


def _recipe(run_dir: Path) -> features.Recipe:
    return features.Recipe.from_dict(json.loads((run_dir / "config.json").read_text())["recipe"])


# -- embedding heads ------------------------------------------------------------------------------


def test_head_run_trains_from_cached_embeddings_then_tests_and_predicts(workspace):
    ok(
        orpheus(
            workspace,
            "-q",
            "train",
            "--head",
            "linear",
            "--embeddings",
            "msd-musicnn",
            "--epochs",
            "3",
            "--run-name",
            "head",
        )
    )
    run = workspace / "runs/head"
    assert _recipe(run) == _musicnn_recipe()
    manifest = Workspace.open(workspace)
    entry = manifest.entry("embeddings/msd-musicnn")
    assert set(entry["inputs"]) == {"tfrecords", "model"}
    assert entry["inputs"]["tfrecords"]["artifact"] == "tfrecords/log-mel"
    assert (
        manifest.entry("run/head")["inputs"]["embeddings"]["artifact"] == "embeddings/msd-musicnn"
    )
    _tested(workspace, "head")

    # predict feeds musicnn's un-normalised 3 s windows through musicnn and the head: its song
    # probabilities equal the trained output layer applied, in NumPy, to the cached embeddings
    ex, song = _test_track(workspace)
    emb = embeddings.load(workspace / "embeddings/msd-musicnn.npz")
    (i,) = np.flatnonzero(emb.tids == ex["tid"])
    model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    kernel, bias = model.get_layer("output").get_weights()
    expected = (1 / (1 + np.exp(-(emb.vectors[emb.track == i] @ kernel + bias)))).mean(axis=0)
    np.testing.assert_allclose(_predicted(workspace, "head", song), expected, atol=FLOAT16_INPUT)

    # a second head (an MLP on song-level means) reuses the cache: the file is not rewritten
    cache = workspace / "embeddings/msd-musicnn.npz"
    before = (cache.stat().st_mtime_ns, Workspace.open(workspace).entry("embeddings/msd-musicnn"))
    ok(
        orpheus(
            workspace,
            "-q",
            "train",
            "--head",
            "mlp",
            "--head-level",
            "song",
            "--embeddings",
            "msd-musicnn",
            "--epochs",
            "2",
            "--run-name",
            "mlp",
        )
    )
    after = (cache.stat().st_mtime_ns, Workspace.open(workspace).entry("embeddings/msd-musicnn"))
    assert after == before
    _tested(workspace, "mlp")
    assert _predicted(workspace, "mlp", song).shape == expected.shape


# -- fine-tuning ----------------------------------------------------------------------------------


def test_finetuned_run_keeps_its_frozen_front_end_then_tests_and_predicts(workspace):
    ok(
        orpheus(
            workspace,
            "-q",
            "train",
            "--init",
            "mtt-musicnn",
            "--freeze",
            "frontend",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--run-name",
            "ft",
        )
    )
    run = workspace / "runs/ft"
    assert _recipe(run) == _musicnn_recipe()
    labels = json.loads((run / "labels.json").read_text())
    model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    assert model.output_shape == (None, len(labels)) and model.input_shape == (None, 187, 96)
    original = build_musicnn(50)
    original.load_weights(pretrained.weights_path("mtt-musicnn"))
    for name in ("input_bn", "timbral_38", "timbral_67_bn", "temporal_32"):
        for mine, theirs in zip(
            model.get_layer(name).get_weights(), original.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(mine, theirs)
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            model.get_layer("dense").get_weights(),
            original.get_layer("dense").get_weights(),
            strict=True,
        )
    ]
    assert any(moved)
    _tested(workspace, "ft")
    ex, song = _test_track(workspace)
    wins, _ = _recipe(run).windows(ex["audio"])
    expected = model(tf.constant(wins), training=False).numpy().mean(axis=0)
    np.testing.assert_allclose(_predicted(workspace, "ft", song), expected, atol=FLOAT16_INPUT)


def _musicnn_recipe() -> features.Recipe:
    from orpheus.tagger import Tagger

    return Tagger.pretrained("msd-musicnn").recipe


def test_the_cache_is_stale_when_the_records_change(workspace, tmp_path):
    ws = Workspace.open(shutil.copytree(workspace, tmp_path / "ws"))
    if ws.entry("embeddings/msd-musicnn") is None:
        embeddings.cached(ws, embeddings.open_source(ws, "msd-musicnn"))
    assert ws.state("embeddings/msd-musicnn") == "ok"
    index = ws.path("tfrecords/log-mel/index.json")
    index.write_text(index.read_text().replace('"tracks"', '"tracks" ', 1))
    ws.register("tfrecords/log-mel", ws.path("tfrecords/log-mel"))
    assert ws.state("embeddings/msd-musicnn") == STALE


def test_cached_embeddings_equal_the_original_graph_on_the_reference_patches(workspace, tmp_path):
    """The reference patches become one track's log-mel in real TFRecords (they are multiples of
    1/32 below 8, exact in float16); the cache's vectors for it, as a head reads them, equal the
    original TF1 musicnn's penultimate output on those patches."""
    ref = np.load(REFERENCE)
    patches = ref["patch_codes"].astype(np.float32) / ref["quant"]
    track = np.concatenate(list(patches))  # 3 x 187 frames: even windows fall on the patches
    ws = Workspace.open(
        shutil.copytree(
            workspace, tmp_path / "ws", ignore=shutil.ignore_patterns("embeddings", "runs")
        )
    )
    out = ws.path("tfrecords/log-mel")
    index = json.loads((out / "index.json").read_text())
    shard = next(s for s in index["shards"] if s["split"] == "train")
    tags = [index["vocabulary"].index(label) for label in finetune.workspace_labels(ws)[0][:2]]
    with tf.io.TFRecordWriter(str(out / shard["file"])) as writer:
        writer.write(records.encode_example("TRREFERENCE", track, tags, len(index["vocabulary"])))
    shard.update(tids=["TRREFERENCE"], count=1)
    (out / "index.json").write_text(json.dumps(index))
    ws.register("tfrecords/log-mel", out)
    for name in pretrained.NAMES:
        emb, reused = embeddings.cached(ws, embeddings.open_source(ws, name))
        assert not reused
        _, groups, _ = finetune.workspace_labels(ws)
        data = heads.head_data(emb, groups, "train", "window")
        assert data.x.shape == (3, 200)
        np.testing.assert_allclose(data.x, ref[f"{name}/penultimate"], rtol=0, atol=CROSS_CPU)


def test_records_without_musicnn_features_are_refused_with_the_command_that_builds_them(tmp_path):
    recipe = _musicnn_recipe()
    for feature in (
        {"format": "waveform", "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 96},
        {"format": "log-mel", "sample_rate": 16000, "n_fft": 512, "hop_length": 256, "n_mels": 64},
        {"format": "log-mel", "sample_rate": 22050, "n_fft": 512, "hop_length": 256, "n_mels": 96},
    ):
        with pytest.raises(Exception) as err:
            embeddings.check({"feature": feature}, recipe, tmp_path, "msd-musicnn")
        assert "msd-musicnn needs log-mel records at 16000 Hz with 96 mels" in str(err.value)
        assert "orpheus tfrecords build --format log-mel --sr 16000 --mels 96" in err.value.hint
    embeddings.check({"feature": {**feature, "sample_rate": 16000}}, recipe, tmp_path, "m")


def test_the_pipeline_gives_a_recipes_windows_unnormalised(workspace):
    """Fine-tuning and `test` feed musicnn the records' log-mel as it is, in 187-frame windows:
    the centred validation windows and the song-level test windows equal the stored frames."""
    from orpheus import dataset

    recipe = _musicnn_recipe()
    out, cfg = workspace / "tfrecords/log-mel", Workspace.open(workspace).config
    stored = {ex["tid"]: ex["audio"] for split in ("valid", "test") for ex in _decoded(out, split)}
    dsets, labels = dataset.datasets(out, cfg, ("valid",), recipe=recipe)
    x, _ = next(iter(dsets["valid"]))
    assert x.shape[1:] == (187, 96)
    centred = [a[(len(a) - 187) // 2 :][:187] for a in stored.values()]
    assert any(np.array_equal(x[0].numpy(), c) for c in centred)
    tid, windows, _ = next(iter(dataset.track_windows(out, cfg, "test", labels, recipe=recipe)))
    np.testing.assert_array_equal(windows.numpy(), recipe.windows(stored[tid.numpy().decode()])[0])


def _decoded(out: Path, split: str) -> list[dict]:
    index = records.read_index(out)
    return [
        records.decode_example(raw)
        for s in index["shards"]
        if s["split"] == split
        for raw in records.read_records(out / s["file"])
    ]
