"""The tf.data pipeline: tag selection, windows, normalisation, determinism, song-level windows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tensorflow as tf
from records_helpers import VOCABULARY, make_corpus

from orpheus import config, dataset, records
from orpheus.errors import OrpheusError

POP = {"rock": 50, "pop": 40, "jazz": 40, "electronic": 10, "female vocalists": 60, "indie": 5}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Records of a 12-track corpus (1-4 s clips) in both formats."""
    root = tmp_path_factory.mktemp("ds")
    corpus = make_corpus(root, n=12, untagged=0)
    out = {}
    for fmt in records.FORMATS:
        plan = records.plan(
            corpus.tracks,
            corpus.tags,
            VOCABULARY,
            corpus.popularity,
            spec=records.FeatureSpec(fmt),
            shards=4,
        )
        records.build(root / fmt, plan, workers=1)
        out[fmt] = root / fmt
    out["corpus"] = corpus
    return out


def _cfg(**training) -> dict:
    cfg = config.defaults()
    cfg["model-training"].update({"window_length": 2, "batch_size": 2, **training})
    cfg["tags"].update({"top": None})
    return cfg


def _batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_select_labels_top_with_without_merge():
    labels, groups = dataset.select_labels(VOCABULARY, POP, {"top": 3})
    assert labels == ["female vocalists", "rock", "pop"]  # popularity, ties by vocabulary order
    assert groups == [[4], [0], [1]]
    labels, _ = dataset.select_labels(
        VOCABULARY, POP, {"top": 2, "with": ["indie", "rock"], "without": ["female vocalists"]}
    )
    assert labels == ["rock", "indie"]
    labels, groups = dataset.select_labels(VOCABULARY, POP, {"top": None})
    assert labels == ["female vocalists", "rock", "pop", "jazz", "electronic", "indie"]
    labels, groups = dataset.select_labels(
        VOCABULARY, POP, {"top": 4, "merge": [["jazz", "indie", "pop"]]}
    )
    assert labels == ["female vocalists", "rock", "jazz"]
    assert groups == [[4], [0], [1, 2, 5]]


@pytest.mark.parametrize(
    ("tags_cfg", "message"),
    [
        ({"top": 3, "with": ["polka"]}, "not in the clean vocabulary"),
        ({"top": 3, "merge": [["rock", "pop"], ["pop", "jazz"]]}, "two tags.merge groups"),
        ({"top": 0}, "selection is empty"),
        ({"top": -1}, "non-negative"),
    ],
)
def test_select_labels_rejects_bad_selections(tags_cfg, message):
    with pytest.raises(OrpheusError, match=message):
        dataset.select_labels(VOCABULARY, POP, tags_cfg)


@pytest.mark.parametrize("shape", [(938, 96), (48000,)])
def test_normalise_numpy_and_tensorflow_agree(shape):
    rng = np.random.default_rng(0)
    x = (3.0 + 2.5 * rng.standard_normal((4, *shape))).astype(np.float32)
    one = dataset.normalise(x[0])
    assert isinstance(one, np.ndarray)
    np.testing.assert_allclose(one, dataset.normalise(tf.constant(x[0])).numpy(), atol=1e-4)
    assert abs(one.mean()) < 1e-4 and abs(one.std() - 1) < 1e-4
    many = dataset.normalise(x, batched=True)
    np.testing.assert_allclose(many[2], dataset.normalise(x[2]), atol=1e-5)
    np.testing.assert_allclose(
        many, dataset.normalise(tf.constant(x), batched=True).numpy(), atol=1e-4
    )
    flat = dataset.normalise(np.zeros(shape, np.float32))  # silence stays finite
    assert np.isfinite(flat).all()


@pytest.mark.parametrize("fmt", records.FORMATS)
def test_datasets_shapes_labels_and_normalisation(built, fmt):
    cfg = _cfg()
    cfg["tags"]["top"] = 3
    ds, labels = dataset.datasets(built[fmt], cfg, ("train", "valid", "test"), seed=3)
    index = records.read_index(built[fmt])
    want_labels, _ = dataset.select_labels(index["vocabulary"], index["popularity"], cfg["tags"])
    assert labels == want_labels
    spec = records.spec_of(index)
    frames = (
        (dataset.window_length_frames(2, spec.params), 96)
        if fmt == "log-mel"
        else (dataset.window_length_samples(2, 16000),)
    )
    for name, d in ds.items():
        batches = _batches(d)
        assert batches, name
        for x, y in batches:
            assert x.dtype == np.float32 and x.shape[1:] == frames
            assert y.shape == (len(x), 3) and set(np.unique(y)) <= {0.0, 1.0}
            assert (y.sum(axis=1) > 0).all()  # tracks without a selected tag are dropped
            np.testing.assert_allclose(x.mean(axis=tuple(range(1, x.ndim))), 0, atol=1e-3)
        if name == "train":
            assert all(len(x) == 2 for x, _ in batches)  # full batches only


def test_datasets_are_deterministic_given_a_seed(built):
    cfg = _cfg(shuffle_buffer_size=50)

    def run(seed):
        return _batches(dataset.datasets(built["waveform"], cfg, ("train",), seed=seed)[0]["train"])

    a, b, c = run(5), run(5), run(6)
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=False))


