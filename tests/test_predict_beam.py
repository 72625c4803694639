"""`predict --runner beam`: the local runner's records from a Beam pipeline on two workers, and
the one-line refusals (no -o, options shards cannot hold, bad Beam options, Beam missing)."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from cli_helpers import NO_WS, orpheus
from process_helpers import ENV, PY, ROOT
from tagger_helpers import music, write

from orpheus import predicting

TWO_WORKERS = "--direct_num_workers=2 --direct_running_mode=multi_processing"
# Both runners call predicting.tag_record's Tagger on the same decoded audio: the records were
# equal to the digit here. Only the BLAS summation order of another process could move a
# probability, by at most the last of the 6 digits records keep.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam songs")
    (root / "sub").mkdir()
    write(root / "a.wav", music(6.0, seed=1))
    write(root / "sub" / "b.flac", music(4.0, seed=2))
    write(root / "quiet.wav", np.zeros(4 * 16000, np.float32))  # tagged, with the note "silent"
    write(root / "short.wav", music(0.3, seed=3))  # skipped: too short
    (root / "broken.wav").write_bytes(b"RIFF not really")  # skipped: not audio
    (root / "notes.txt").write_text("not audio")  # ignored in a folder
    return root


def test_beam_on_two_workers_writes_the_local_runners_records(songs, tmp_path):
    missing = songs / "gone.mp3"
    prefix = tmp_path / "out" / "tags"
    args = ["predict", songs, missing, "-t", "0.05", "--top-k", "3", "-o", prefix]
    result = orpheus(*args, "--runner", "beam", "--beam-options", TWO_WORKERS)
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = result.stdout.strip()
    assert summary.startswith("tagged 3 (0:00:14 of audio in "), summary  # 6 + 4 + 4 s
    skips = "1 no such file or folder, 1 not a recognised audio format, 1 too short"
    assert f"1 silent, skipped 3 ({skips}), 1 non-audio file(s) ignored" in summary, summary
    assert summary.endswith(f"the model loaded on 2 worker(s); records in {prefix}-*-of-*.jsonl")
    shards = sorted(prefix.parent.glob("tags-*-of-*.jsonl"))
    assert shards and all(s.name.endswith(f"-of-{len(shards):05d}.jsonl") for s in shards)
    got = [json.loads(line) for s in shards for line in s.read_text().splitlines()]

    # the oracle: the local runner, in this process, on the same inputs
    local = predicting.tag_paths([songs, missing], model="msd-musicnn", threshold=0.05, top_k=3)
    want = {r["path"]: r for r in local}
    assert len(got) == len(want) == 6 and {r["path"] for r in got} == set(want)
    for rec in got:
        expected = want[rec["path"]]
        probs, expected_probs = rec.pop("probabilities", {}), expected.pop("probabilities", {})
        assert list(probs) == list(expected_probs)
        np.testing.assert_allclose(
            list(probs.values()), list(expected_probs.values()), rtol=0, atol=TOLERANCE
        )
        assert [t["tag"] for t in rec.pop("tags", [])] == [
            t["tag"] for t in expected.pop("tags", [])
        ]
        assert rec == expected  # path, model, size, mtime_ns, note; or the skip and its reason
    assert want[str(songs / "quiet.wav")]["note"] == "silent"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "error: --runner beam needs -o PREFIX"),
        (["-o", "{tmp}/t", "-f", "csv", "--resume"], "shards only: drop --format, --resume"),
        (["-o", "{tmp}/t", "--beam-options", "--runner=NoSuchRunner"], "bad --beam-options"),
        (["-o", "{tmp}/t", "--runner", "spark"], "error: unknown runner 'spark'"),
    ],
)
def test_beam_refuses_what_it_cannot_do_in_one_line(songs, tmp_path, extra, message):
    args = [a.format(tmp=tmp_path) for a in extra]
    runner_args = [] if "--runner" in args else ["--runner", "beam"]
    result = orpheus("predict", songs / "a.wav", *runner_args, *args)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def _python(*argv: str) -> subprocess.CompletedProcess:
    """This venv's Python with `argv`, in a fresh process, outside any workspace."""
    env = {**ENV, **NO_WS}
    return subprocess.run(
        [PY, *argv], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_without_beam_the_error_names_the_extra(songs, tmp_path):
    code = (
        "import sys; sys.modules['apache_beam'] = None  # as if the [beam] extra were missing\n"
        "from orpheus.cli import main; main()"
    )
    args = [songs / "a.wav", "--runner", "beam", "-o", tmp_path / "t"]
    done = _python("-c", code, "predict", *map(str, args))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line]
    assert lines == [
        "error: the beam runner needs Apache Beam",
        "hint: pip install 'orpheus-tagger[beam]'",
    ], done.stderr
    assert not os.listdir(tmp_path)


def test_a_beam_run_keeps_stderr_free_of_beams_cloud_client_notice(songs, tmp_path):
    """Beam's import warns on the root logger that Google Cloud's client libraries are missing
    ("WARNING:root:apitools not found ..."); a user's run of `predict --runner beam` (a fresh
    process: the warning comes once, at the import) must not show it."""
    args = [songs / "a.wav", "--runner", "beam", "-o", tmp_path / "t"]
    done = _python("-m", "orpheus", "predict", *map(str, args))
    assert done.returncode == 0, done.stderr
    assert "apitools" not in done.stderr and "WARNING:root" not in done.stderr, done.stderr
    assert len(list(tmp_path.glob("t-*-of-*.jsonl"))) >= 1
