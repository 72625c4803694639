"""Which field of which container holds genre, mood, grouping and artist: the one mapping.

Library tools read genre and mood from different fields per container (ID3 `TCON`/`TMOO`,
Vorbis `GENRE`/`MOOD`, MP4 `©gen`/`----:com.apple.iTunes:MOOD`, WMA `WM/Genre`/`WM/Mood`,
APEv2 `Genre`/`Mood`). `FIELDS` lists, per container and role, the keys to read in order; the
first key is the one a writer uses (ID3v2.3 files write mood to `TXXX:MOOD`, since v2.3 has no
`TMOO`). Reading labels out of a library (`orpheus labels import --from files`) and writing
predicted tags back into it use this table, so a tag Orpheus writes is found where it reads.

Orpheus also writes one namespaced field per model (`ORPHEUS_TAGS:<model>`, after the container's
free-form prefix): JSON holding each written tag's probability and each standard field's values
before and after Orpheus wrote them (`orpheus.tagwrite`). Values Orpheus added are never read back
as ground truth.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

from orpheus.errors import OrpheusError

GENRE, MOOD, GROUPING, ARTIST = "genre", "mood", "grouping", "artist"
LABEL_ROLES = (GENRE, MOOD, GROUPING)  # imported as labels `<role>---<value>`
ORPHEUS = "orpheus"  # the role of Orpheus's own field: the values it wrote
ORPHEUS_FIELD = "ORPHEUS_TAGS"

ID3, VORBIS, MP4, ASF, APE = "id3", "vorbis", "mp4", "asf", "ape"
FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    ID3: {
        GENRE: ("TCON",),
        MOOD: ("TMOO", "TXXX:MOOD"),
        GROUPING: ("GRP1", "TIT1"),
        ARTIST: ("TPE1",),
        ORPHEUS: (f"TXXX:{ORPHEUS_FIELD}",),
    },
    VORBIS: {
        GENRE: ("GENRE",),
        MOOD: ("MOOD",),
        GROUPING: ("GROUPING",),
        ARTIST: ("ARTIST",),
        ORPHEUS: (ORPHEUS_FIELD,),
    },
    MP4: {
        GENRE: ("\xa9gen",),
        MOOD: ("----:com.apple.iTunes:MOOD",),
        GROUPING: ("\xa9grp",),
        ARTIST: ("\xa9ART",),
        ORPHEUS: (f"----:com.apple.iTunes:{ORPHEUS_FIELD}",),
    },
    ASF: {
        GENRE: ("WM/Genre",),
        MOOD: ("WM/Mood",),
        GROUPING: ("WM/ContentGroupDescription",),
        ARTIST: ("Author",),
        ORPHEUS: (f"WM/{ORPHEUS_FIELD}",),
    },
    APE: {
        GENRE: ("Genre",),
        MOOD: ("Mood",),
        GROUPING: ("Grouping",),
        ARTIST: ("Artist",),
        ORPHEUS: (ORPHEUS_FIELD,),
    },
}
# ID3v2.3 and most Vorbis/APE writers join several values in one string with these.
_SEPARATORS = re.compile(r"\s*[;\x00]\s*")
_ID3V23_SEPARATORS = re.compile(r"\s*[;/\x00]\s*")


class TagReadError(OrpheusError):
    """A file whose tag block cannot be parsed: `path` and a short `reason`."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot read the tags of {path}: {reason}")
        self.path = str(path)
        self.reason = reason


def normalise(value: str) -> str:
    """One spelling per value: Unicode NFC, lowercase, single spaces, no outer blanks."""
    return " ".join(unicodedata.normalize("NFC", value).lower().split())


def container(tags: object) -> str | None:
    """The FIELDS key of a mutagen tag object (None for a kind Orpheus does not map)."""
    from mutagen.apev2 import APEv2
    from mutagen.asf import ASFTags
    from mutagen.id3 import ID3 as ID3Tags
    from mutagen.mp4 import MP4Tags
    from mutagen.oggvorbis import VCommentDict

    for kind, name in ((ID3Tags, ID3), (VCommentDict, VORBIS), (MP4Tags, MP4), (ASFTags, ASF)):
        if isinstance(tags, kind):
            return name
    return APE if isinstance(tags, APEv2) else None


