"""Errors a user can act on: one line, a hint, and a documented exit code.

Exit codes: 0 ok, 1 partial (some inputs skipped), 2 usage or input error.
The CLI prints `error: <message>` (and `hint: ...`) for these, never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2


class OrpheusError(Exception):
    """A failure caused by the user's input or environment, reported in one line."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
