"""Tag cleaning: Last.fm's ~500k raw tags -> ~155 clean tags, and the clean-db writer.

The rules are the original project's (seed-inventory §2.6), exactly:

1. Genre candidates ("targets") are the tags with at least `threshold` tracks, in popularity
   order, minus the lines marked `-` in `non_genre_list_filtered.txt` (also removed from the pool).
2. The search pool is every remaining tag with at least `sub_threshold` tracks.
3. Six normalisation keys (`clean_1`..`clean_6`) plus plural stripping: a pool tag whose key equals
   a target's key (case-insensitively) merges into it; `clean_2`/`clean_3` run only for targets
   containing `&`, `clean_4` for targets containing ` and `, `clean_5`/`clean_6` (no plural
   stripping) for targets with a `<digit>0s` decade. Two targets that collide end up in one
   clean tag named after the more popular spelling (the original's add_tags/check_overlap,
   which is a union-find whose representative is the most popular target).
4. The vocal tags `rap`, `instrumental`, `male`, `female` take the unmarked lines of their lists.
5. `rnb` absorbs `rhythm and blues` and `funk` absorbs `funky` (more popular side wins), then
   the bare numbers `2000, 00, 90, 80, 70, 60` are dropped.
6. Clean tag names are the winning raw spellings, lowercased.

Fixed bugs of the original (§2.6-2.7): `threshold` and the vocal tag list were ignored; popularity
counted rows, not distinct tracks; duplicate (track, tag) rows were written; `val` was not kept
(here: the max over merged raw tags); CSV input was off by one (no CSV path exists here); combine
and drop crashed when a tag was absent; a raw tag claimed by a genre and a vocal tag crashed the
writer (the hand-filtered vocal list wins); two clean tags could share a lowercased name (merged).
Every raw tag's fate is recorded in an `audit` table, read by `orpheus tags explain`.

Those rules are the `lastfm` profile. Labels from other sources (`orpheus labels import`) are
already a vocabulary: their `passthrough` profile keeps every tag with at least `min_tracks`
tracks and only merges spellings that differ in case, spaces or punctuation, leaving a
`category---` prefix alone (`mood/theme---happy` stays itself).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from orpheus.errors import OrpheusError
from orpheus.lastfm.db import LastFm, count_distinct, name_codes, unique_sorted, write_tag_db

GENRE_LIST = "non_genre_list_filtered.txt"
VOCAL_TAGS = ("rap", "instrumental", "male", "female")
REQUIRED_LISTS = (GENRE_LIST, *(f"{t}_list_filtered.txt" for t in VOCAL_TAGS))
DEFAULT_COMBINE: tuple[tuple[str, ...], ...] = (("rhythm and blues", "rnb"), ("funky", "funk"))
DEFAULT_DROP = ("2000", "00", "90", "80", "70", "60")
INDICATOR = "-"
LASTFM_PROFILE, PASSTHROUGH_PROFILE = "lastfm", "passthrough"
PROFILES = (LASTFM_PROFILE, PASSTHROUGH_PROFILE)
AUDIT_COLUMNS = ("raw_tag", "clean_tag", "rule", "source", "via", "tracks")

# -- tag lists -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TagLists:
    """The hand-filtered lists: genre rejects (`-` lines) and the four vocal lists."""

    rejected: frozenset[str]
    genre: frozenset[str]
    vocal: dict[str, tuple[str, ...]]
    where: str


def _lines(text: str) -> list[str]:
    """Lines as the original iterated them (universal newlines), blank ones dropped."""
    return [line for line in text.split("\n") if line and not line.isspace()]


def load_lists(folder: str | Path | None = None) -> TagLists:
    """Read the tag lists from `folder`, or the packaged originals when None."""
    if folder is None:
        base = resources.files("orpheus.lastfm") / "lists"
        where = "packaged lists"
    else:
        base = Path(folder)
        where = str(folder)
        if not base.is_dir():
            raise OrpheusError(f"tag list folder {folder} does not exist")
    texts = {}
    for name in REQUIRED_LISTS:
        item = base / name
        if not item.is_file():
            raise OrpheusError(
                f"tag list folder {where} has no {name}",
                hint="it needs " + ", ".join(REQUIRED_LISTS),
            )
        texts[name] = item.read_text(encoding="utf8")
    genre_lines = _lines(texts[GENRE_LIST])
    vocal = {}
    for tag in VOCAL_TAGS:
        kept = [x for x in _lines(texts[f"{tag}_list_filtered.txt"]) if x[0] != INDICATOR]
        vocal[tag] = tuple(x for x in dict.fromkeys(kept) if x != tag)
    return TagLists(
        rejected=frozenset(x.lstrip(INDICATOR) for x in genre_lines if x[0] == INDICATOR),
        genre=frozenset(x for x in genre_lines if x[0] != INDICATOR),
        vocal=vocal,
        where=where,
    )


# -- normalisation keys (vectorised over a Series of tag names) ------------------------------


def _alnum(s: pd.Series) -> pd.Series:
    return s.str.replace(r"[^A-Za-z0-9]", "", regex=True)


def clean_1(s: pd.Series) -> pd.Series:
    """Delete every character that is not A-Z, a-z or 0-9."""
    return _alnum(s)


def clean_2(s: pd.Series) -> pd.Series:
    """Delete non-alphanumerics except `&`, then `&` -> `n` (`r&b` ~ `rnb`)."""
    return s.str.replace(r"[^A-Za-z0-9&]", "", regex=True).str.replace("&", "n", regex=False)


def clean_3(s: pd.Series) -> pd.Series:
    """Delete non-alphanumerics except `&`, then `&` -> `and`."""
    return s.str.replace(r"[^A-Za-z0-9&]", "", regex=True).str.replace("&", "and", regex=False)


def clean_4(s: pd.Series) -> pd.Series:
    """` and ` -> `n`, then delete non-alphanumerics (`r and b` ~ `rnb`)."""
    return _alnum(s.str.replace(" and ", "n", regex=False))


def clean_5(s: pd.Series) -> pd.Series:
    """clean_1, then a leading `<digit>0s` gets `19` (`80's` ~ `1980s`)."""
    return _alnum(s).str.replace(r"^(\d0s)", r"19\1", regex=True)


def clean_6(s: pd.Series) -> pd.Series:
    """clean_1, then a leading `<digit>0s` gets `20` (`00s` ~ `2000s`)."""
    return _alnum(s).str.replace(r"^(\d0s)", r"20\1", regex=True)


def check_plural(s: pd.Series) -> pd.Series:
    """Drop one final `s` when the string has >= 2 chars and does not end in `ss`."""
    drop = (s.str.len() >= 2) & s.str.endswith("s") & (s.str[-2] != "s")
    return s.where(~drop, s.str[:-1])


_DECADE = re.compile(r"\b\d0s")
KEYS: dict[str, Callable[[pd.Series], pd.Series]] = {
    "clean_1": clean_1,
    "clean_2": clean_2,
    "clean_3": clean_3,
    "clean_4": clean_4,
    "clean_5": clean_5,
    "clean_6": clean_6,
}
# (key, which targets it searches for, plural stripping): the seven steps of generate_genre_df.
STEPS: tuple[tuple[str, Callable[[str], bool], bool], ...] = (
    ("clean_1", lambda t: True, True),
    ("clean_2", lambda t: "&" in t, True),
    ("clean_3", lambda t: "&" in t, True),
    ("clean_4", lambda t: " and " in t, True),
    ("clean_5", lambda t: _DECADE.search(t) is not None, False),
    ("clean_6", lambda t: _DECADE.search(t) is not None, False),
)


def search_key(tags: Iterable[str], method: str, plural: bool = True) -> list[str]:
    """The comparison key of each tag under one method (lowercased, as matching ignores case)."""
    s = pd.Series(list(tags), dtype=object)
    key = KEYS[method](s)
    if plural:
        key = check_plural(key)
    return key.str.lower().tolist()


# -- the clean-tag table ---------------------------------------------------------------------


@dataclass(frozen=True)
class CleaningParams:
    """The `tags-cleaning` config section (lists are passed separately as TagLists)."""

    threshold: int = 2000
    sub_threshold: int = 10
    val: float = 0.0
    combine: tuple[tuple[str, ...], ...] = ()
    drop: tuple[str, ...] = ()
    profile: str = LASTFM_PROFILE
    min_tracks: int = 1  # tracks a clean tag needs to be written

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise OrpheusError(
                f"unknown cleaning profile {self.profile!r}", hint="choose lastfm or passthrough"
            )
        if self.min_tracks < 1:
            raise OrpheusError(f"--min-tracks must be >= 1, got {self.min_tracks}")
        if self.threshold < 1:
            raise OrpheusError(f"--threshold must be >= 1, got {self.threshold}")
        if self.sub_threshold < 0:
            raise OrpheusError(f"--sub-threshold must be >= 0, got {self.sub_threshold}")
        for group in self.combine:
            if len(set(group)) < 2:
                raise OrpheusError(f"--combine needs two or more tags, got {','.join(group)!r}")


@dataclass
class _Row:
    canonical: str
    rank: tuple[int, int, int]  # (-tracks, genre 0 / vocal 1, position): min wins a merge
    members: list[str] = field(default_factory=list)
    alive: bool = True


@dataclass
class CleanTable:
    """Raw tag -> clean tag, with the reason for every raw tag (the audit)."""

    mapping: dict[str, str]
    audit: pd.DataFrame

    @property
    def clean_tags(self) -> list[str]:
        return sorted(set(self.mapping.values()))


class _Table:
    """Rows of (canonical, members) with a raw -> row index, mirroring the original DataFrame."""

    def __init__(self) -> None:
        self.rows: list[_Row] = []
        self.where: dict[str, int] = {}
        self.why: dict[str, tuple[str, str, str]] = {}

    def add(self, canonical: str, rank: tuple[int, int, int], members: Sequence[str]) -> int:
        idx = len(self.rows)
        self.rows.append(_Row(canonical, rank, list(members)))
        for raw in (canonical, *members):
            self.where[raw] = idx
        return idx

    def merge(self, into: int, other: int, why: tuple[str, str, str]) -> None:
        a, b = self.rows[into], self.rows[other]
        a.members += [b.canonical, *b.members]
        for raw in (b.canonical, *b.members):
            self.where[raw] = into
        self.why[b.canonical] = why
        b.alive = False
        b.members = []

    def take(self, raw: str, into: int) -> None:
        """Move one raw tag into row `into` (a whole row, if `raw` names one)."""
        old = self.where.get(raw)
        if old == into:
            return
        if old is not None and self.rows[old].canonical == raw:
            self.merge(into, old, ("collision", "vocal tag name", self.rows[into].canonical))
            return
        if old is not None:
            self.rows[old].members.remove(raw)
        self.rows[into].members.append(raw)
        self.where[raw] = into

    def resolve(self, name: str, strict: bool, flag: str) -> int | None:
        """Row holding raw tag `name`, else (strict) the row whose clean name is `name`."""
        if name in self.where:
            return self.where[name]
        if strict:
            for i, row in enumerate(self.rows):
                if row.alive and row.canonical.lower() == name.lower():
                    return i
            raise OrpheusError(
                f"{flag}: {name!r} is not a clean tag, nor merged into one",
                hint=f"see `orpheus tags explain {name!r}` and `orpheus tags top`",
            )
        return None

    def drop(self, name: str, strict: bool, source: str) -> None:
        idx = self.resolve(name, strict, "--drop")
        if idx is None:
            return
        row = self.rows[idx]
        if row.canonical == name or name not in self.where:
            for raw in (row.canonical, *row.members):
                del self.where[raw]
                self.why[raw] = ("drop", source, row.canonical.lower())
            row.alive = False
        else:
            row.members.remove(name)
            del self.where[name]
            self.why[name] = ("drop", source, "")


def build_clean_table(
    names: Sequence[str], tracks: Sequence[int], lists: TagLists, params: CleaningParams
) -> CleanTable:
    """Apply §2.6 to raw tag names given in popularity order with their distinct-track counts."""
    names = list(names)
    counts = np.asarray(tracks, dtype=np.int64)
    n = len(names)
    pos_of = {t: i for i, t in enumerate(names)}
    rejected = np.fromiter((t in lists.rejected for t in names), bool, n)
    targets = np.flatnonzero(~rejected & (counts >= params.threshold))
    pool = np.flatnonzero(~rejected & (counts >= params.sub_threshold))

    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_edge: dict[int, tuple[str, int]] = {}
    is_target = np.zeros(n, bool)
    is_target[targets] = True
    pool_names = [names[i] for i in pool]
    key_cache: dict[tuple[str, bool], pd.Series] = {}
    for method, applies, plural in STEPS:
        chosen = [t for t in targets if applies(names[t])]
        if not chosen:
            continue
        if (method, plural) not in key_cache:
            key_cache[(method, plural)] = pd.Series(
                pool, index=search_key(pool_names, method, plural)
            )
        by_key = key_cache[(method, plural)]
        tkeys = search_key([names[t] for t in chosen], method, plural)
        hits = pd.DataFrame({"key": tkeys, "t": chosen}).merge(
            pd.DataFrame({"key": by_key.index, "p": by_key.to_numpy()}), on="key"
        )
        for t, p in zip(hits["t"].tolist(), hits["p"].tolist(), strict=True):
            if t == p:
                continue
            first_edge.setdefault(p, (method, t))
            if is_target[p]:
                first_edge.setdefault(t, (method, p))
            ra, rb = find(t), find(p)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

    table = _Table()
    comps: dict[int, list[int]] = {}
    for i in set(targets.tolist()) | set(first_edge):
        comps.setdefault(find(i), []).append(i)
    for rep in sorted(comps):
        members = sorted(m for m in comps[rep] if m != rep)
        table.add(names[rep], (-int(counts[rep]), 0, rep), [names[m] for m in members])
        listed = GENRE_LIST if names[rep] in lists.genre else f"not in {GENRE_LIST}"
        table.why[names[rep]] = ("genre", listed, "")
        for m in members:
            method, via = first_edge[m]
            table.why[names[m]] = ("collision" if is_target[m] else "spelling", method, names[via])

    for k, tag in enumerate(VOCAL_TAGS):
        source = f"{tag}_list_filtered.txt"
        rank = (-int(counts[pos_of[tag]]) if tag in pos_of else 0, 1, k)
        if tag in table.where:  # a genre spelling of the same tag: one clean tag
            idx = table.where[tag]
            if table.rows[idx].canonical != tag:
                table.rows[idx].members.remove(tag)
                idx = table.add(tag, rank, [])
        else:
            idx = table.add(tag, rank, [])
        table.why[tag] = ("vocal", source, "")
        for raw in lists.vocal[tag]:
            table.take(raw, idx)
            table.why[raw] = ("vocal", source, tag)

    _combine(table, DEFAULT_COMBINE, False, "default")
    _combine(table, params.combine, True, "--combine")
    for name in DEFAULT_DROP:
        table.drop(name, False, "default drop list")
    for name in params.drop:
        table.drop(name, True, "--drop")

    by_name: dict[str, int] = {}
    for i in sorted(
        (i for i, r in enumerate(table.rows) if r.alive), key=lambda i: table.rows[i].rank
    ):
        low = table.rows[i].canonical.lower()
        if low in by_name:
            table.merge(by_name[low], i, ("collision", "same lowercased name", low))
        else:
            by_name[low] = i

    mapping = {raw: table.rows[i].canonical.lower() for raw, i in table.where.items()}
    return CleanTable(mapping, _audit(names, counts, rejected, mapping, table.why, lists, params))


def _combine(table: _Table, groups, strict: bool, source: str) -> None:
    """Merge each group's rows into its best-ranked one."""
    for group in groups:
        found = {table.resolve(t, strict, "--combine") for t in group} - {None}
        if len(found) < 2:
            continue
        into = min(found, key=lambda i: table.rows[i].rank)  # type: ignore[arg-type,return-value]
        for other in sorted(found - {into}):  # type: ignore[operator]
            table.merge(into, other, ("combine", source, table.rows[into].canonical))


