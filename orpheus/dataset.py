"""The tf.data input pipeline over a TFRecord build.

Chain per split: shard files (only the split's; shuffled for training) -> parallel interleaved
reads -> in chunks: parse, track-ID allow-list, labels (tag selection), drop examples with no
selected tag -> (optional in-memory cache) -> shuffle -> repeat -> batch -> window + normalise
per batch -> prefetch. Deterministic given a seed.

Speed. Examples travel as their stored float16 bytes until a batch is formed; each window is then
cut out of those bytes (a substring) and only the window is decoded, so a 3 s window of a 30 s
track decodes a tenth of the track. Parsing and windowing work on chunks and batches rather than
one example at a time, which is what per-element tf.data stages cost most in. `cache` keeps the
parsed examples (float16 bytes, about 360 kB per 30 s log-mel track) in memory after the first
pass, for corpora that fit.

Labels. `select_labels` picks the model's output tags from the clean vocabulary, in this order:
the `tags.top` most popular tags (all of them when `top` is null), by popularity (distinct tracks
per tag, ties by vocabulary order), then the `tags.with` tags not already there, in the order
given; `tags.without` tags are removed. A `tags.merge` group becomes one label, named after the
group's first tag and placed where its first selected member would be; its value is 1 when the
track has any tag of the group. The caller saves the label list with the model.

Windows. Training takes one window of `model-training.window_length` seconds at a random start
(when `window_random`), evaluation a centred one, song-level evaluation evenly spaced windows
covering the track (`track_windows`). A clip shorter than the window is repeated to fill it.
Song-level evaluation can also leave out silent windows by `predict`'s rule: the records store
each track's loudness per block, which `audio.Loudness` turns into window levels.
`features.normalise` scales each window to zero mean and unit variance (the original normalised
waveforms across the batch instead, and log-mels per whole track at prediction time). Window
arithmetic lives in `orpheus.features` (numpy and TensorFlow twins side by side), which the
Tagger uses without importing this module.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from orpheus import audio, features
from orpheus.config import Settings, TrainingSettings
from orpheus.errors import OrpheusError
from orpheus.records import loudness_block, read_index, spec_of


def select_labels(
    vocabulary: Sequence[str], popularity: Mapping[str, int], tags_cfg: Mapping
) -> tuple[list[str], list[list[int]]]:
    """The output labels and, per label, the vocabulary indices whose OR gives it."""
    column = {t: i for i, t in enumerate(vocabulary)}
    top = tags_cfg.get("top", 50)
    with_ = list(tags_cfg.get("with") or [])
    without = set(tags_cfg.get("without") or [])
    merge = [list(g) for g in (tags_cfg.get("merge") or [])]
    named = with_ + sorted(without) + [t for g in merge for t in g]
    unknown = [t for t in named if t not in column]
    if unknown:
        raise OrpheusError(
            f"tags not in the clean vocabulary: {', '.join(map(repr, unknown[:5]))}",
            hint="see `orpheus tfrecords inspect` for the tag names",
        )
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 0):
        raise OrpheusError(f"tags.top must be a non-negative integer or null, got {top!r}")
    by_pop = sorted(vocabulary, key=lambda t: (-int(popularity.get(t, 0)), column[t]))
    chosen = by_pop if top is None else by_pop[:top]
    chosen = chosen + [t for t in dict.fromkeys(with_) if t not in chosen]
    chosen = [t for t in chosen if t not in without]
    group_of: dict[str, int] = {}
    for gi, group in enumerate(merge):
        for t in group:
            if t in group_of and group_of[t] != gi:
                raise OrpheusError(f"tag {t!r} is in two tags.merge groups")
            group_of[t] = gi
    labels: list[str] = []
    groups: list[list[int]] = []
    placed: set[int] = set()
    for t in chosen:
        gi = group_of.get(t)
        if gi is None:
            labels.append(t)
            groups.append([column[t]])
        elif gi not in placed:
            placed.add(gi)
            labels.append(merge[gi][0])
            groups.append(sorted({column[m] for m in merge[gi]}))
    if not labels:
        raise OrpheusError("the tag selection is empty", hint="check tags.top/with/without")
    return labels, groups


def datasets(
    records_dir: Path,
    cfg: dict | Settings,
    splits: Sequence[str] = ("train", "valid"),
    *,
    seed: int = 0,
    tids: Collection[str] | None = None,
    repeat: bool = False,
    cache: bool = False,
    recipe: features.Recipe | None = None,
) -> tuple[dict[str, tf.data.Dataset], list[str]]:
    """Batched (x, y) datasets per split, and the label names (the order of y's columns).

    Train: random windows (if `window_random`), shuffled files and examples (if `shuffle`),
    full batches only; with `repeat`, the train split repeats forever before batching (for a
    fixed number of steps per epoch). Other splits: centred windows, file order, last batch kept.
    With `cache`, each split's parsed examples stay in memory after the first pass. A `recipe`
    (a pretrained model's) gives the window length in steps and whether windows are normalised.
    """
    settings = _settings(cfg)
    index, length, labels, groups = _setup(records_dir, settings)
    length, scale = (recipe.window, recipe.normalise) if recipe else (length, True)
    mt = settings.model_training
    feature = spec_of(index).step_shape
    step_bytes = 2 * math.prod(feature)  # stored as float16
    out: dict[str, tf.data.Dataset] = {}
    for k, name in enumerate(splits):
        training = name == "train"
        shuffle = training and mt.shuffle
        ds = _examples(records_dir, index, name, groups, mt, tids, shuffle, seed + 7 * k)
        if cache:
            ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(mt.shuffle_buffer_size, seed=seed + 7 * k + 1)
        if repeat and training:
            ds = ds.repeat()  # before batching, so a split smaller than a batch still fills one
        if training and mt.window_random:
            noise = tf.data.Dataset.random(seed=seed + 7 * k + 2).batch(2)
            ds = tf.data.Dataset.zip((ds, noise)).map(
                lambda ex, s: (_cut(ex, length, step_bytes, seed=s), ex["y"]),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        else:
            ds = ds.map(
                lambda ex: (_cut(ex, length, step_bytes), ex["y"]),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        ds = ds.batch(mt.batch_size, drop_remainder=training).map(
            lambda w, y: (_decode_windows(w, length, feature, scale), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        out[name] = ds.prefetch(tf.data.AUTOTUNE)
    return out, labels


def track_windows(
    records_dir: Path,
    cfg: dict | Settings,
    split: str,
    labels: Sequence[str],
    *,
    hop_seconds: float | None = None,
    tids: Collection[str] | None = None,
    recipe: features.Recipe | None = None,
    silence_db: float | None = None,
) -> tf.data.Dataset:
    """(tid, windows, y) per track, in file order, for song-level evaluation.

    `windows` is (n, frames, n_mels) or (n, samples): evenly spaced, normalised windows covering
    the whole track, about `hop_seconds` apart (default: one window length; see `even_windows`).
    `labels` are the trained model's (merge groups are taken from `tags.merge`).
    A `recipe` (the run's) gives the window length in steps and whether windows are normalised.
    With `silence_db`, each element is (tid, windows, y, audible): True for each window at or
    above that floor by predict's rule (`audio.Loudness.audible` over the records' stored
    loudness, the same starts in seconds and window length); all True for records built before
    they stored loudness (`records.loudness_block` is None).
    """
    index = read_index(records_dir)
    spec = spec_of(index)
    settings = _settings(cfg)
    mt = settings.model_training
    _check_split(index, mt.split, records_dir)
    seconds = mt.window_length
    length = _window_length(spec, seconds)
    hop = _window_length(spec, hop_seconds if hop_seconds else seconds)
    if recipe is not None:
        length, hop = recipe.window, recipe.hop_steps(hop_seconds)
    scale = recipe is None or recipe.normalise
    groups = _groups_for(labels, index["vocabulary"], settings.tags.merge or [])
    block = None if silence_db is None else loudness_block(index)
    ds = _examples(records_dir, index, split, groups, mt, tids, False, 0, block is not None)
    feature = spec.step_shape
    step_seconds = (
        recipe or features.Recipe.from_seconds(spec.format, spec.params, seconds)
    ).step_seconds
    rule = functools.partial(
        _audible,
        block=block,
        sample_rate=spec.sample_rate,
        step_seconds=step_seconds,
        window_seconds=length * step_seconds,
        silence_db=silence_db,
    )

    def element(ex):
        windows, starts = _even_windows(_decode(ex, feature), length, hop)
        windows = _scaled(windows, scale)
        if silence_db is None:
            return ex["tid"], windows, ex["y"]
        if block is None:
            return ex["tid"], windows, ex["y"], tf.ones_like(starts, tf.bool)
        audible = tf.numpy_function(
            rule, [ex["loudness"], ex["samples"], starts], tf.bool, stateful=False
        )
        audible.set_shape(starts.shape)
        return ex["tid"], windows, ex["y"], audible

    return ds.map(element, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# -- internals ----------------------------------------------------------------------------


def _settings(cfg: dict | Settings) -> Settings:
    """The typed config, from a config dict (defaults fill what it lacks) or as given."""
    return cfg if isinstance(cfg, Settings) else Settings.from_dict(cfg)


def _setup(records_dir: Path, settings: Settings) -> tuple[dict, int, list[str], list[list[int]]]:
    index = read_index(records_dir)
    mt = settings.model_training
    _check_split(index, mt.split, records_dir)
    length = _window_length(spec_of(index), mt.window_length)
    tags = settings.tags
    selection = {"top": tags.top, "with": tags.with_, "without": tags.without, "merge": tags.merge}
    labels, groups = select_labels(index["vocabulary"], index["popularity"], selection)
    return index, length, labels, groups


def _window_length(spec, seconds: float) -> int:
    return features.Recipe.from_seconds(spec.format, spec.params, seconds).window


def _audible(
    energy: bytes,
    samples: int,
    starts: np.ndarray,
    *,
    block: int,
    sample_rate: int,
    step_seconds: float,
    window_seconds: float,
    silence_db: float,
) -> np.ndarray:
    """Predict's window rule over one Example's stored loudness (`starts` in feature steps);
    an Example written without loudness keeps every window."""
    values = np.frombuffer(energy, dtype="<f4")
    if not len(values):
        return np.ones(len(starts), dtype=bool)
    loudness = audio.Loudness.from_energy(values, samples, block)
    return loudness.audible(sample_rate, starts * step_seconds, window_seconds, silence_db)


def _check_split(index: Mapping, split: Sequence[float], records_dir: Path) -> None:
    built = [float(v) for v in index["split"].values()]
    if built != [float(v) for v in split]:
        raise OrpheusError(
            f"the TFRecords in {records_dir} were split {built}, the config says {list(split)}",
            hint="rebuild them with `orpheus tfrecords build`, or set model-training.split back",
        )


def _groups_for(labels: Sequence[str], vocabulary: Sequence[str], merge) -> list[list[int]]:
    column = {t: i for i, t in enumerate(vocabulary)}
    heads = {g[0]: g for g in merge if g}
    groups = []
    for label in labels:
        members = heads.get(label, [label])
        missing = [m for m in members if m not in column]
        if missing:
            raise OrpheusError(f"label {missing[0]!r} is not in the TFRecords' vocabulary")
        groups.append(sorted({column[m] for m in members}))
    return groups


def _examples(
    records_dir: Path,
    index: Mapping,
    split: str,
    groups: list[list[int]],
    mt: TrainingSettings,
    tids: Collection[str] | None,
    shuffle_files: bool,
    seed: int,
    loudness: bool = False,
) -> tf.data.Dataset:
    """Examples of one split as {tid, audio (the stored float16 bytes), frames, y}, and with
    `loudness` the stored loudness bytes and sample count (empty and 0 where an Example has none).

    `frames` is the length of the first axis (frames or samples), `y` the float32 labels; tracks
    without a selected label, and tracks not in `tids`, are dropped.
    """
    wanted = None if tids is None else set(tids)
    shards = [s for s in index["shards"] if s["split"] == split]
    if wanted is not None:
        shards = [s for s in shards if wanted.intersection(s["tids"])]
    if not shards:
        what = "none of the given tracks is" if wanted is not None else "no tracks are"
        raise OrpheusError(
            f"{what} in split '{split}' of {records_dir}",
            hint="build TFRecords from more tracks, or change model-training.split",
        )
    files = [str(Path(records_dir) / s["file"]) for s in shards]
    compression = index.get("compression") or ""
    features = {
        "tid": tf.io.FixedLenFeature([], tf.string),
        "audio": tf.io.FixedLenFeature([], tf.string),
        "shape": tf.io.FixedLenFeature([spec_of(index).ndim], tf.int64),
        "tags": tf.io.FixedLenFeature([len(index["vocabulary"])], tf.int64),
    }
    if loudness:
        features["loudness"] = tf.io.FixedLenFeature([], tf.string, default_value="")
        features["samples"] = tf.io.FixedLenFeature([], tf.int64, default_value=0)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression),
        cycle_length=max(1, mt.interleave_cycle_length),
        block_length=max(1, mt.interleave_block_length),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    table = None
    if wanted is not None:
        keys = tf.constant(sorted(wanted))
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, tf.int32)), 0
        )
    matrix = np.zeros((len(index["vocabulary"]), len(groups)), np.float32)
    for j, members in enumerate(groups):
        matrix[members, j] = 1.0
    m = tf.constant(matrix)

    def parse(serialized):
        ex = tf.io.parse_single_example(serialized, features)
        y = tf.minimum(tf.linalg.matvec(m, tf.cast(ex["tags"], tf.float32), transpose_a=True), 1.0)
        frames = tf.cast(ex["shape"][0], tf.int32)
        out = {"tid": ex["tid"], "audio": ex["audio"], "frames": frames, "y": y}
        return {**out, **{k: ex[k] for k in ("loudness", "samples") if loudness}}

    def keep(ex):
        labelled = tf.reduce_max(ex["y"]) > 0
        return labelled if table is None else labelled & (table.lookup(ex["tid"]) > 0)

    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).filter(keep)


def _decode(ex, feature: tuple[int, ...]):
    """One example's whole track as float32 (frames, *feature)."""
    x = tf.io.decode_raw(ex["audio"], tf.float16, little_endian=True)
    return tf.cast(tf.reshape(x, [-1, *feature]), tf.float32)


def _cut(ex, length: int, step_bytes: int, seed=None):
    """The bytes of one window of `length` steps: at a random start when a `seed` is given, else
    centred. A clip shorter than the window is repeated to fill it."""
    audio, frames = ex["audio"], ex["frames"]
    reps = tf.maximum(1, (length + frames - 1) // tf.maximum(frames, 1))
    audio = tf.cond(reps > 1, lambda: tf.strings.reduce_join(tf.repeat(audio, reps)), lambda: audio)
    span = frames * reps - length + 1  # possible starts
    if seed is None:
        start = (span - 1) // 2
    else:
        start = tf.random.stateless_uniform([], seed=seed, minval=0, maxval=span, dtype=tf.int32)
    return tf.strings.substr(audio, start * step_bytes, length * step_bytes)


def _decode_windows(cut, length: int, feature: tuple[int, ...], scale: bool = True):
    """A batch of window bytes -> float32 windows (batch, length, *feature), normalised if
    `scale`."""
    x = tf.io.decode_raw(cut, tf.float16, little_endian=True)
    x = tf.cast(tf.reshape(x, [tf.shape(cut)[0], length, *feature]), tf.float32)
    return _scaled(x, scale)


def _scaled(windows, scale: bool):
    """Windows normalised one by one when `scale` (Orpheus's recipes), else as they are."""
    return features.normalise(windows, batched=True) if scale else windows


def _fill(x, length: int):
    """Repeat a clip shorter than `length` along time until it is long enough."""
    n = tf.shape(x)[0]
    reps = tf.maximum(1, (length + n - 1) // n)
    multiples = tf.concat([[reps], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
    return tf.cond(n < length, lambda: tf.tile(x, multiples), lambda: x)


def _even_windows(x, length: int, hop: int):
    """TensorFlow twin of `features.even_windows` (x: one whole track, time first), and the
    windows' starts in steps (int64)."""
    starts = features.window_starts_tf(tf.shape(x)[0], length, hop)
    return _windows_at(x, starts, length), starts


def _windows_at(x, starts, length: int):
    """The windows of `x` at `starts` (int64), `length` steps each, repeat-filled if short."""
    idx = tf.cast(starts, tf.int32)[:, None] + tf.range(length)[None, :]
    w = tf.gather(_fill(x, length), idx)
    w.set_shape([None, length] + x.shape[1:].as_list())
    return w
