"""Shared fixtures: one small example corpus per test run, for every stage's tests.

Under pytest-xdist each worker is its own session, so the corpus is built once, under a file
lock, in the folder that all workers' temporary folders share; the other workers wait and reuse it.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

EXAMPLE_TRACKS = 40  # enough for one clean track per style plus every planted fault


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: slower end-to-end tests")


def _shared_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A folder every xdist worker of this run sees (the run's base temp folder)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def example_corpus(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A built example corpus (40 tracks, seed 0), read-only by convention: copy it to modify it.

    Its truth is at `path / "truth.json"`.
    """
    from orpheus.example import build

    shared = _shared_dir(tmp_path_factory, worker_id)
    path = shared / "example-corpus"
    with open(shared / "example-corpus.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker builds; the others wait here
        if not (path / "truth.json").exists():
            build(path, tracks=EXAMPLE_TRACKS, seed=0, workers=2)
    return path
