"""Last.fm tag databases (the MSD Last.fm SQLite, or a clean one): read-only queries, and the
one writer of the schema (`write_tag_db`: `tags clean`, `labels import`, the example corpus).

Both share one schema: `tids(tid TEXT)`, `tags(tag TEXT)`, `tid_tag(tid INT, tag INT, val FLOAT)`,
where `tid_tag.tid` / `tid_tag.tag` are rowids into the other two tables (seed-inventory §3.1).
The file is opened read-only (`mode=ro`), so no query can ever modify a user's input. Popularity
is counted in *distinct tracks*, never in rows, so duplicate (track, tag) rows cannot inflate it.
Bulk reads come back as NumPy arrays: that is what keeps Last.fm scale (8.6M rows) in seconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from orpheus.errors import OrpheusError
from orpheus.io import atomic_path

SCHEMA: dict[str, tuple[str, ...]] = {
    "tids": ("tid",),
    "tags": ("tag",),
    "tid_tag": ("tid", "tag", "val"),
}

_CHUNK = 1_000_000
_CREATE = """
CREATE TABLE tids(tid TEXT);
CREATE TABLE tags(tag TEXT);
CREATE TABLE tid_tag(tid INT, tag INT, val FLOAT);  -- as in the MSD file
"""
_INDEXES = """
CREATE INDEX tid_tag_tid ON tid_tag(tid);
CREATE INDEX tid_tag_tag ON tid_tag(tag);
CREATE INDEX tids_tid ON tids(tid);
CREATE INDEX tags_tag ON tags(tag);
"""


def write_tag_db(
    path: str | Path,
    tids: Sequence[str],
    tags: Sequence[str],
    rows: Iterable[tuple[int, int, float]],
    *,
    extra: Callable[[sqlite3.Connection], None] | None = None,
    indexes: bool = True,
) -> None:
    """Write a tag database in the Last.fm schema, atomically (`orpheus.io`).

    `rows` are (track number, tag number, val), the numbers being the 1-based rowids of `tids`
    and `tags` as in the MSD's `lastfm_tags.db`; an iterable, so millions of rows stream.
    `extra(con)` adds tables of its own (the clean db's audit) before the indexes are built.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            con.executescript(_CREATE)
            con.executemany("INSERT INTO tids(rowid, tid) VALUES (?, ?)", enumerate(tids, 1))
            con.executemany("INSERT INTO tags(rowid, tag) VALUES (?, ?)", enumerate(tags, 1))
            con.executemany("INSERT INTO tid_tag(tid, tag, val) VALUES (?, ?, ?)", rows)
            if extra is not None:
                extra(con)
            if indexes:
                con.executescript(_INDEXES)
            con.commit()
        finally:
            con.close()


class LastFm:
    """A Last.fm tag database, opened read-only and validated on open.

    Tag numbers and track numbers are the SQLite rowids of `tags` and `tids`; in a clean
    database they run 1..N, so `vocabulary()[i]` is tag number i + 1.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise OrpheusError(
                f"no Last.fm database at {self.path}",
                hint="pass --lastfm-db DB or set paths.lastfm_db in config.json",
            )
        uri = self.path.resolve().as_uri() + "?mode=ro"
        self.conn = sqlite3.connect(uri, uri=True)
        try:
            self._validate()
        except BaseException:
            self.conn.close()
            raise

    def _validate(self) -> None:
        """Refuse anything that is not a Last.fm-shaped SQLite db, naming what is missing."""
        try:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            raise OrpheusError(f"{self.path} is not an SQLite database ({exc})") from None
        if not tables:
            raise OrpheusError(
                f"{self.path} is an empty database (no tables); expected tids, tags, tid_tag"
            )
        for table, columns in SCHEMA.items():
            if table not in tables:
                raise OrpheusError(f"{self.path} has no table `{table}` (not a Last.fm tag db)")
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column not in have:
                    raise OrpheusError(f"{self.path}: table `{table}` has no column `{column}`")
        self.has_audit = "audit" in tables

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> LastFm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- numbers <-> names -------------------------------------------------------------------

    def vocabulary(self) -> list[str]:
        """Tag names in tag-number order (index i is tag number i + 1 in a clean db)."""
        return [r[0] for r in self.conn.execute("SELECT tag FROM tags ORDER BY rowid")]

    def tag_to_num(self, tag: str) -> int | None:
        row = self.conn.execute("SELECT rowid FROM tags WHERE tag = ?", (tag,)).fetchone()
        return None if row is None else int(row[0])

    def num_to_tag(self, num: int) -> str | None:
        row = self.conn.execute("SELECT tag FROM tags WHERE rowid = ?", (int(num),)).fetchone()
        return None if row is None else row[0]

    def tid_to_num(self, tid: str) -> int | None:
        row = self.conn.execute("SELECT rowid FROM tids WHERE tid = ?", (tid,)).fetchone()
        return None if row is None else int(row[0])

    def num_to_tid(self, num: int) -> str | None:
        row = self.conn.execute("SELECT tid FROM tids WHERE rowid = ?", (int(num),)).fetchone()
        return None if row is None else row[0]

    def tids(self) -> list[str]:
        """Every track ID in the db (NULL placeholders of old clean dbs skipped)."""
        sql = "SELECT tid FROM tids WHERE tid IS NOT NULL ORDER BY rowid"
        return [r[0] for r in self.conn.execute(sql)]

    # -- per-track / per-tag queries ---------------------------------------------------------

    def tags_of(self, tid: str, val: float | None = None) -> list[str]:
        """Tags of one track, strongest (`val`) first."""
        return [t for t, _ in self.tags_with_val(tid, val)]

    def tags_with_val(self, tid: str, val: float | None = None) -> list[tuple[str, float]]:
        """(tag, val) pairs of one track, strongest first; one pair per distinct tag."""
        sql = (
            "SELECT g.tag, MAX(r.val) AS v FROM tid_tag r JOIN tags g ON g.rowid = r.tag"
            " WHERE r.tid IN (SELECT rowid FROM tids WHERE tid = ?)"
        )
        params: tuple = (tid,)
        if val is not None:
            sql += " AND r.val > ?"
            params += (float(val),)
        sql += " GROUP BY g.tag ORDER BY v DESC, MIN(r.tag)"
        return [
            (t, float(v) if v is not None else float("nan"))
            for t, v in self.conn.execute(sql, params)
        ]

    def tracks_with(self, tag: str, val: float | None = None) -> list[str]:
        """Track IDs carrying `tag` (exact name), each once, in track-number order."""
        sql = (
            "SELECT DISTINCT d.tid FROM tid_tag r JOIN tids d ON d.rowid = r.tid"
            " WHERE r.tag IN (SELECT rowid FROM tags WHERE tag = ?) AND d.tid IS NOT NULL"
        )
        params: tuple = (tag,)
        if val is not None:
            sql += " AND r.val > ?"
            params += (float(val),)
        return [r[0] for r in self.conn.execute(sql + " ORDER BY r.tid", params)]

    def tags_of_tracks(self, tids: Iterable[str], val: float | None = None) -> dict[str, list[str]]:
        """Tags of many tracks in one query (a temp table join): {tid: [tags in tag order]}.

        Every requested tid is a key; a track unknown to the db, or without tags, maps to [].
        """
        wanted = list(dict.fromkeys(tids))
        out: dict[str, list[str]] = {t: [] for t in wanted}
        cur = self.conn.cursor()
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _want(tid TEXT PRIMARY KEY)")
        cur.execute("DELETE FROM _want")
        cur.executemany("INSERT OR IGNORE INTO _want(tid) VALUES (?)", ((t,) for t in wanted))
        sql = (
            "SELECT DISTINCT d.tid, g.tag, r.tag FROM _want w JOIN tids d ON d.tid = w.tid"
            " JOIN tid_tag r ON r.tid = d.rowid JOIN tags g ON g.rowid = r.tag"
        )
        params: tuple = ()
        if val is not None:
            sql += " WHERE r.val > ?"
            params = (float(val),)
        for tid, tag, _ in cur.execute(sql + " ORDER BY d.rowid, r.tag", params):
            out[tid].append(tag)
        cur.execute("DELETE FROM _want")
        return out

    # -- bulk reads --------------------------------------------------------------------------

    def rows(self, val: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All of `tid_tag` as NumPy arrays (tid number, tag number, val); optionally val > `val`.

        SQLite packs each chunk of a column into one string (`group_concat`) that NumPy parses
        in C: three times faster than building 8.6M Python tuples. NULL numbers read as -1,
        NULL vals as NaN.
        """
        try:
            tid, tag, v = self._rows_packed()
        except sqlite3.OperationalError:  # e.g. a WITHOUT ROWID table: no keyset paging
            tid, tag, v = self._rows_tuples()
        if val is not None:
            keep = v > float(val)
            tid, tag, v = tid[keep], tag[keep], v[keep]
        return tid, tag, v

    def _rows_packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sql = (
            "SELECT group_concat(ifnull(CAST(tid AS INTEGER), -1)),"
            " group_concat(ifnull(CAST(tag AS INTEGER), -1)),"
            " group_concat(ifnull(CAST(val AS REAL), 'nan')), max(rowid), count(*)"
            " FROM (SELECT rowid, tid, tag, val FROM tid_tag"
            " WHERE rowid > ? ORDER BY rowid LIMIT ?)"
        )
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        last = -(2**63)
        while True:
            a, b, c, last_row, n = self.conn.execute(sql, (last, _CHUNK)).fetchone()
            if not n:
                break
            cols = (
                np.fromstring(a, dtype=np.int64, sep=","),
                np.fromstring(b, dtype=np.int64, sep=","),
                np.fromstring(c, dtype=np.float64, sep=","),
            )
            if any(col.size != n for col in cols):
                raise OrpheusError(f"{self.path}: tid_tag holds values that are not numbers")
            parts.append(cols)
            last = last_row
        return _concat(parts)

    def _rows_tuples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cur = self.conn.execute("SELECT tid, tag, val FROM tid_tag")
        parts = []
        while rows := cur.fetchmany(_CHUNK):
            tid, tag, v = zip(*rows, strict=True)
            parts.append(
                (
                    np.array([-1 if x is None else x for x in tid], dtype=np.int64),
                    np.array([-1 if x is None else x for x in tag], dtype=np.int64),
                    np.array(v, dtype=np.float64),
                )
            )
        return _concat(parts)

    def tag_table(self) -> pd.Series:
        """Tag names indexed by tag number (NULL names dropped)."""
        rows = self.conn.execute(
            "SELECT rowid, tag FROM tags WHERE tag IS NOT NULL ORDER BY rowid"
        ).fetchall()
        if not rows:
            return pd.Series([], dtype=object, name="tag")
        num, name = zip(*rows, strict=True)
        return pd.Series(name, index=pd.Index(num, dtype=np.int64, name="num"), name="tag")

    def tid_table(self) -> pd.Series:
        """Track IDs indexed by track number (NULL placeholders dropped)."""
        rows = self.conn.execute(
            "SELECT rowid, tid FROM tids WHERE tid IS NOT NULL ORDER BY rowid"
        ).fetchall()
        if not rows:
            return pd.Series([], dtype=object, name="tid")
        num, tid = zip(*rows, strict=True)
        return pd.Series(tid, index=pd.Index(num, dtype=np.int64, name="num"), name="tid")

    def popularity(self, val: float | None = None) -> pd.Series:
        """Tag name -> number of distinct tracks carrying it, most popular first.

        Ties keep tag-number order. Tags with no (qualifying) track are left out. Two tag
        numbers with the same name count as one tag.
        """
        names = self.tag_table()
        tid, tag, _ = self.rows(val)
        return distinct_track_counts(names, tid, tag, set(self.tid_table().index))

    def tids_with_tags(self, val: float | None = None) -> set[str]:
        """Track IDs that carry at least one tag."""
        tid, tag, _ = self.rows(val)
        tids = self.tid_table()
        names = self.tag_table()
        ok = np.isin(tag, names.index.to_numpy())
        nums = unique_sorted(tid[ok])
        return set(tids.reindex(nums).dropna())

    def stats(self) -> dict[str, object]:
        """Counts that describe the db: tracks, tags, rows, duplicate rows, val range."""
        one = self.conn.execute
        n_rows, n_pairs = one(
            "SELECT COUNT(*), (SELECT COUNT(*) FROM (SELECT DISTINCT tid, tag FROM tid_tag))"
            " FROM tid_tag"
        ).fetchone()
        vmin, vmax = one("SELECT MIN(val), MAX(val) FROM tid_tag").fetchone()
        return {
            "path": str(self.path),
            "tracks": one("SELECT COUNT(*) FROM tids WHERE tid IS NOT NULL").fetchone()[0],
            "tagged_tracks": one("SELECT COUNT(DISTINCT tid) FROM tid_tag").fetchone()[0],
            "tags": one("SELECT COUNT(*) FROM tags").fetchone()[0],
            "rows": n_rows,
            "duplicate_rows": n_rows - n_pairs,
            "val_min": vmin,
            "val_max": vmax,
            "clean": self.has_audit,
        }


def _concat(parts: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def unique_sorted(a: np.ndarray) -> np.ndarray:
    """np.unique by sort: NumPy 2.4's np.unique is ~100x slower than its sort on 8.6M ints."""
    s = np.sort(a)
    if s.size:
        s = s[np.concatenate(([True], s[1:] != s[:-1]))]
    return s


def name_codes(names: pd.Series, tag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map row tag numbers to *name* codes: (code per row, -1 if dangling; distinct names).

    Codes follow the first tag number of each name, so code order is tag-number order.
    """
    codes, uniques = pd.factorize(names.to_numpy())
    nums = names.index.to_numpy()
    lookup = np.full(int(nums.max(initial=0)) + 1, -1, np.int64)
    lookup[nums] = codes
    inside = (tag >= 0) & (tag < lookup.size)
    name_id = np.full(tag.shape, -1, np.int64)
    name_id[inside] = lookup[tag[inside]]
    return name_id, np.asarray(uniques, dtype=object)


def count_distinct(key: np.ndarray, tid: np.ndarray, n_keys: int) -> np.ndarray:
    """Number of distinct tracks per key (0..n_keys-1): duplicate rows count once."""
    if key.size == 0:
        return np.zeros(n_keys, np.int64)
    width = int(tid.max()) + 1
    pairs = unique_sorted(key * width + tid)
    return np.bincount(pairs // width, minlength=n_keys)


def distinct_track_counts(
    names: pd.Series, tid: np.ndarray, tag: np.ndarray, valid_tids: set[int] | None = None
) -> pd.Series:
    """Distinct-track counts per tag *name* from row arrays; most popular first, ties by number.

    Rows pointing at a missing tag (or, with `valid_tids`, a missing track) are ignored.
    """
    name_id, uniques = name_codes(names, tag)
    keep = (name_id >= 0) & (tid >= 0)
    if valid_tids is not None:
        keep &= np.isin(tid, np.fromiter(valid_tids, np.int64, len(valid_tids)))
    counts = count_distinct(name_id[keep], tid[keep], len(uniques))
    order = np.lexsort((np.arange(len(uniques)), -counts))
    order = order[counts[order] > 0]
    return pd.Series(
        counts[order], index=pd.Index(uniques[order], name="tag"), name="tracks", dtype=np.int64
    )