def read_fields(path: str | Path) -> dict[str, list[str]]:
    """Every role's values in a file's tags, split and normalised, each once, in file order.

    Values of the label roles that are also listed in Orpheus's own field are left out (they
    are predictions, not ground truth). A file without tags gives empty lists; a tag block
    that cannot be parsed raises TagReadError.
    """
    import mutagen

    try:
        tags = _tag_block(path)
    except mutagen.MutagenError as exc:
        raise TagReadError(path, str(exc) or type(exc).__name__) from None
    except (OSError, ValueError, EOFError, IndexError, KeyError) as exc:
        raise TagReadError(path, f"{type(exc).__name__}: {exc}") from None
    out: dict[str, list[str]] = {role: [] for role in (*LABEL_ROLES, ARTIST, ORPHEUS)}
    kind = container(tags)
    if kind is None:
        return out
    v23 = is_v23(tags)
    for role in (*LABEL_ROLES, ARTIST):
        found: dict[str, None] = {}
        for key in FIELDS[kind][role]:
            for raw in values(tags, kind, key):
                for part in split(raw, v23 and role != ARTIST):
                    found.setdefault(normalise(part))
        out[role] = list(found)
    written: dict[str, None] = {}
    for text in own_fields(tags, kind).values():  # JSON, or a legacy plain list of values
        for value in added_values(text) if text.startswith("{") else split(text, v23):
            written.setdefault(normalise(value))
    out[ORPHEUS] = list(written)
    for role in LABEL_ROLES:
        out[role] = [v for v in out[role] if v not in written]
    return out


def _tag_block(path: str | Path):
    """The file's mutagen tag object (None without one). An MP3's ID3 block is read alone:
    `mutagen.File` would also scan the MPEG stream, several times slower on a library."""
    import mutagen

    if Path(path).suffix.lower() == ".mp3":
        from mutagen.id3 import ID3 as ID3Tags
        from mutagen.id3 import ID3NoHeaderError

        try:
            return ID3Tags(path)
        except ID3NoHeaderError:
            return None
    return getattr(mutagen.File(path), "tags", None)


def values(tags, kind: str, key: str) -> list[str]:
    """The text values stored under one key, whatever the container stores them as."""
    if kind == ID3:
        frames = tags.getall(key)
        if key == "TCON":  # resolves ID3v1 genre numbers like "(17)" to "Rock"
            return [g for f in frames for g in f.genres]
        return [str(t) for f in frames for t in f.text]
    if key not in tags:
        return []
    values = tags[key]
    if kind == APE:
        return list(values)  # APEv2 text values hold several entries split on NUL
    items = values if isinstance(values, list) else [values]
    out = []
    for item in items:
        value = getattr(item, "value", item)
        out.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
    return out


def split(raw: str, v23: bool = False) -> list[str]:
    """One stored string as the values it joins, blanks dropped; ID3v2.3 also splits on '/'.

    >>> split("Hip-Hop/Jazz;  Soul ", v23=True), split("AC/DC Rock")
    (['Hip-Hop', 'Jazz', 'Soul'], ['AC/DC Rock'])
    """
    parts = (_ID3V23_SEPARATORS if v23 else _SEPARATORS).split(raw)
    return [p.strip() for p in parts if normalise(p)]


def is_v23(tags: object) -> bool:
    """Whether a tag block is ID3v2.3 (whose text frames join several values with '/')."""
    return container(tags) == ID3 and getattr(tags, "version", (2, 4, 0))[:2] == (2, 3)


def own_fields(tags: object, kind: str) -> dict[str, str]:
    """Orpheus's namespaced fields in a tag block: key -> its text (one per model, plus the legacy
    plain `ORPHEUS_TAGS` when present). Keys are as FIELDS spells them, model suffix included."""
    prefix = FIELDS[kind][ORPHEUS][0]
    if kind == ID3:
        frames = [f for f in tags.getall("TXXX") if _own(f"TXXX:{f.desc}", prefix)]
        return {f"TXXX:{f.desc}": "\x00".join(map(str, f.text)) for f in frames}
    keys = [k for k in tags.keys() if _own(k, prefix)]
    return {k: "\x00".join(values(tags, kind, k)) for k in keys}


def _own(key: str, prefix: str) -> bool:
    key, prefix = key.upper(), prefix.upper()
    return key == prefix or key.startswith(prefix + ":")


def added_values(text: str) -> list[str]:
    """The genre and mood values an Orpheus field says it added (in `after`, not in `before`);
    empty for a field that is not Orpheus's JSON.

    >>> added_values('{"fields": {"genre": {"before": ["Jazz"], "after": ["Jazz", "rock"]}}}')
    ['rock']
    """
    try:
        record = json.loads(text)
    except ValueError:
        return []
    fields = record.get("fields") if isinstance(record, dict) else None
    out: list[str] = []
    for change in (fields or {}).values():
        before = {normalise(v) for v in change.get("before", [])}
        out += [v for v in change.get("after", []) if normalise(v) not in before]
    return out
