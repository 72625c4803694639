"""TFRecord encoding, the hash split, shard plans, resumable builds, Beam == local, the CLI."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from records_helpers import VOCABULARY, make_corpus, make_workspace

from orpheus import audio, records
from orpheus.errors import OrpheusError

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"), n=10, untagged=1, broken=1)


def _plan(corpus, **kw):
    return records.plan(corpus.tracks, corpus.tags, VOCABULARY, corpus.popularity, **kw)


def _all_examples(out: Path, index: dict) -> dict[str, list[bytes]]:
    return {
        s["file"]: list(records.read_records(out / s["file"], index["compression"]))
        for s in index["shards"]
    }


def test_split_is_a_stable_function_of_the_track_id():
    tids = [f"TR{i:016X}" for i in range(20000)]
    splits = [records.split_of(t, [80, 10, 10]) for t in tids]
    share = {name: splits.count(name) / len(tids) for name in records.SPLIT_NAMES}
    assert share["train"] == pytest.approx(0.8, abs=0.01)
    assert share["valid"] == pytest.approx(0.1, abs=0.01)
    # the same track lands in the same split whatever else is in the corpus
    assert [records.split_of(t, [80, 10, 10]) for t in reversed(tids)] == splits[::-1]
    assert {records.split_of(t, [100]) for t in tids[:100]} == {"train"}
    # a track only moves towards later splits when earlier percentages shrink
    assert all(
        records.split_of(t, [70, 20, 10]) in ("valid", "test")
        for t, s in zip(tids, splits, strict=True)
        if s == "valid"
    )


def test_plan_puts_every_tagged_track_in_exactly_one_shard(corpus):
    plan = _plan(corpus, shards=4)
    placed = [t.tid for s in plan.shards for t in s.tracks]
    tagged = [tid for tid, _ in corpus.tracks if corpus.tags.get(tid)]
    assert sorted(placed) == sorted(tagged)
    assert plan.untagged == sorted(set(dict(corpus.tracks)) - set(tagged))
    for s in plan.shards:
        assert s.file.startswith(s.split + "-") and s.tracks
        assert all(records.split_of(t.tid, [80, 10, 10]) == s.split for t in s.tracks)
    assert _plan(corpus, shards=4).digest == plan.digest
    assert _plan(corpus, shards=1).digest != plan.digest


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shards": 0}, "--shards must be at least 1"),
        ({"split": [80, 10]}, "adding up to 100"),
        ({"compression": "ZLIB"}, "unknown compression"),
    ],
)
def test_plan_rejects_bad_parameters(corpus, kwargs, message):
    with pytest.raises(OrpheusError, match=message):
        _plan(corpus, **kwargs)


def test_plan_rejects_empty_or_untagged_track_lists(corpus):
    with pytest.raises(OrpheusError, match="track list is empty"):
        records.plan([], corpus.tags, VOCABULARY, corpus.popularity)
    with pytest.raises(OrpheusError, match="has a clean tag"):
        records.plan(corpus.tracks, {}, VOCABULARY, corpus.popularity)


@pytest.mark.parametrize("fmt", ["log-mel", "waveform"])
def test_round_trip_matches_the_feature_computed_from_the_mp3(corpus, fmt, tmp_path):
    spec = records.FeatureSpec(fmt)
    index = records.build(tmp_path, _plan(corpus, spec=spec, shards=1), workers=1).index
    shard = index["shards"][0]
    ex = records.decode_example(next(iter(records.read_records(tmp_path / shard["file"]))))
    assert ex["tid"] == shard["tids"][0]
    path = dict(corpus.tracks)[ex["tid"]]
    direct = spec.compute(path)
    assert ex["audio"].dtype == np.float32 and ex["audio"].shape == direct.shape
    assert ex["audio"].ndim == (2 if fmt == "log-mel" else 1)
    # exactly the float16 rounding of the direct feature, so within float16 precision of it
    np.testing.assert_array_equal(ex["audio"], direct.astype(np.float16).astype(np.float32))
    np.testing.assert_allclose(ex["audio"], direct, rtol=1e-3, atol=1e-4)
    tags = {VOCABULARY.index(t) for t in corpus.tags[ex["tid"]]}
    assert ex["tags"].tolist() == [int(i in tags) for i in range(len(VOCABULARY))]


def test_build_writes_shards_and_an_index_and_counts_what_it_skipped(corpus, tmp_path):
    plan = _plan(corpus, shards=3, compression="GZIP")
    result = records.build(tmp_path / "out", plan, workers=1)
    index = result.index
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [records.INDEX_FILE] + [s.file for s in plan.shards]
    )
    assert index["skipped"] == {"untagged": 1, "undecodable": 1}
    assert index["vocabulary"] == VOCABULARY
    assert index["feature"] == {
        "format": "log-mel",
        "sample_rate": 16000,
        "n_fft": 512,
        "hop_length": 256,
        "n_mels": 96,
        "dtype": "float16",
        "loudness_block": 256,
    }
    assert index["version"] == records.INDEX_VERSION == 2
    examples = _all_examples(out, index)
    seen = []
    for shard in index["shards"]:
        decoded = [records.decode_example(b) for b in examples[shard["file"]]]
        assert [d["tid"] for d in decoded] == shard["tids"]
        assert shard["count"] == len(decoded)
        seen += shard["tids"]
    assert len(seen) == len(set(seen)) == index["tracks"] == 8
    assert sum(index["counts"].values()) == 8
    again = records.build(out, plan, workers=1)
    assert (again.written, again.reused) == (0, len(plan.shards))


def test_pool_of_two_workers_writes_the_same_bytes_as_one(corpus, tmp_path):
    plan = _plan(corpus, shards=3, spec=records.FeatureSpec("waveform"))
    one = records.build(tmp_path / "one", plan, workers=1).index
    two = records.build(tmp_path / "two", plan, workers=2).index
    assert _all_examples(tmp_path / "one", one) == _all_examples(tmp_path / "two", two)


def test_beam_runner_output_equals_the_local_runner_example_for_example(corpus, tmp_path):
    plan = _plan(corpus, shards=3)
    local = records.build(tmp_path / "local", plan, workers=1).index
    beam = records.build(
        tmp_path / "beam", plan, runner="beam", beam_options="--runner=DirectRunner"
    ).index
    assert beam == local
    assert _all_examples(tmp_path / "beam", beam) == _all_examples(tmp_path / "local", local)


def test_a_build_killed_half_way_resumes_and_writes_every_track_once(tmp_path):
    corpus = make_corpus(tmp_path / "c", n=16, untagged=0)
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from pathlib import Path
        from records_helpers import VOCABULARY, make_corpus
        from orpheus import records
        from orpheus.lastfm.db import LastFm
        import pandas as pd
        if __name__ == "__main__":
            root = Path({str(tmp_path / "c")!r})
            table = pd.read_parquet(root / "silence.parquet")
            with LastFm(root / "clean_lastfm.db") as db:
                vocab, pop = db.vocabulary(), db.popularity().to_dict()
                tags = db.tags_of_tracks(table["track_id"])
            tracks = [(t, str(root / "audio" / p)) for t, p in zip(table.track_id, table.file_path)]
            plan = records.plan(tracks, tags, vocab, pop, shards=16)
            r = records.build(Path({str(out)!r}), plan, workers=1)
            print("written", r.written, "reused", r.reused)
        """
    )
    proc = subprocess.Popen([PY, "-c", script], env=ENV, stderr=subprocess.DEVNULL)
    try:
        while not any(p.suffix == ".tfrecord" for p in out.glob("*")) and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / records.INDEX_FILE).exists()  # killed before the end
    finished = {p.name for p in out.glob("*.tfrecord")}
    done = subprocess.run([PY, "-c", script], env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    index = records.read_index(out)
    assert 1 <= len(finished) < len(index["shards"])
    assert done.stdout.split() == [
        "written",
        str(len(index["shards"]) - len(finished)),
        "reused",
        str(len(finished)),
    ]
    tids = [t for s in index["shards"] for t in s["tids"]]
    decoded = [
        records.decode_example(b)["tid"]
        for s in index["shards"]
        for b in records.read_records(out / s["file"])
    ]
    assert sorted(tids) == sorted(decoded) == sorted(t for t, _ in corpus.tracks)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not (out / records.PROGRESS_DIR).exists()


def _readonly(path: Path):
    """Make the empty folder `path` unwritable, even for root; return how to undo it.

    Root writes through mode 555, so as root the folder is made immutable (chattr +i). Where the
    container lacks CAP_LINUX_IMMUTABLE, `path` becomes a link to a procfs folder, where nobody can
    create files.
    """
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)
    path.rmdir()
    path.symlink_to("/proc/self/fdinfo")
    return lambda: (path.unlink(), path.mkdir())


