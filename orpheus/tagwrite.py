"""Writing predicted tags into audio files where library tools read them, without harming a file.

Genre and mood tags go to the standard fields of each container (`orpheus.tagfields.FIELDS`:
ID3 `TCON` and `TMOO`, or `TXXX:MOOD` in ID3v2.3; Vorbis `GENRE`/`MOOD`; MP4 `©gen` and
`----:com.apple.iTunes:MOOD`; `WM/Genre`/`WM/Mood`; APEv2 `Genre`/`Mood`). Every written tag,
whatever its kind, goes with its probability into one namespaced field per model
(`ORPHEUS_TAGS:<model>`), as JSON that also holds each standard field's values before and after
the write, so `remove` can restore what Orpheus replaced:

    {"model": "msd-musicnn", "tags": {"rock": 0.83, "guitar": 0.41},
     "kinds": {"rock": "genre", "guitar": "instrument"},
     "fields": {"genre": {"before": ["Jazz"], "after": ["Jazz", "rock"]},
                "mood": {"before": [], "after": []}}}

ID3v2.3 has no multi-value frames: several values are joined with "/" (the v2.3 spec's separator
for several names in one text frame, and what mutagen, beets and Picard write by default).

A file is written in place (mutagen edits the open file; nothing is renamed over it), so a
symlink's target is tagged and hardlinks stay linked; an ID3 tag keeps its version; a file whose
permission bits allow no write is skipped. When the new tags fit the file's padding, the write is
one overwrite of the tag block; when they do not, the audio has to move, so a copy of the file
(`.NAME.orpheus-backup`) is kept beside it until the write is on disk, and the next run restores
it if the process died in between. An exclusive `flock` on the file keeps two runs from
interleaving their writes to it.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orpheus import pretrained
from orpheus.errors import OrpheusError
from orpheus.tagfields import (
    APE,
    FIELDS,
    GENRE,
    ID3,
    MOOD,
    MP4,
    ORPHEUS,
    container,
    is_v23,
    normalise,
    own_fields,
    split,
    values,
)

KINDS = (GENRE, MOOD, "era", "instrument", "vocals", "other")
STANDARD = (GENRE, MOOD)  # the kinds written to standard fields; the others only to Orpheus's
MODES = ("merge", "replace")
MATROSKA = (".mka", ".mkv", ".webm")
# A label source's category (`genre---rock`, `mood/theme---happy`) -> the kind of its tags.
CATEGORY_KINDS = {"genre": GENRE, "mood": MOOD, "mood/theme": MOOD, "instrument": "instrument"}
BACKUP = ".{name}.orpheus-backup"


@dataclass(frozen=True)
class Outcome:
    """What happened to one file: `written`, `unchanged` or `skipped` (with `reason`), and the
    change as a diff of its fields (`-KEY=value` / `+KEY=value` lines)."""

    path: str
    status: str
    reason: str = ""
    diff: str = ""
    dry_run: bool = False

    @property
    def line(self) -> str:
        """One line for a log: `path: written`, `path: skipped (read-only)`."""
        verb = f"would be {self.status}" if self.dry_run and self.status == "written" else None
        return f"{self.path}: {verb or self.status}" + (f" ({self.reason})" if self.reason else "")


def kinds_for(
    model: str, labels: Sequence[str], override: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Each label's kind: a bundled model's from its kinds JSON; a trained run's from the label
    source's category where the tag has one, else genre; `override` (tag -> kind) wins.

    >>> kinds_for("run/x", ["genre---rock", "mood/theme---calm", "instrument---piano", "loud"])
    {'genre---rock': 'genre', 'mood/theme---calm': 'mood', 'instrument---piano': 'instrument', \
'loud': 'genre'}
    """
    if model in pretrained.NAMES:
        kinds = pretrained.kinds(model)
    else:
        kinds = {}
        for tag in labels:
            category = tag.split("---", 1)[0] if "---" in tag else GENRE
            kinds[tag] = CATEGORY_KINDS.get(category.lower(), "other")
    for tag, kind in (override or {}).items():
        if kind not in KINDS:
            raise OrpheusError(f"unknown tag kind {kind!r} for {tag!r}", hint=f"kinds: {KINDS}")
        kinds[tag] = kind
    return kinds


