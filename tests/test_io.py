"""orpheus.io: atomic writes keep the old file or the whole new one, with the umask's mode."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orpheus.errors import OrpheusError
from orpheus.io import atomic_path, read_json, staged_folder, write_atomic, write_json_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path: Path):
    # In a child with umask 027, as a user's shell may have: a new file is 0640, not 0600.
    code = (
        "import os, sys; os.umask(0o027); from orpheus.io import write_atomic;"
        "write_atomic(sys.argv[1], 'x')"
    )
    new = tmp_path / "new.txt"
    subprocess.run([sys.executable, "-c", code, str(new)], check=True)
    assert _mode(new) == 0o640
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o604)
    write_atomic(kept, "new")
    assert kept.read_text() == "new" and _mode(kept) == 0o604


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path):
    path = tmp_path / "data.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]


def test_read_json_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(OrpheusError, match="bad.json: not valid JSON"):
        read_json(bad)
    with pytest.raises(OrpheusError, match="missing.json: no such file"):
        read_json(tmp_path / "missing.json")


def test_staged_folder_appears_whole_or_not_at_all(tmp_path: Path):
    dest = tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt), staged_folder(dest) as tmp:
        (tmp / "a.txt").write_text("a")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with staged_folder(dest) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (dest / "a.txt").read_text() == "a"
    assert _mode(dest) == 0o777 & ~_umask()
    with pytest.raises(OrpheusError, match="not empty"), staged_folder(dest):
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