def test_read_only_output_is_a_one_line_error_before_any_decoding(corpus, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    undo = _readonly(out)
    try:
        with pytest.raises(OrpheusError, match="cannot write TFRecords"):
            records.build(out, _plan(corpus), workers=1)
    finally:
        undo()


# -- the command ------------------------------------------------------------------------------


def _orpheus(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "orpheus", "-w", str(ws), "-q", *args],
        env=ENV,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def workspace(corpus, tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("ws"), corpus).root


def test_cli_build_then_inspect(workspace, tmp_path):
    done = _orpheus(workspace, "tfrecords", "build", "--shards", "2", "--workers", "1", "--gzip")
    assert done.returncode == 1, done.stderr  # one undecodable track: partial
    index = records.read_index(workspace / "tfrecords/log-mel")
    assert index["compression"] == "GZIP" and index["tracks"] == 8
    assert index["skipped"] == {"untagged": 1, "undecodable": 1}
    png = tmp_path / "mel.png"
    shown = _orpheus(workspace, "tfrecords", "inspect", "--plot", str(png))
    assert shown.returncode == 0, shown.stderr
    assert "bytes per track" in shown.stdout and "shape (" in shown.stdout
    assert png.stat().st_size > 1000
    import json

    manifest = json.loads((workspace / "manifest.json").read_text())
    entry = manifest["artifacts"]["tfrecords/log-mel"]
    assert set(entry["inputs"]) == {"silence", "clean-tags"}
    assert entry["params"]["compression"] == "GZIP"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("no-silence", [], "no silence yet"),
        ("no-clean", [], "no clean-tags yet"),
        ("empty", [], "track list is empty"),
        ("ok", ["--shards", "0"], "--shards must be at least 1"),
        ("ok", ["--format", "mfcc"], "unknown format"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(corpus, tmp_path, setup, args, message):
    import pandas as pd

    ws = make_workspace(tmp_path / "ws", corpus)
    if setup == "no-silence":
        ws.forget("silence")
    elif setup == "no-clean":
        ws.forget("clean-tags")
    elif setup == "empty":
        pd.read_parquet(corpus.silence).iloc[:0].to_parquet(tmp_path / "ws/data/silence.parquet")
    done = _orpheus(ws.root, "tfrecords", "build", *args)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_cli_read_only_workspace_output_exits_2(corpus, tmp_path):
    ws = make_workspace(tmp_path / "ws", corpus)
    out = ws.root / "tfrecords"
    out.mkdir()
    undo = _readonly(out)
    try:
        done = _orpheus(ws.root, "tfrecords", "build")
    finally:
        undo()
    assert done.returncode == 2 and "cannot write TFRecords" in done.stderr, done.stderr


# -- writing without TensorFlow, in the workers -----------------------------------------------


def _tf_example(tid: str, feature: np.ndarray, tags, n_tags: int, loudness=None) -> bytes:
    """TensorFlow's own Example for a track: the oracle of `records.encode_example`."""
    import tensorflow as tf

    arr = np.asarray(feature, dtype="<f2")
    hot = np.zeros(n_tags, dtype=np.int64)
    hot[list(tags)] = 1
    feats = {
        "tid": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tid.encode("utf-8")])),
        "audio": tf.train.Feature(bytes_list=tf.train.BytesList(value=[arr.tobytes()])),
        "shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(arr.shape))),
        "tags": tf.train.Feature(int64_list=tf.train.Int64List(value=hot.tolist())),
    }
    if loudness is not None:
        energy = loudness.energy().astype("<f4").tobytes()
        feats["loudness"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[energy]))
        feats["samples"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[loudness.samples]))
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return example.SerializeToString(deterministic=True)