def spelling_key(tag: str) -> str:
    """What two spellings of one tag share: the `category---` prefix as is, then the rest
    casefolded without spaces and punctuation (`Hip-Hop` ~ `hip hop`; Unicode letters kept)."""
    prefix, sep, rest = tag.rpartition("---")
    key = re.sub(r"[\W_]+", "", rest.casefold())
    return prefix.casefold() + sep + key if key else tag


def passthrough_table(
    names: Sequence[str], tracks: Sequence[int], params: CleaningParams
) -> CleanTable:
    """The profile of imported labels: each tag kept, spellings merged into the most popular.

    `names` come in popularity order with their distinct-track counts (as for the Last.fm
    rules); `--combine` and `--drop` apply as there. `min_tracks` is checked after merging.
    """
    counts = np.asarray(tracks, dtype=np.int64)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        if counts[i] > 0:
            groups.setdefault(spelling_key(name), []).append(i)
    table = _Table()
    for k, members in enumerate(groups.values()):
        head = names[members[0]]
        table.add(head, (-int(counts[members[0]]), 0, k), [names[m] for m in members[1:]])
        table.why[head] = ("kept", "passthrough profile", "")
        for m in members[1:]:
            table.why[names[m]] = ("spelling", "same letters and digits, ignoring case", head)
    _combine(table, params.combine, True, "--combine")
    for name in params.drop:
        table.drop(name, True, "--drop")
    mapping = {raw: table.rows[i].canonical.lower() for raw, i in table.where.items()}
    no_rows = ("no-rows", f"no row with val > {params.val}", "")
    why = [table.why.get(n, no_rows) if counts[i] > 0 else no_rows for i, n in enumerate(names)]
    audit = pd.DataFrame(
        {
            "raw_tag": list(names),
            "clean_tag": [mapping.get(n) for n in names],
            "rule": [w[0] for w in why],
            "source": [w[1] for w in why],
            "via": [w[2] for w in why],
            "tracks": counts,
        },
        columns=list(AUDIT_COLUMNS),
    )
    return CleanTable(mapping, audit)