def value_of(tag: str) -> str:
    """The text a tag is written as: without its label source's category.

    >>> value_of("mood/theme---happy"), value_of("Hip-Hop")
    ('happy', 'Hip-Hop')
    """
    return tag.split("---", 1)[1] if "---" in tag else tag


def field_suffix(model: str) -> str:
    """The model's name as a field-name suffix: plain lowercase ASCII (Vorbis and APE keys are
    ASCII and matched without case).

    >>> field_suffix("msd-musicnn"), field_suffix("runs/2026 12 04-Big")
    ('msd-musicnn', 'runs_2026_12_04-big')
    """
    return re.sub(r"[^a-z0-9._-]+", "_", model.lower()).strip("_") or "model"


def write(
    path: str | Path,
    tags: Sequence[tuple[str, float]],
    *,
    model: str,
    kinds: Mapping[str, str] | None = None,
    mode: str = "merge",
    dry_run: bool = False,
) -> Outcome:
    """Write `tags` (tag, probability) into the file: genres and moods merged with (or replacing)
    the values there, and the model's namespaced field. `kinds` maps tags to kinds (missing: the
    model's own kinds, or genre)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    kinds = dict(kinds) if kinds is not None else kinds_for(model, [t for t, _ in tags])
    wanted = {
        role: [value_of(t) for t, _ in tags if kinds.get(t, GENRE) == role] for role in STANDARD
    }
    record = {
        "model": model,
        "tags": {t: round(float(p), 4) for t, p in tags},
        "kinds": {t: kinds.get(t, GENRE) for t, _ in tags},
    }

    def change(state: _State) -> None:
        base = state.without(state.own.get(field_suffix(model)))
        fields = {}
        for role in STANDARD:
            before = base[role]
            if mode == "replace" and wanted[role]:
                after = _unique(wanted[role])
            else:
                after = _unique([*before, *wanted[role]])
            fields[role] = {"before": before, "after": after}
            state.fields[role] = after
        state.own[field_suffix(model)] = json.dumps({**record, "fields": fields})

    return _edit(path, change, dry_run)


def remove(path: str | Path, *, model: str | None = None, dry_run: bool = False) -> Outcome:
    """Remove what Orpheus wrote (one model's field, or every model's) and restore the genre and
    mood values it replaced. Values a user changed since are kept."""

    def change(state: _State) -> None:
        for suffix in [s for s in list(state.own) if model is None or s == field_suffix(model)]:
            state.fields.update(state.without(state.own.pop(suffix)))

    return _edit(path, change, dry_run)


def recover(path: str | Path) -> bool:
    """Put back a file's leftover backup (a run died while moving its audio); True if it did.
    The copy goes into the file in place, so links to it stay links."""
    real = Path(os.path.realpath(path))
    backup, part = _backup_paths(real)
    part.unlink(missing_ok=True)  # a backup not finished: the file was not touched yet
    if not backup.exists():
        return False
    with open(backup, "rb") as src, open(real, "r+b") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.truncate()
        dst.flush()
        os.fsync(dst.fileno())
    backup.unlink()
    _fsync_dir(real.parent)
    return True


def recover_leftover(path: str | Path) -> bool:
    """`recover` under the file's lock, when a run left a backup beside it: `predict
    --write-tags` calls it before decoding, so a file a killed run left half-moved is tagged
    from its whole audio (and restored even if it would not decode). True if it restored one."""
    real = Path(os.path.realpath(path))
    if not any(p.exists() for p in _backup_paths(real)):
        return False  # the usual case: two stats, no lock
    with locked(real):
        return recover(real)


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive `flock` on the file (its real target): other Orpheus runs wait."""
    fd = os.open(os.path.realpath(path), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- one file's edit ----------------------------------------------------------------------------


class _State:
    """The fields an edit reads and changes: standard roles' values, and Orpheus's fields by
    model suffix (their JSON text)."""

    def __init__(self, fields: dict[str, list[str]], own: dict[str, str]):
        self.fields = fields
        self.own = own

    def without(self, text: str | None) -> dict[str, list[str]]:
        """The standard fields as they would be had the write that left `text` not happened:
        exactly `before` if nobody changed them since, else what Orpheus added taken out and what
        it replaced put back."""
        out = {role: list(self.fields[role]) for role in STANDARD}
        try:
            fields = json.loads(text or "{}").get("fields", {})
        except (ValueError, AttributeError):
            return out
        for role, change in fields.items():
            if role not in out:
                continue
            before, after = list(change.get("before", [])), list(change.get("after", []))
            if out[role] == after:
                out[role] = before
                continue
            added = {normalise(v) for v in after} - {normalise(v) for v in before}
            kept = [v for v in out[role] if normalise(v) not in added]
            out[role] = _unique([*kept, *(v for v in before if normalise(v) not in
                                          {normalise(a) for a in after})])  # fmt: skip
        return out


def _edit(path: str | Path, change, dry_run: bool) -> Outcome:
    import mutagen

    shown = str(path)
    real = Path(os.path.realpath(path))
    if real.suffix.lower() in MATROSKA:
        return Outcome(shown, "skipped", "Matroska: mutagen cannot write its tags", dry_run=dry_run)
    try:
        mode = real.stat().st_mode
    except OSError as exc:
        return Outcome(shown, "skipped", exc.strerror or str(exc), dry_run=dry_run)
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return Outcome(shown, "skipped", "read-only", dry_run=dry_run)
    try:
        with locked(real):
            recover(real)
            audio = mutagen.File(real)
            if audio is None:
                return Outcome(shown, "skipped", "unsupported file type", dry_run=dry_run)
            had_tags = audio.tags is not None
            if not had_tags:
                audio.add_tags()
            kind = container(audio.tags)
            if kind is None:
                return Outcome(shown, "skipped", "an unsupported tag format", dry_run=dry_run)
            old = _read(audio.tags, kind)
            new = _State({r: list(v) for r, v in old.fields.items()}, dict(old.own))
            change(new)
            diff = _diff(audio.tags, kind, old, new)
            if not diff:
                return Outcome(shown, "unchanged", dry_run=dry_run)
            if not dry_run:
                _save(real, audio, kind, had_tags, new)
            return Outcome(shown, "written", diff=diff, dry_run=dry_run)
    except (OSError, mutagen.MutagenError) as exc:
        return Outcome(shown, "skipped", str(exc) or type(exc).__name__, dry_run=dry_run)


def _read(tags, kind: str) -> _State:
    v23 = is_v23(tags)
    fields = {}
    for role in STANDARD:
        found = [p for key in FIELDS[kind][role] for raw in values(tags, kind, key)
                 for p in split(raw, v23)]  # fmt: skip
        fields[role] = _unique(found)
    prefix = FIELDS[kind][ORPHEUS][0]
    own = {}
    for key, text in own_fields(tags, kind).items():
        suffix = key[len(prefix) + 1 :] if len(key) > len(prefix) else ""
        if suffix:  # the legacy plain ORPHEUS_TAGS field (no model) is left as it is
            own[suffix.lower()] = text
    return _State(fields, own)


def _keys(tags, kind: str, role: str) -> list[str]:
    """The keys a role is written to: the first FIELDS key, except ID3v2.3's mood (no TMOO)."""
    keys = FIELDS[kind][role]
    return [keys[1]] if kind == ID3 and role == MOOD and is_v23(tags) else [keys[0]]


def _apply(tags, kind: str, state: _State) -> None:
    """Set the standard fields and Orpheus's fields of a mutagen tag block to `state`."""
    for role in STANDARD:
        for key in FIELDS[kind][role]:
            _put(tags, kind, key, [])
        for key in _keys(tags, kind, role):
            _put(tags, kind, key, state.fields[role])
    prefix = FIELDS[kind][ORPHEUS][0]
    for key in own_fields(tags, kind):
        if key.upper() != prefix.upper():
            _put(tags, kind, key, [])
    for suffix, text in state.own.items():
        _put(tags, kind, f"{prefix}:{suffix}", [text])


def _put(tags, kind: str, key: str, items: list[str]) -> None:
    """Store `items` under one key (none: delete it), as the container stores text."""
    if kind == ID3:
        from mutagen import id3

        tags.delall(key)
        if items and key.startswith("TXXX:"):
            tags.add(id3.TXXX(encoding=3, desc=key[5:], text=items))
        elif items:
            tags.add(getattr(id3, key)(encoding=3, text=items))
        return
    for existing in [k for k in tags.keys() if k.upper() == key.upper()]:
        del tags[existing]
    if not items:
        return
    if kind == MP4 and key.startswith("----:"):
        from mutagen.mp4 import MP4FreeForm

        tags[key] = [MP4FreeForm(v.encode("utf-8")) for v in items]
    else:
        tags[key] = list(items)


def _lines(tags, kind: str, state: _State) -> list[str]:
    out = [f"{key}={v}" for role in STANDARD for key in _keys(tags, kind, role)
           for v in state.fields[role]]  # fmt: skip
    prefix = FIELDS[kind][ORPHEUS][0]
    return out + [f"{prefix}:{s}={t}" for s, t in sorted(state.own.items())]


def _diff(tags, kind: str, old: _State, new: _State) -> str:
    """The change as `-KEY=value` / `+KEY=value` lines; empty when nothing changes."""
    a, b = _lines(tags, kind, old), _lines(tags, kind, new)
    if a == b and old.fields == new.fields:
        return ""
    lines = list(difflib.unified_diff(a, b, lineterm="", n=0))[2:]  # past the file headers
    return "\n".join(line for line in lines if not line.startswith("@@"))


class _Grows(Exception):
    """The new tags do not fit the file's padding: writing them moves the audio."""


def _fit(info) -> int:
    if info.padding < 0:
        raise _Grows
    return info.padding  # keep the file's size: one overwrite of the tag block


def _save(real: Path, audio, kind: str, had_tags: bool, state: _State) -> None:
    """Save in place: one overwrite when the tags fit the padding, else under a backup copy."""
    import mutagen

    options = {}
    if kind == ID3:  # keep the file's version; v2.3 joins several values with "/"
        options = {"v2_version": 3 if is_v23(audio.tags) else 4, "v23_sep": "/"}
    if had_tags and kind != APE:  # APEv2 has no padding; a new tag block always grows the file
        _apply(audio.tags, kind, state)
        try:
            audio.save(padding=_fit, **options)
            return
        except _Grows:
            pass
    backup, part = _backup_paths(real)
    with open(real, "rb") as src, open(part, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(part, backup)  # the backup exists only once it is whole
    _fsync_dir(real.parent)
    try:
        fresh = mutagen.File(real)
        if fresh.tags is None:
            fresh.add_tags()
        _apply(fresh.tags, kind, state)
        fresh.save(**options)
        with open(real, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException:
        recover(real)
        raise
    backup.unlink()
    _fsync_dir(real.parent)


def _backup_paths(real: Path) -> tuple[Path, Path]:
    backup = real.with_name(BACKUP.format(name=real.name))
    return backup, backup.with_name(backup.name + ".part")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unique(items) -> list[str]:
    """Values once each (by their normalised spelling), the first spelling kept, in order."""
    seen: dict[str, str] = {}
    for item in items:
        seen.setdefault(normalise(item), item)
    return list(seen.values())