def test_windows_longer_than_or_equal_to_the_clip_are_repeat_padded(built):
    index = records.read_index(built["waveform"])
    first = records.decode_example(
        next(iter(records.read_records(built["waveform"] / index["shards"][0]["file"])))
    )
    n = len(first["audio"])
    for seconds in (n / 16000, 10.0):  # exactly the clip (the original crashed), and longer
        cfg = _cfg(window_length=seconds, batch_size=1)
        ds, _ = dataset.datasets(
            built["waveform"], cfg, ("train",), seed=1, tids=[first["tid"]], repeat=True
        )
        xs = [x for x, _ in ds["train"].take(4)]
        assert all(x.shape == (1, round(seconds * 16000)) for x in xs)
        if seconds * 16000 == n:  # a window of exactly the clip is the whole (normalised) clip
            np.testing.assert_allclose(xs[0][0], dataset.normalise(first["audio"]), atol=1e-4)


def test_tid_allow_list_restricts_the_examples(built):
    tids = [t for t, _ in built["corpus"].tracks[:5]]
    split = {t: records.split_of(t, [80, 10, 10]) for t in tids}
    train = [t for t in tids if split[t] == "train"]
    cfg = _cfg(batch_size=1, shuffle=False)
    ds, labels = dataset.datasets(built["log-mel"], cfg, ("train",), tids=tids)
    windows = dataset.track_windows(built["log-mel"], cfg, "train", labels, tids=tids)
    seen = [tid.numpy().decode() for tid, _, _ in windows]
    assert sum(len(x) for x, _ in _batches(ds["train"])) == len(seen)
    assert sorted(seen) == sorted(train)  # every track here has a tag (top: null)
    with pytest.raises(OrpheusError, match="none of the given tracks"):
        dataset.datasets(built["log-mel"], cfg, ("train",), tids=["TRNOTTHERE00000000"])


@pytest.mark.parametrize("fmt", records.FORMATS)
def test_track_windows_cover_each_track_like_the_numpy_twin(built, fmt):
    cfg = _cfg()
    cfg["tags"]["top"] = 4
    _, labels = dataset.datasets(built[fmt], cfg, ("valid",))
    index = records.read_index(built[fmt])
    spec = records.spec_of(index)
    length = (
        dataset.window_length_frames(2, spec.params)
        if fmt == "log-mel"
        else dataset.window_length_samples(2, 16000)
    )
    hop = length // 2
    decoded = {
        ex["tid"]: ex
        for s in index["shards"]
        if s["split"] == "train"
        for ex in map(records.decode_example, records.read_records(built[fmt] / s["file"]))
    }
    got = list(dataset.track_windows(built[fmt], cfg, "train", labels, hop_seconds=1))
    assert got
    for tid, windows, y in got:
        ex = decoded[tid.numpy().decode()]
        want = dataset.normalise(dataset.even_windows(ex["audio"], length, hop), batched=True)
        assert windows.shape == want.shape
        np.testing.assert_allclose(windows.numpy(), want, atol=1e-4)
        names = {VOCABULARY[i] for i in np.flatnonzero(ex["tags"])}
        assert y.numpy().tolist() == [float(t in names) for t in labels]
        gaps, span = len(want) - 1, max(len(ex["audio"]) - length, 0)
        # as few windows as leave at most 5% of a hop uncovered between them
        assert gaps * hop + hop // 20 >= span and (gaps == 0 or (gaps - 1) * hop + hop // 20 < span)


def test_even_windows_cover_the_whole_track():
    x = np.arange(10, dtype=np.float32)
    w = dataset.even_windows(x, 4, 3)
    assert w[0, 0] == 0 and w[-1, -1] == 9 and len(w) == 3
    short = dataset.even_windows(np.arange(3, dtype=np.float32), 7, 7)
    assert short.tolist() == [[0, 1, 2, 0, 1, 2, 0]]


def test_even_windows_skip_a_window_for_a_remainder_under_5_percent_of_a_hop():
    # a 30 s clip: 1876 log-mel frames in 187-frame windows is 10 windows and 6 frames left over
    clip = np.arange(1876, dtype=np.float32)
    starts = dataset.even_windows(clip, 187, 187)[:, 0]
    assert len(starts) == 10 and starts[-1] == 1876 - 187
    assert np.diff(starts).max() == 188  # 9 frames = 5% of a hop may be spread over the gaps
    # 10 frames over ten windows is more than 5% of a hop: an 11th window
    assert len(dataset.even_windows(np.arange(1880, dtype=np.float32), 187, 187)) == 11
    assert len(dataset.even_windows(np.arange(1879, dtype=np.float32), 187, 187)) == 10


def test_a_changed_split_asks_for_a_rebuild(built):
    cfg = copy.deepcopy(_cfg(split=[70, 20, 10]))
    with pytest.raises(OrpheusError, match=r"were split \[80.0, 10.0, 10.0\]") as err:
        dataset.datasets(built["log-mel"], cfg)
    assert "orpheus tfrecords build" in err.value.hint


def test_the_tensorflow_windows_match_the_numpy_twin_around_the_5_percent_boundary():
    for n in [*range(180, 190), *range(378, 390)]:  # one window / 2 or 3 windows at 187 frames
        x = np.arange(n, dtype=np.float32)
        want = dataset.even_windows(x, 187, 187)
        np.testing.assert_array_equal(dataset._even_windows(tf.constant(x), 187, 187).numpy(), want)
