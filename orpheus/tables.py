"""Stage tables on disk: Parquet written atomically, and the journal of a run in progress.

`scan`, `wrangle`, `silence` and `labels import` write their tables with `save_table`; `scan` and
`silence` keep a `Journal`, so that a killed run's finished work is re-used by the next one.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from orpheus.errors import OrpheusError
from orpheus.io import write_atomic_via, write_json_atomic

if TYPE_CHECKING:
    import pandas as pd


def save_table(frame, path: Path) -> None:
    """Write a DataFrame as Parquet through a temp file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic_via(path, lambda fh: frame.to_parquet(fh, index=False))


class Journal:
    """The rows of a run in progress, saved while it runs so that a killed run's work is re-used.

    Rows are buffered and written as numbered Parquet chunks, each atomically, every `every` rows
    or `seconds` seconds, whichever comes first (checked as each batch arrives): a kill loses at
    most that much work. The folder records the parameters its rows depend on; a run with other
    parameters starts it afresh. `clear()` it once the final tables are saved.
    """

    def __init__(
        self, folder: Path, columns: dict[str, str], *, params: dict, every: int, seconds: float
    ):
        self.folder, self.columns, self.params = Path(folder), columns, params
        self.every, self.seconds = every, seconds
        self._pending: list[dict] = []
        self._last = time.monotonic()
        self._next = 1

    def open(self) -> pd.DataFrame | None:
        """The rows saved by interrupted runs with the same parameters (None if there are none),
        and start saving this run's rows after them."""
        import pandas as pd

        params = self.folder / "params.json"
        if not params.is_file() or json.loads(params.read_text(encoding="utf-8")) != self.params:
            self.clear()
            self.folder.mkdir(parents=True)
            write_json_atomic(params, self.params)
        chunks = sorted(self.folder.glob("*.parquet"))
        self._next = max((int(c.stem) for c in chunks if c.stem.isdigit()), default=0) + 1
        self._last = time.monotonic()
        frames = []
        for chunk in chunks:
            try:
                frames.append(pd.read_parquet(chunk).astype(self.columns))
            except (OSError, ValueError, KeyError) as exc:
                raise OrpheusError(
                    f"{chunk}: cannot read this saved progress ({exc})",
                    hint=f"delete the folder {self.folder} to start over",
                ) from None
        return pd.concat(frames, ignore_index=True) if frames else None

    def add(self, rows: list[dict]) -> None:
        """Buffer `rows`; save them once `every` rows or `seconds` seconds have gathered."""
        self._pending.extend(rows)
        if len(self._pending) >= self.every or time.monotonic() - self._last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        """Save the buffered rows as the next chunk."""
        import pandas as pd

        if self._pending:
            self.folder.mkdir(parents=True, exist_ok=True)  # a concurrent run may have cleared it
            frame = pd.DataFrame.from_records(self._pending, columns=list(self.columns))
            save_table(frame.astype(self.columns), self.folder / f"{self._next:06d}.parquet")
            self._next += 1
            self._pending = []
        self._last = time.monotonic()

    def clear(self) -> None:
        """Forget every saved row (the run is complete, or its parameters changed)."""
        self._pending = []
        shutil.rmtree(self.folder, ignore_errors=True)