def _loudness(samples: int) -> audio.Loudness:
    loudness = audio.Loudness()
    loudness.push(np.random.default_rng(1).standard_normal(samples).astype(np.float32))
    return loudness


@pytest.mark.parametrize(
    ("tid", "shape", "tags", "n_tags", "samples"),
    [
        ("TRAAAGR128F425B14B", (1876, 96), [0, 5], 155, 480000),  # a 30 s log-mel
        ("TR" + "ü" * 70, (200,), [154], 155, 200),  # a tid whose length takes a 2-byte varint
        ("TRB", (0, 96), [0], 1, 0),  # no frames at all, no loudness block
        ("TRC", (3,), [], 300, 3),  # no tag on: an all-zero multi-hot
        ("TRD", (5, 96), [1], 2, None),  # an index version 1 Example: no loudness
    ],
)
def test_encoded_example_is_byte_for_byte_tensorflows(tid, shape, tags, n_tags, samples):
    feature = np.random.default_rng(0).standard_normal(shape)
    loudness = None if samples is None else _loudness(samples)
    encoded = records.encode_example(tid, feature, tags, n_tags, loudness)
    assert encoded == _tf_example(tid, feature, tags, n_tags, loudness)
    back = records.decode_example(encoded)["loudness"]
    if loudness is None:
        assert back is None
    else:  # float32 energies: each within float32 rounding of the float64 original
        assert back.samples == loudness.samples and back.block == audio.LOUDNESS_BLOCK
        np.testing.assert_allclose(back.energy(), loudness.energy(), rtol=1e-7, atol=0)


