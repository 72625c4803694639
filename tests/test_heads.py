"""Learning from the pretrained taggers: the embedding cache, heads' inputs and the pipeline's
musicnn windows, on the example corpus.

One workspace (the example corpus through `tfrecords build`, musicnn's features: 16 kHz, 96 mels,
n_fft 512, hop 256) is shared by the module; a test that changes what others read works on a copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from orpheus import embeddings, features, finetune, heads, pretrained, records
from orpheus.cli import app
from orpheus.example.layouts import use_example
from orpheus.workspace import STALE, Workspace

runner = CliRunner()
NO_WS = {"ORPHEUS_WORKSPACE": ""}
SPLIT = [40, 20, 40]  # several labelled tracks in every split of the 20 tagged example tracks
REFERENCE = Path(__file__).parent / "fixtures" / "musicnn_reference.npz"
CROSS_CPU = 5e-5  # test_musicnn's tolerance: 4x the measured AVX2/AVX-512 difference of TF1 runs


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
