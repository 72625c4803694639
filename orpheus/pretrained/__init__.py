"""The bundled pretrained taggers: musicnn's MSD and MagnaTagATune models as Keras weights.

The files here are written by `tools/convert_musicnn.py` from the musicnn 0.1.0 wheel (ISC
licence, see LICENSE-musicnn.txt; SOURCE.json records the wheel's sha256 and the command).
This module only locates them; `orpheus.tagger` builds the model. `NAME.kinds.json` (written by
hand) sorts each vocabulary into kinds, so `orpheus.tagwrite` knows which tags are genres or moods.
"""

from __future__ import annotations

import json
from pathlib import Path

from orpheus.errors import OrpheusError

HERE = Path(__file__).resolve().parent
NAMES = ("msd-musicnn", "mtt-musicnn")
DEFAULT = "msd-musicnn"


def check(name: str) -> str:
    """`name` if it is a bundled model, else an error listing the bundled ones."""
    if name not in NAMES:
        raise OrpheusError(f"unknown model {name!r}", hint=f"pretrained models: {', '.join(NAMES)}")
    return name


def weights_path(name: str) -> Path:
    """The `.weights.h5` file of a bundled model."""
    return HERE / f"{check(name)}.weights.h5"


def labels(name: str) -> list[str]:
    """The model's labels, in output order."""
    return json.loads((HERE / f"{check(name)}.labels.json").read_text(encoding="utf-8"))


def kinds(name: str) -> dict[str, str]:
    """Each label's kind (genre, mood, era, instrument, vocals, other), from `NAME.kinds.json`,
    which lists the labels per kind so the sorting reads at a glance."""
    by_kind = json.loads((HERE / f"{check(name)}.kinds.json").read_text(encoding="utf-8"))
    return {tag: kind for kind, tags in by_kind.items() for tag in tags}
