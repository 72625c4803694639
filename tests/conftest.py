"""Shared fixtures: one small example corpus per test session, for every stage's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE_TRACKS = 40  # enough for one clean track per style plus every planted fault


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: slower end-to-end tests")


@pytest.fixture(scope="session")
def example_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built example corpus (40 tracks, seed 0); its truth is at `path / "truth.json"`."""
    from orpheus.example import build

    path = tmp_path_factory.mktemp("example") / "corpus"
    build(path, tracks=EXAMPLE_TRACKS, seed=0, workers=2)
    return path
