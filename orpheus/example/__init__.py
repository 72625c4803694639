"""The example corpus: an MSD-shaped dataset that sounds like music, with its truth.

`build` writes 7digital-style MP3 previews rendered from MIDI per style, the MSD summary HDF5,
the Last.fm tags db, MSD's errata files and planted faults, plus `truth.json`, which says what
every stage (scan, wrangle, silence, tag cleaning) must keep or drop. `build_scale_corpus`
writes metadata only, at MSD / Last.fm scale, for the benchmarks.
"""

from orpheus.example.build import build
from orpheus.example.scale import build_scale_corpus

__all__ = ["build", "build_scale_corpus"]