def _audit(
    names: list[str],
    counts: np.ndarray,
    rejected: np.ndarray,
    mapping: dict[str, str],
    why: dict[str, tuple[str, str, str]],
    lists: TagLists,
    params: CleaningParams,
) -> pd.DataFrame:
    """One row per raw tag: where it went (clean_tag or NULL) and why."""
    rule = np.where(
        rejected,
        "rejected",
        np.where(
            counts == 0,
            "no-rows",
            np.where(counts < params.sub_threshold, "below-sub-threshold", "no-match"),
        ),
    ).astype(object)
    source = np.where(
        rejected,
        f"{GENRE_LIST} ({lists.where})",
        np.where(
            counts == 0,
            f"no row with val > {params.val}",
            np.where(
                counts < params.sub_threshold,
                f"{params.sub_threshold} tracks needed to enter the search pool",
                "no genre tag has the same spelling key",
            ),
        ),
    ).astype(object)
    via = np.full(len(names), "", dtype=object)
    clean = np.full(len(names), None, dtype=object)
    pos_of = {t: i for i, t in enumerate(names)}
    for raw, (r, s, v) in why.items():
        i = pos_of.get(raw)
        if i is not None:
            rule[i], source[i], via[i] = r, s, v
    for raw, c in mapping.items():
        i = pos_of.get(raw)
        if i is not None:
            clean[i] = c
    return pd.DataFrame(
        {
            "raw_tag": names,
            "clean_tag": clean,
            "rule": rule,
            "source": source,
            "via": via,
            "tracks": counts,
        },
        columns=list(AUDIT_COLUMNS),
    )


