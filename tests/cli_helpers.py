"""The `orpheus` command run in-process (typer's CliRunner), as every test module calls it.

The caller's own ORPHEUS_WORKSPACE never leaks into a test: it is blanked unless `env` sets it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from typer.testing import CliRunner, Result

from orpheus.cli import app

NO_WS = {"ORPHEUS_WORKSPACE": ""}
runner = CliRunner()


def orpheus(*args, env: dict | None = None, cwd: Path | None = None) -> Result:
    """`orpheus ARGS` (each made a string) in-process, in folder `cwd` if given: typer's
    Result (exit_code, stdout, stderr)."""
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        return runner.invoke(app, [str(a) for a in args], env={**NO_WS, **(env or {})})


def in_workspace(ws: Path, *args, env: dict | None = None) -> Result:
    """`orpheus -w WS ARGS` in-process."""
    return orpheus("-w", ws, *args, env=env)


def ok(result: Result) -> Result:
    """`result`, asserted to have exited 0 (the failure message shows its output's tail)."""
    assert result.exit_code == 0, (result.stdout + result.stderr)[-3000:]
    return result
