"""The one decoder and the one log-mel: messages for unreadable files, quiet on short clips."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from orpheus.audio import AudioError, LogMelParams, log_mel, read_audio


def test_log_mel_of_a_clip_shorter_than_one_frame_is_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        features = log_mel(np.zeros(100, dtype=np.float32))
    assert features.shape == (1, LogMelParams().n_mels) and features.dtype == np.float32


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "no such file"), (b"", "empty file"), (b"<html>not audio</html>" * 50, "not a recog")],
)
def test_unreadable_files_say_why(tmp_path: Path, content: bytes | None, reason: str):
    path = tmp_path / "x.clip.mp3"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=reason):
        read_audio(path)
