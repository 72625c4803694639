"""The tf.data pipeline: tag selection, windows, normalisation, determinism, song-level windows."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tensorflow as tf
from records_helpers import VOCABULARY, make_corpus

from orpheus import config, dataset, features, records
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


@pytest.mark.parametrize("twin", ["numpy", "tensorflow"])
def test_normalise_by_hand(twin):
    def normalise(x, **kw):
        out = features.normalise(x if twin == "numpy" else tf.constant(x), **kw)
        return out if twin == "numpy" else out.numpy()

    # [1, 2, 3, 4]: mean 2.5, variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25, so
    # (x - 2.5) / sqrt(1.25 + 1e-6) = [-3, -1, 1, 3] / sqrt(5 + 4e-6).
    want = np.array([-3, -1, 1, 3]) / np.sqrt(5 + 4e-6)
    # atol 1e-6: float32 rounding of values near 1 (~1e-7 per operation, a handful of them)
    np.testing.assert_allclose(normalise(np.float32([1, 2, 3, 4])), want, atol=1e-6)
    # a log-mel window [[0, 2], [4, 6]]: over both axes, mean 3 and variance (9 + 1 + 1 + 9) / 4 = 5
    np.testing.assert_allclose(
        normalise(np.float32([[0, 2], [4, 6]])),
        np.array([[-3, -1], [1, 3]]) / np.sqrt(5 + 1e-6),
        atol=1e-6,
    )
    # batched: each window by its own statistics, not the batch's (mean 4.75 over both rows);
    # a constant window has variance 0 and becomes 0 / sqrt(1e-6) = 0
    np.testing.assert_allclose(
        normalise(np.float32([[1, 2, 3, 4], [7, 7, 7, 7]]), batched=True),
        [want, [0, 0, 0, 0]],
        atol=1e-6,
    )


@pytest.mark.parametrize("shape", [(938, 96), (48000,)])
def test_normalise_numpy_and_tensorflow_agree(shape):
    rng = np.random.default_rng(0)
    x = (3.0 + 2.5 * rng.standard_normal((4, *shape))).astype(np.float32)
    one = features.normalise(x[0])
    assert isinstance(one, np.ndarray)
    np.testing.assert_allclose(one, features.normalise(tf.constant(x[0])).numpy(), atol=1e-4)
    assert abs(one.mean()) < 1e-4 and abs(one.std() - 1) < 1e-4
    many = features.normalise(x, batched=True)
    np.testing.assert_allclose(many[2], features.normalise(x[2]), atol=1e-5)
    np.testing.assert_allclose(
        many, features.normalise(tf.constant(x), batched=True).numpy(), atol=1e-4
    )
    flat = features.normalise(np.zeros(shape, np.float32))  # silence stays finite
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
        (features.window_frames(2, spec.params), 96)
        if fmt == "log-mel"
        else (features.window_samples(2, 16000),)
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
        if seconds * 16000 == n:  # a window of exactly the clip is the whole clip, normalised
            a = first["audio"].astype(np.float64)
            np.testing.assert_allclose(
                xs[0][0], (a - a.mean()) / np.sqrt(a.var() + 1e-6), atol=1e-4
            )


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
        features.window_frames(2, spec.params)
        if fmt == "log-mel"
        else features.window_samples(2, 16000)
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
        raw = features.even_windows(ex["audio"], length, hop).astype(
            np.float64
        )  # hand-checked below
        axes = tuple(range(1, raw.ndim))  # each window to zero mean, unit variance (eps 1e-6)
        mean, var = raw.mean(axis=axes, keepdims=True), raw.var(axis=axes, keepdims=True)
        want = (raw - mean) / np.sqrt(var + 1e-6)
        assert windows.shape == want.shape
        np.testing.assert_allclose(windows.numpy(), want, atol=1e-4)
        names = {VOCABULARY[i] for i in np.flatnonzero(ex["tags"])}
        assert y.numpy().tolist() == [float(t in names) for t in labels]
        gaps, span = len(want) - 1, max(len(ex["audio"]) - length, 0)
        # as few windows as leave at most 5% of a hop uncovered between them
        assert gaps * hop + hop // 20 >= span and (gaps == 0 or (gaps - 1) * hop + hop // 20 < span)


@pytest.mark.parametrize("twin", ["numpy", "tensorflow"])
def test_even_windows_cover_the_whole_track(twin):
    def even_windows(x, length, hop):
        if twin == "numpy":
            return features.even_windows(x, length, hop)
        return dataset._even_windows(tf.constant(x), length, hop)[0].numpy()

    # 10 steps in windows of 4, hop 3: starts span 10 - 4 = 6 = 2 hops, so 3 windows at 0, 3, 6
    w = even_windows(np.arange(10, dtype=np.float32), 4, 3)
    assert w.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    # 11 steps: span 7 = 2 hops + 1 step (more than 5% of a hop): 4 windows, starts k * 7 // 3
    w = even_windows(np.arange(11, dtype=np.float32), 4, 3)
    assert w[:, 0].tolist() == [0, 2, 4, 7] and w[-1].tolist() == [7, 8, 9, 10]
    # 3 steps in a window of 7: one window, the clip repeated to fill it
    short = even_windows(np.arange(3, dtype=np.float32), 7, 7)
    assert short.tolist() == [[0, 1, 2, 0, 1, 2, 0]]


@pytest.mark.parametrize("twin", ["numpy", "tensorflow"])
def test_even_windows_skip_a_window_for_a_remainder_under_5_percent_of_a_hop(twin):
    # a 30 s clip: 1876 log-mel frames in 187-frame windows. The starts span 1876 - 187 = 1689
    # = 9 hops + 6 frames, and 6 <= 187 // 20 = 9, so 10 windows, not 11, starting at
    # k * 1689 // 9 (1689 / 9 = 187.67): 0, 187, 375, 563, 750, 938, 1126, 1313, 1501, 1689.
    def starts(n):
        clip = np.arange(n, dtype=np.float32)
        if twin == "numpy":
            return features.even_windows(clip, 187, 187)[:, 0].tolist()
        return dataset._even_windows(tf.constant(clip), 187, 187)[0].numpy()[:, 0].tolist()

    assert starts(1876) == [0, 187, 375, 563, 750, 938, 1126, 1313, 1501, 1689]
    # 1879 frames: 9 hops + 9 frames, still 10 windows; 1880: 9 hops + 10 frames, an 11th
    assert len(starts(1879)) == 10 and len(starts(1880)) == 11


def test_a_changed_split_asks_for_a_rebuild(built):
    cfg = copy.deepcopy(_cfg(split=[70, 20, 10]))
    with pytest.raises(OrpheusError, match=r"were split \[80.0, 10.0, 10.0\]") as err:
        dataset.datasets(built["log-mel"], cfg)
    assert "orpheus tfrecords build" in err.value.hint


def test_the_tensorflow_windows_match_the_numpy_twin_around_the_5_percent_boundary():
    for n in [*range(180, 190), *range(378, 390)]:  # one window / 2 or 3 windows at 187 frames
        x = np.arange(n, dtype=np.float32)
        want = features.even_windows(x, 187, 187)
        np.testing.assert_array_equal(
            dataset._even_windows(tf.constant(x), 187, 187)[0].numpy(), want
        )
