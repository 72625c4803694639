"""Access to the original hand-filtered tag lists, wherever they live.

The lists ship as package data in `orpheus.lastfm/lists`; the example corpus reads its real tag
names from them (it ships no tag names of its own), so its Last.fm mess is the one the cleaning
rules were written for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

VOCAL_TAGS = ("rap", "instrumental", "male", "female")


@dataclass(frozen=True)
class TagLists:
    """Kept and rejected lines of the genre list, kept vocal lines, and the 155 clean names."""

    genre_order: tuple[str, ...]  # every genre-list line, `-` stripped, in popularity order
    genre_kept: tuple[str, ...]
    genre_rejected: tuple[str, ...]
    vocal_kept: dict[str, tuple[str, ...]]
    clean_155: tuple[str, ...]


def _read(name: str) -> list[str]:
    folder = resources.files("orpheus.lastfm") / "lists"
    return (folder / name).read_text(encoding="utf-8").splitlines()


@cache
def tag_lists() -> TagLists:
    """Parse the packaged lists (`-` marks a rejected line; blank lines are ignored)."""
    genre = [line for line in _read("non_genre_list_filtered.txt") if line.strip()]
    vocal = {
        tag: tuple(
            line
            for line in _read(f"{tag}_list_filtered.txt")
            if line.strip() and not line.startswith("-") and line != tag
        )
        for tag in VOCAL_TAGS
    }
    return TagLists(
        genre_order=tuple(line.removeprefix("-") for line in genre),
        genre_kept=tuple(line for line in genre if not line.startswith("-")),
        genre_rejected=tuple(line[1:] for line in genre if line.startswith("-")),
        vocal_kept=vocal,
        clean_155=tuple(_read("derived_clean_tags_155_from_orpheus_lite.txt")),
    )
