"""The embedding cache: every window's penultimate-layer vector, per track and per model.

A head (`orpheus.heads`) learns from these vectors instead of from audio, so they are computed
once per (TFRecords, model) and kept in the workspace as `embeddings/<model>.npz`, an artifact in
the manifest whose inputs are the TFRecords and the model (a bundled model's weights file, or
the run). `orpheus status` therefore marks the cache stale when either changes, and `cached`
recomputes it only then; otherwise every head run reuses the same file.

The vectors are what `Tagger` calls embeddings: the input of the model's `output` layer, at
inference (no dropout). The windows are the model's own recipe (`features.Recipe`): for the
musicnn taggers 187-frame (3 s) log-mel patches fed as they are, evenly spaced over the whole
track one window apart, the windows song-level evaluation and `predict` use. The log-mels are the
TFRecords' own (stored as float16), so the records must hold the model's features (`check`).

The file holds, per track: `tids`, `splits`, `tags` (the records' multi-hot vocabulary row, so
any tag selection can be made later), and per window: `track` (index into `tids`), `window`
(index within the track) and `vectors` (float32). TensorFlow is imported only to compute.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orpheus import features, pretrained
from orpheus.errors import OrpheusError
from orpheus.io import write_atomic_via

if TYPE_CHECKING:
    import keras

    from orpheus.workspace import Workspace

CACHE_DIR = "embeddings"
RECORDS = "tfrecords/log-mel"
BATCH = 32


@dataclass
class Source:
    """A model to learn from: how to build it (a fresh copy per call), its recipe, its inputs."""

    name: str  # "msd-musicnn", "mtt-musicnn" or "run/<id>"
    build: Callable[[], keras.Model]
    recipe: features.Recipe
    inputs: dict[str, str]  # manifest inputs: the model artifact or its weights file

    @functools.cached_property
    def model(self) -> keras.Model:
        return self.build()


@dataclass
class Embeddings:
    """One cache: per track (tids, splits, tags), per window (track, window, vectors)."""

    tids: np.ndarray
    splits: np.ndarray
    tags: np.ndarray  # (tracks, vocabulary) uint8
    vocabulary: list[str]
    track: np.ndarray  # (windows,) int64
    window: np.ndarray  # (windows,) int64
    vectors: np.ndarray  # (windows, dim) float32

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def song_vectors(self) -> np.ndarray:
        """(tracks, dim): each track's mean embedding over its windows."""
        sums = np.zeros((len(self.tids), self.dim), np.float64)
        np.add.at(sums, self.track, self.vectors)
        counts = np.bincount(self.track, minlength=len(self.tids))[:, None]
        return (sums / np.maximum(counts, 1)).astype(np.float32)


def artifact_name(model: str) -> str:
    """The manifest name of a model's cache: `embeddings/msd-musicnn`, `embeddings/run-<id>`."""
    return f"{CACHE_DIR}/{model.replace('/', '-')}"


def open_source(ws: Workspace, model: str) -> Source:
    """A bundled model by name, or a run of this workspace (`RUN` or `run/RUN`).

    The recipe is the one a Tagger of that model uses. The model is built with a fixed window
    length, so a run made from it records its windows in its input shape too.
    """
    if model in pretrained.NAMES:
        from orpheus.tagger import Tagger

        weights = pretrained.weights_path(model)
        recipe = Tagger.pretrained(model).recipe

        def build() -> keras.Model:
            from orpheus.models.musicnn import build_musicnn

            net = build_musicnn(len(pretrained.labels(model)), frames=recipe.window)
            net.load_weights(weights)
            return net

        return Source(model, build, recipe, {"model": str(weights)})
    from orpheus import runs

    run = runs.find(ws, model)
    if not run.dir.is_dir():
        raise OrpheusError(
            f"no model {model!r}: neither a run nor a bundled model",
            hint=f"a run id, or one of {', '.join(pretrained.NAMES)}",
        )
    recipe = run.require_model().recipe
    inputs = {"model": run.name if ws.entry(run.name) else str(run.model_path)}
    return Source(run.name, lambda: runs.load_model(run), recipe, inputs)


def check(index: dict, recipe: features.Recipe, records_dir: Path, model: str) -> None:
    """Refuse records that do not hold `recipe`'s features, saying how to build ones that do."""
    from orpheus.records import spec_of

    spec = spec_of(index)
    if spec.format == recipe.frontend and spec.params == recipe.mel:
        return
    mel = recipe.mel
    have = f"{spec.format} at {spec.sample_rate} Hz" + (
        f", {spec.params.n_mels} mels, n_fft {spec.params.n_fft}, hop {spec.params.hop_length}"
    ) * (spec.format == features.LOG_MEL)
    raise OrpheusError(
        f"{model} needs {recipe.frontend} records at {mel.sample_rate} Hz with {mel.n_mels} mels, "
        f"n_fft {mel.n_fft}, hop {mel.hop_length}; {records_dir} holds {have}",
        hint=f"`orpheus config set tfrecords.n_fft {mel.n_fft}`, `orpheus config set "
        f"tfrecords.hop_length {mel.hop_length}`, then `orpheus tfrecords build --format "
        f"{recipe.frontend} --sr {mel.sample_rate} --mels {mel.n_mels}`",
    )