# -- the clean database ----------------------------------------------------------------------


def clean_database(
    src: str | Path,
    dest: str | Path,
    params: CleaningParams | None = None,
    lists: TagLists | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Write the clean db (same schema as `src`, plus `audit` and `cleaning`) atomically.

    `src` is opened read-only. Returns a small summary (counts and seconds).
    """
    start = time.perf_counter()
    params = params or CleaningParams()
    lastfm = params.profile == LASTFM_PROFILE
    lists = (lists or load_lists()) if lastfm else None
    say = progress or (lambda _msg: None)
    src, dest = Path(src), Path(dest)
    if dest.exists() and dest.resolve() == src.resolve():
        raise OrpheusError(f"refusing to overwrite the input db {src} with the clean db")

    with LastFm(src) as db:
        say("reading tags")
        names = db.tag_table()
        tids = db.tid_table()
        if names.empty or tids.empty:
            raise OrpheusError(f"{src} has no tags or no tracks (empty Last.fm db)")
        say("reading (track, tag) rows")
        tid, tag, val = db.rows()
    n_raw_rows = int(tid.size)
    if n_raw_rows == 0:
        raise OrpheusError(f"{src} has no (track, tag) rows (empty Last.fm db)")

    tid_ok = np.zeros(int(max(tids.index.max(), tid.max(initial=0))) + 1, bool)
    tid_ok[tids.index.to_numpy()] = True
    name_id, uniques = name_codes(names, tag)
    keep = (name_id >= 0) & (tid >= 0) & tid_ok[np.clip(tid, 0, None)] & (val > params.val)
    tid, name_id, val = tid[keep], name_id[keep], val[keep]
    if tid.size == 0:
        raise OrpheusError(f"{src}: no (track, tag) row has val > {params.val}", hint="lower --val")

    say("counting tag popularity in distinct tracks")
    counts = count_distinct(name_id, tid, len(uniques))
    order = np.lexsort((np.arange(len(uniques)), -counts))
    say("applying the cleaning rules")
    if lists is not None:
        table = build_clean_table(uniques[order].tolist(), counts[order], lists, params)
    else:
        table = passthrough_table(uniques[order].tolist(), counts[order], params)

    say("mapping rows to clean tags")
    clean_names = table.clean_tags
    clean_index = {c: i for i, c in enumerate(clean_names)}
    to_clean = np.fromiter(
        (clean_index.get(table.mapping.get(t, ""), -1) for t in uniques), np.int64, len(uniques)
    )
    cid = to_clean[name_id]
    sel = cid >= 0
    tid, cid, val = tid[sel], cid[sel], val[sel]
    width = int(tid.max(initial=0)) + 1
    key = cid * width + tid
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.concatenate(([key.size > 0], key[1:] != key[:-1])))
    val = np.maximum.reduceat(val[order], starts) if starts.size else val[:0]
    tid, cid = tid[order][starts], cid[order][starts]  # one row per (track, clean tag): max val

    tracks_per_tag = np.bincount(cid, minlength=len(clean_names))
    by_pop = sorted(range(len(clean_names)), key=lambda i: (-tracks_per_tag[i], clean_names[i]))
    tag_order = [i for i in by_pop if tracks_per_tag[i] >= params.min_tracks]
    if not tag_order and lastfm:
        raise OrpheusError(
            f"no clean tags: no tag in {src} reaches {params.threshold} tracks"
            " and no vocal-list tag has a track",
            hint="lower --threshold",
        )
    if not tag_order:
        raise OrpheusError(
            f"no clean tags: no tag in {src} has {params.min_tracks} tracks",
            hint="lower --min-tracks",
        )
    new_tag = np.full(len(clean_names), -1, np.int64)
    new_tag[tag_order] = np.arange(1, len(tag_order) + 1)
    deduped = int(tid.size)
    live = new_tag[cid] > 0  # rows of tags with too few tracks go
    tid, cid, val = tid[live], cid[live], val[live]
    kept_tids = unique_sorted(tid)
    new_tid = np.searchsorted(kept_tids, tid) + 1
    out_tag = new_tag[cid]
    final = np.argsort(new_tid * (len(tag_order) + 1) + out_tag)  # rows by track, then tag

    audit = table.audit
    few = {clean_names[i]: int(n) for i, n in enumerate(tracks_per_tag) if n < params.min_tracks}
    if few:
        gone = audit["clean_tag"].isin(set(few))
        audit.loc[gone, "via"] = audit.loc[gone, "clean_tag"]
        audit.loc[gone, "source"] = audit.loc[gone, "source"] + audit.loc[gone, "clean_tag"].map(
            lambda c: (
                " (its clean tag has no tracks)"
                if few[c] == 0
                else f" (its clean tag has {few[c]} tracks, fewer than {params.min_tracks})"
            )
        )
        audit.loc[gone, "clean_tag"] = None

    summary = {
        "raw_tags": int(len(uniques)),
        "raw_rows": n_raw_rows,
        "rows_above_val": int(keep.sum()),
        "clean_tags": len(tag_order),
        "tracks": int(kept_tids.size),
        "rows": int(final.size),
        "duplicates_merged": int(sel.sum() - deduped),  # rows that were merged spellings
    }
    say("writing the clean db")
    _write(
        dest,
        tags=[clean_names[i] for i in tag_order],
        tids=tids.reindex(kept_tids).tolist(),
        rows=(new_tid[final], out_tag[final], val[final]),
        audit=audit,
        meta={
            "input": str(src.resolve()),
            "lists": lists.where if lists is not None else None,
            "params": asdict(params),
            "summary": summary,
        },
    )
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary


def _write(
    dest: Path,
    tags: list[str],
    tids: list[str],
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    audit: pd.DataFrame,
    meta: dict[str, object],
) -> None:
    """Write the clean db: the Last.fm schema plus the audit and the cleaning's parameters."""

    def audit_tables(con: sqlite3.Connection) -> None:
        con.executescript(
            """
            CREATE TABLE audit(raw_tag TEXT, clean_tag TEXT, rule TEXT, source TEXT,
                               via TEXT, tracks INTEGER);
            CREATE TABLE cleaning(key TEXT PRIMARY KEY, value TEXT);
            """
        )
        con.executemany(
            f"INSERT INTO audit({', '.join(AUDIT_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",
            audit.itertuples(index=False, name=None),
        )
        con.executemany(
            "INSERT INTO cleaning(key, value) VALUES (?, ?)",
            ((k, json.dumps(v)) for k, v in meta.items()),
        )
        con.executescript(
            """
            CREATE INDEX audit_raw ON audit(raw_tag);
            CREATE INDEX audit_clean ON audit(clean_tag);
            """
        )

    a, b, v = rows
    write_tag_db(
        dest, tids, tags, zip(a.tolist(), b.tolist(), v.tolist(), strict=True), extra=audit_tables
    )


# -- explain ---------------------------------------------------------------------------------


def explain(db: LastFm, tag: str) -> dict[str, object]:
    """Where raw tag `tag` went and why; or, for a clean tag, which raw tags merged into it."""
    if not db.has_audit:
        raise OrpheusError(f"{db.path} has no audit table (not a clean db written by orpheus)")
    cols = ", ".join(AUDIT_COLUMNS)
    rows = db.conn.execute(f"SELECT {cols} FROM audit WHERE raw_tag = ?", (tag,)).fetchall()
    merged = db.conn.execute(
        f"SELECT {cols} FROM audit WHERE clean_tag = ? ORDER BY tracks DESC, raw_tag", (tag,)
    ).fetchall()
    similar: list[str] = []
    if not rows and not merged:
        similar = [
            r[0]
            for r in db.conn.execute(
                "SELECT raw_tag FROM audit WHERE raw_tag = ? COLLATE NOCASE ORDER BY tracks DESC"
                " LIMIT 10",
                (tag,),
            )
        ]
    as_dict = [dict(zip(AUDIT_COLUMNS, r, strict=True)) for r in rows]
    return {
        "tag": tag,
        "raw": as_dict[0] if as_dict else None,
        "merged_into_it": [dict(zip(AUDIT_COLUMNS, r, strict=True)) for r in merged],
        "similar": similar,
    }


def cleaning_meta(db: LastFm) -> dict[str, object]:
    """The parameters and summary a clean db was written with (empty for other dbs)."""
    tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master")}
    if "cleaning" not in tables:
        return {}
    return {k: json.loads(v) for k, v in db.conn.execute("SELECT key, value FROM cleaning")}