@pytest.mark.parametrize("compression", [None, "GZIP"])
def test_worker_written_shards_equal_tensorflows_writer_byte_for_byte(
    corpus, tmp_path, compression
):
    import tensorflow as tf

    plan = _plan(corpus, shards=3, compression=compression)
    index = records.build(tmp_path / "out", plan, workers=2).index
    bad = set(index["skipped_tids"]["undecodable"])
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    for shard in plan.shards:
        expected = tmp_path / f"tf-{shard.file}"
        with tf.io.TFRecordWriter(str(expected), options) as writer:
            for t in shard.tracks:
                if t.tid not in bad:
                    feature, loudness = plan.spec.compute_with_loudness(t.path)
                    n_tags = len(VOCABULARY)
                    writer.write(_tf_example(t.tid, feature, t.tags, n_tags, loudness))
        assert (tmp_path / "out" / shard.file).read_bytes() == expected.read_bytes(), shard.file


def test_tensorflow_reads_worker_shards_back_and_checks_their_crcs(corpus, tmp_path):
    import tensorflow as tf

    plan = _plan(corpus, shards=2)
    index = records.build(tmp_path / "out", plan, workers=2).index
    for shard in index["shards"]:
        path = tmp_path / "out" / shard["file"]
        read = [records.decode_example(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
        assert [d["tid"] for d in read] == shard["tids"]
    # the reader does check the data's CRC: one flipped bit in the last record's is an error
    path = tmp_path / "out" / index["shards"][0]["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(tf.errors.DataLossError):
        list(tf.data.TFRecordDataset(str(path)))


def test_a_build_never_imports_tensorflow_in_the_parent_or_the_workers(corpus, tmp_path):
    """A `tensorflow` that cannot be imported, first on the path of the build and its pool."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('TensorFlow was imported')\n")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from pathlib import Path
        from records_helpers import VOCABULARY, make_corpus
        from orpheus import records
        if __name__ == "__main__":
            corpus = make_corpus(Path({str(tmp_path / "c")!r}), n=6, untagged=0)
            plan = records.plan(corpus.tracks, corpus.tags, VOCABULARY, {{}}, shards=3)
            for workers in (1, 2):
                records.build(Path({str(tmp_path)!r}) / f"out{{workers}}", plan, workers=workers)
            print("tensorflow" in sys.modules)
        """
    )
    env = {**ENV, "PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{ROOT}"}
    done = subprocess.run([PY, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False"]
    index = records.read_index(tmp_path / "out2")
    assert index == records.read_index(tmp_path / "out1") and index["tracks"] == 6
    for shard in index["shards"]:
        one, two = (tmp_path / f"out{w}" / shard["file"] for w in (1, 2))
        assert one.read_bytes() == two.read_bytes()


def test_pool_workers_start_with_the_stage_loaded_and_without_tensorflow():
    """The fork server imported PRELOAD once; the workers fork from it, not from this process."""
    import tensorflow  # noqa: F401  (the parent holds TensorFlow, as `orpheus train` would)

    from orpheus import pool

    probe = "sorted(m for m in ('tensorflow', 'librosa.feature.spectral', 'soxr') if m in "
    probe += "__import__('sys').modules), __import__('os').getpid()"
    with pool.executor(2, records.PRELOAD) as ex:
        seen = list(ex.map(eval, [probe] * 8))
    assert {tuple(m) for m, _ in seen} == {("librosa.feature.spectral", "soxr")}
    assert os.getpid() not in {pid for _, pid in seen}


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    """A live process's state letter and parent pid (Linux /proc), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [p for p in pids if (_state_and_parent(p) or ("", -1))[1] == pid]


def test_pool_workers_exit_when_the_build_is_sigkilled(corpus, tmp_path):
    out = tmp_path / "out"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from orpheus import records
        if __name__ == "__main__":
            paths = {[p for _, p in corpus.tracks[1:]]!r}  # the first one is not audio
            tracks = [(f"TRKILL{{i:012d}}", paths[i % len(paths)]) for i in range(600)]
            tags = {{t: [{VOCABULARY[0]!r}] for t, _ in tracks}}
            plan = records.plan(tracks, tags, {VOCABULARY!r}, {{}}, split=[100], shards=24)
            records.build(Path({str(out)!r}), plan, workers=2)
        """
    )
    proc = subprocess.Popen([PY, "-c", script], env=ENV, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        while proc.poll() is None and not any(p.suffix == ".tfrecord" for p in out.glob("*")):
            time.sleep(0.01)
        workers = [w for child in _children(proc.pid) for w in _children(child)]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and len(workers) == 2  # killed mid-build
    deadline = time.monotonic() + 60  # a safety net only: they go within about a second
    while time.monotonic() < deadline:
        alive = [w for w in workers if (_state_and_parent(w) or ("Z",))[0] != "Z"]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"pool workers {alive} outlived the build"