def embedder(model: keras.Model, recipe: features.Recipe) -> Callable[[np.ndarray], np.ndarray]:
    """A function from one track's whole feature (steps, ...) to its windows' embeddings."""
    import keras
    import tensorflow as tf

    trunk = keras.Model(model.input, model.get_layer("output").input)
    spec = tf.TensorSpec([None, recipe.window, *model.input_shape[2:]], tf.float32)
    forward = tf.function(lambda x: trunk(x, training=False), input_signature=[spec])

    def embed(feature: np.ndarray) -> np.ndarray:
        wins, _ = recipe.windows(feature)
        out = [
            forward(tf.constant(wins[i : i + BATCH])).numpy() for i in range(0, len(wins), BATCH)
        ]
        return np.concatenate(out).astype(np.float32)

    return embed


def compute(
    tracks: Iterable[tuple[str, str, np.ndarray, np.ndarray]],
    embed: Callable[[np.ndarray], np.ndarray],
    vocabulary: list[str],
) -> Embeddings:
    """Embeddings of (tid, split, feature, tags) tracks, in the order given."""
    tids, splits, tags, track, window, vectors = [], [], [], [], [], []
    for i, (tid, split, feature, hot) in enumerate(tracks):
        v = embed(feature)
        tids.append(tid)
        splits.append(split)
        tags.append(np.asarray(hot, np.uint8))
        track.append(np.full(len(v), i, np.int64))
        window.append(np.arange(len(v), dtype=np.int64))
        vectors.append(v)
    if not tids:
        raise OrpheusError("no tracks to embed")
    return Embeddings(
        np.array(tids),
        np.array(splits),
        np.stack(tags),
        list(vocabulary),
        np.concatenate(track),
        np.concatenate(window),
        np.concatenate(vectors),
    )


def record_tracks(
    records_dir: Path, index: dict
) -> Iterator[tuple[str, str, np.ndarray, np.ndarray]]:
    """(tid, split, feature float32, multi-hot tags) of every track in a TFRecords build."""
    from orpheus.records import decode_example, read_records

    for shard in index["shards"]:
        for raw in read_records(Path(records_dir) / shard["file"], index.get("compression")):
            ex = decode_example(raw)
            yield ex["tid"], shard["split"], ex["audio"], ex["tags"]


def save(path: Path, emb: Embeddings) -> None:
    """Write a cache atomically (a plain npz: no pickle, read with allow_pickle=False)."""
    arrays = {
        "tids": emb.tids.astype(str),
        "splits": emb.splits.astype(str),
        "tags": emb.tags,
        "vocabulary": np.array(emb.vocabulary, dtype=str),
        "track": emb.track,
        "window": emb.window,
        "vectors": emb.vectors,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic_via(Path(path), lambda fh: np.savez(fh, **arrays))


def load(path: Path) -> Embeddings:
    """Read a cache written by `save`; a damaged file is a one-line error naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return Embeddings(
                data["tids"],
                data["splits"],
                data["tags"],
                data["vocabulary"].tolist(),
                data["track"],
                data["window"],
                data["vectors"],
            )
    except FileNotFoundError:
        raise OrpheusError(f"no embedding cache {path}") from None
    except Exception as exc:  # zipfile, KeyError, ValueError: a damaged or foreign file
        raise OrpheusError(
            f"cannot read the embedding cache {path} ({type(exc).__name__})",
            hint="delete it: the next head run computes it again",
        ) from None


def cached(
    ws: Workspace,
    source: Source,
    *,
    records: str = RECORDS,
    on_track: Callable[[], None] | None = None,
) -> tuple[Embeddings, bool]:
    """The cache of `source` over the workspace's records, and whether it was reused.

    Reused when the manifest has it, `orpheus status` would call it ok (neither the records nor
    the model changed since) and it was made with the same recipe; else computed and registered.
    """
    from orpheus.records import naming_damaged_shards, read_index
    from orpheus.workspace import OK

    records_dir = ws.require(records)
    index = read_index(records_dir)
    check(index, source.recipe, records_dir, source.name)
    name = artifact_name(source.name)
    params = {"model": source.name, "recipe": source.recipe.to_dict()}
    entry = ws.entry(name)
    path = ws.path(f"{name}.npz")
    if entry is not None and entry["params"] == params and ws.state(name) == OK:
        return load(path), True
    embed = embedder(source.model, source.recipe)

    def tracks():
        for item in record_tracks(records_dir, index):
            yield item
            if on_track is not None:
                on_track()

    with naming_damaged_shards(records_dir, index):
        emb = compute(tracks(), embed, index["vocabulary"])
    save(path, emb)
    ws.register(
        name,
        path,
        params=params,
        inputs={"tfrecords": records, **source.inputs},
        summary={"tracks": len(emb.tids), "windows": len(emb.vectors), "dim": emb.dim},
    )
    return emb, False
