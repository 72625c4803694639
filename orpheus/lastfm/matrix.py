"""Tag co-occurrence analysis on a sparse track x tag matrix (the original's `Matrix`, §2.5).

The original built a pydata-sparse DOK tensor by recursive set intersections and pickled its tag
list; here a scipy CSC matrix holds one boolean column per tag, and every count is a sparse
product: AND/OR counts, the tags related to one tag (`orpheus tags related`), 2-D and 3-D
correlation matrices, and the equivalent / subset tag discovery used to decide merges by hand.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from orpheus.errors import OrpheusError
from orpheus.lastfm.db import LastFm, name_codes, unique_sorted

MAX_DENSE_3D = 400  # tags: the 3-D correlation tensor is n^3 floats


class TagMatrix:
    """Rows are tracks, columns are tags; entry 1 where the track carries the tag."""

    def __init__(self, matrix: sp.spmatrix | sp.sparray, tags: Sequence[str]):
        self.x = sp.csc_array(sp.csc_array(matrix) != 0, dtype=np.int32)  # explicit 0s stay 0
        self.tags = list(tags)
        self.column = {t: i for i, t in enumerate(self.tags)}
        if self.x.shape[1] != len(self.tags):
            raise ValueError("one tag name per column is needed")

    @classmethod
    def from_db(
        cls, db: LastFm, tags: Sequence[str] | None = None, val: float | None = None
    ) -> TagMatrix:
        """The matrix of `tags` (default: every tag of the db) over the tracks that carry any.

        Rows pointing at no track (NULL, missing or a NULL placeholder) are left out, as
        `LastFm.popularity` leaves them out, so a column's count is the tag's popularity.
        """
        names = db.tag_table()
        tid, tag, _ = db.rows(val)
        known = np.isin(tid, db.tid_table().index.to_numpy())
        tid, tag = tid[known], tag[known]
        name_id, uniques = name_codes(names, tag)
        wanted = list(uniques) if tags is None else list(tags)
        index = {t: i for i, t in enumerate(uniques)}
        unknown = [t for t in wanted if t not in index]
        if unknown:
            raise OrpheusError(f"not a tag of {db.path}: {unknown[0]!r}")
        col_of = np.full(len(uniques), -1, np.int64)
        col_of[[index[t] for t in wanted]] = np.arange(len(wanted))
        col = np.where(name_id >= 0, col_of[np.clip(name_id, 0, None)], -1)
        keep = col >= 0
        rows = unique_sorted(tid[keep])
        row_index = np.searchsorted(rows, tid[keep])
        x = sp.csc_array(
            (np.ones(int(keep.sum()), np.int32), (row_index, col[keep])),
            shape=(rows.size, len(wanted)),
        )
        x.sum_duplicates()
        return cls(x, wanted)

    def _cols(self, tags: Sequence[str | int]) -> list[int]:
        out = []
        for t in tags:
            if isinstance(t, str):
                if t not in self.column:
                    raise OrpheusError(f"tag {t!r} is not in the matrix")
                out.append(self.column[t])
            else:
                out.append(int(t))
        return out

    def _hits(self, tags: Sequence[str | int]) -> np.ndarray:
        """Per track: how many of `tags` it carries."""
        cols = self._cols(tags)
        return np.asarray(self.x[:, cols].sum(axis=1)).ravel()

    def count(self, tag: str | int) -> int:
        return int(self.x[:, self._cols([tag])].sum())

    def tags_and(self, tags: Sequence[str | int]) -> int:
        """Tracks carrying every one of `tags`."""
        return int((self._hits(tags) == len(set(self._cols(tags)))).sum())

    def tags_or(self, tags: Sequence[str | int]) -> int:
        """Tracks carrying at least one of `tags`."""
        return int((self._hits(tags) > 0).sum())

    def with_one_without_many(self, one: str | int, many: Sequence[str | int]) -> int:
        """Tracks with `one` and none of `many`."""
        return int(((self._hits([one]) > 0) & (self._hits(many) == 0)).sum())

    def with_many_without_one(self, many: Sequence[str | int], one: str | int) -> int:
        """Tracks with every one of `many` but not `one`."""
        all_many = self._hits(many) == len(set(self._cols(many)))
        return int((all_many & (self._hits([one]) == 0)).sum())

    def cooccurrence(self) -> np.ndarray:
        """[i, j] = tracks carrying both tag i and tag j (diagonal: tracks with tag i)."""
        return (self.x.T @ self.x).toarray().astype(np.int64)

    def related(self, tag: str | int) -> pd.DataFrame:
        """The tags sharing tracks with `tag`, most shared first (ties: higher lift, then column).

        Columns: `tag`, `both` (tracks with both tags), `tracks` (tracks with the other tag),
        `share` (both / tracks with `tag`) and `lift` = P(both) / (P(tag) P(other)), the
        probabilities taken over the matrix's rows: 1 for tags that ignore each other, above 1
        for tags that go together. One sparse matrix-vector product: well under a second on a
        Last.fm-sized matrix (reading the db into it takes longer).
        """
        c = self._cols([tag])[0]
        carries = np.zeros(self.x.shape[0], np.int32)
        carries[self.x[:, [c]].indices] = 1
        both = np.asarray(self.x.T @ carries, np.int64)
        tracks = np.asarray(self.x.sum(axis=0), np.int64).ravel()
        share = both / max(int(tracks[c]), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            lift = share * self.x.shape[0] / tracks
        keep = (both > 0) & (np.arange(both.size) != c)
        order = np.lexsort((np.arange(both.size), -lift, -both))
        order = order[keep[order]]
        return pd.DataFrame(
            {
                "tag": [self.tags[i] for i in order],
                "both": both[order],
                "tracks": tracks[order],
                "share": share[order],
                "lift": lift[order],
            }
        )

    def correlation_matrix(self) -> np.ndarray:
        """[i, j] = share of tag-i tracks that also carry tag j (1 on the diagonal)."""
        co = self.cooccurrence().astype(np.float64)
        n = np.diag(co).copy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nan_to_num(co / n[:, None])

    def correlation_matrix_3d(self) -> np.ndarray:
        """[i, j, k] = share of tag-i tracks that carry tag j or tag k."""
        n = len(self.tags)
        if n > MAX_DENSE_3D:
            raise OrpheusError(f"3-D correlation of {n} tags is too large (at most {MAX_DENSE_3D})")
        co = self.cooccurrence().astype(np.float64)
        out = np.zeros((n, n, n))
        for i in range(n):
            sub = self.x[self.x[:, [i]].toarray().ravel() > 0]
            triple = (sub.T @ sub).toarray()  # [j, k] = tracks with i, j and k
            both = co[i][:, None] + co[i][None, :] - triple
            out[i] = both / co[i, i] if co[i, i] else 0.0
        return out

    def are_equivalent(self, threshold: float = 0.8) -> list[tuple[str, str]]:
        """Pairs (i < j) where each tag's tracks mostly carry the other."""
        c = self.correlation_matrix()
        i, j = np.nonzero(np.triu((c >= threshold) & (c.T >= threshold), k=1))
        return [(self.tags[a], self.tags[b]) for a, b in zip(i, j, strict=True)]

    def all_tag_is(self, threshold: float = 0.7) -> list[tuple[str, str]]:
        """Pairs (i, j): at least `threshold` of tag i's tracks also carry tag j."""
        c = self.correlation_matrix()
        np.fill_diagonal(c, 0)
        i, j = np.nonzero(c >= threshold)
        return [(self.tags[a], self.tags[b]) for a, b in zip(i, j, strict=True)]

    def all_tag_is_either(self, threshold: float = 0.7) -> list[tuple[str, str, str]]:
        """Triples (i, j, k), j < k: tag i's tracks mostly carry j or k, but neither alone."""
        c3 = self.correlation_matrix_3d()
        c2 = self.correlation_matrix()
        out = []
        n = len(self.tags)
        for i in range(n):
            hit = (c3[i] >= threshold) & (c2[i][:, None] < threshold) & (c2[i][None, :] < threshold)
            hit[i, :] = hit[:, i] = False
            for j, k in zip(*np.nonzero(np.triu(hit, k=1)), strict=True):
                out.append((self.tags[i], self.tags[j], self.tags[k]))
        return out


def related(db: LastFm, tag: str, top: int | None = None) -> dict[str, object]:
    """`tag`'s related tags in `db` (see `TagMatrix.related`), over the tracks with any tag.

    An unknown tag is an error naming the db, with the names it may have meant as the hint.
    """
    if db.tag_to_num(tag) is None:
        close = close_tags(tag, db.tag_table().tolist())
        raise OrpheusError(
            f"{tag!r} is not a tag of {db.path}",
            hint=f"did you mean {', '.join(map(repr, close))}?"
            if close
            else "tag names are case-sensitive; see `orpheus tags top`",
        )
    m = TagMatrix.from_db(db)
    table = m.related(tag)
    if top is not None:
        table = table.head(top)
    return {
        "tag": tag,
        "db": str(db.path),
        "tracks": m.count(tag),
        "total_tracks": m.x.shape[0],
        "related": table.to_dict("records"),
    }


def close_tags(tag: str, names: Sequence[str], n: int = 5) -> list[str]:
    """Names a mistyped `tag` may have meant: the same up to case first, then difflib's closest."""
    folded = tag.casefold()
    same = [t for t in names if t.casefold() == folded]
    return list(dict.fromkeys([*same, *difflib.get_close_matches(tag, names, n=n)]))[:n]
