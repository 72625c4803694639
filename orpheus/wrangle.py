"""Wrangling: join the scan with the MSD summary and drop what cannot be trusted, with reasons.

The steps run in this order, each on what the previous left, and every dropped row keeps its
first reason in the rejects table:

1. `no-summary-row`: the 7digital ID is not in the summary (inner join on `track_7digitalid`).
2. `ambiguous-id`: the 7digital ID or the track ID is not unique in the join (all copies go).
3. `mismatch`: the track ID is listed in sid_mismatches.txt.
4. `broken-audio`: file size 0 or no clip length (the scan's rejects come in here, so every
   scanned file gets exactly one verdict).
5. `no-tags`: the track ID has no (track, tag) row in the Last.fm database.
6. `duplicate`: of each group of msd_duplicates.txt, restricted to the tracks still present,
   only the lexicographically smallest track ID stays. A group with one present member keeps it
   (the original dropped such lone tracks).

Everything is vectorised pandas; the Last.fm check reads the tag rows once, so the full MSD
(1,000,000 summary rows) wrangles in well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

NO_SUMMARY_ROW = "no-summary-row"
AMBIGUOUS_ID = "ambiguous-id"
MISMATCH = "mismatch"
BROKEN_AUDIO = "broken-audio"
NO_TAGS = "no-tags"
DUPLICATE = "duplicate"
REASONS = (NO_SUMMARY_ROW, AMBIGUOUS_ID, MISMATCH, BROKEN_AUDIO, NO_TAGS, DUPLICATE)

LEAD_COLUMNS = ["track_id", "track_7digitalid", "file_path"]


@dataclass
class WrangleResult:
    """The kept tracks and the dropped rows (same columns plus `reason` and `detail`)."""

    table: pd.DataFrame
    rejects: pd.DataFrame

    def counts(self) -> dict[str, int]:
        """Rows dropped per reason, in pipeline order (zeros included)."""
        got = self.rejects["reason"].value_counts()
        return {reason: int(got.get(reason, 0)) for reason in REASONS}


def tagged_track_ids(db_path: str | Path) -> np.ndarray:
    """Track IDs with at least one (track, tag) row in a Last.fm tags database (read-only)."""
    from orpheus.lastfm.db import LastFm

    with LastFm(db_path) as db:
        return np.array(sorted(db.tids_with_tags()), dtype=object)


def scanned_files(table: pd.DataFrame, rejects: pd.DataFrame) -> pd.DataFrame:
    """The scan's readable files and its rejects (those with a 7digital ID) as one frame.

    Rejects have no clip length, so `wrangle` drops them as `broken-audio` unless an earlier
    step claims them; their scan reason travels in `scan_detail`.
    """
    named = rejects[rejects["track_7digitalid"].notna()]
    broken = named.drop(columns=["reason", "detail"]).assign(
        scan_detail="scan: " + named["reason"] + " (" + named["detail"] + ")"
    )
    parts = [f for f in (table, broken) if not f.empty]
    if not parts:
        return table.assign(scan_detail=pd.Series(dtype="str"))
    frame = pd.concat(parts, ignore_index=True)
    frame["track_7digitalid"] = frame["track_7digitalid"].astype("int64")
    return frame


def wrangle(
    scan: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    mismatches: Iterable[str] | None = None,
    tagged: Iterable[str] | None = None,
    duplicates: list[list[str]] | None = None,
) -> WrangleResult:
    """Run the steps of the module docstring. A step whose input is None is skipped.

    `scan` is the scan table, or `scanned_files(table, rejects)` to account for every file.
    Each step only marks rows (one reason per row); the wide frame is split once at the end.
    """
    frame = scan.merge(summary, on="track_7digitalid", how="left", indicator=True)
    verdict = _Verdicts(len(frame))
    missing = frame.pop("_merge").to_numpy() != "both"
    verdict.drop(missing, NO_SUMMARY_ROW, "7digital id not in the summary")

    alive = verdict.alive.copy()
    by_7d, by_tid = np.zeros(len(frame), bool), np.zeros(len(frame), bool)
    by_7d[alive] = frame["track_7digitalid"][alive].duplicated(keep=False).to_numpy()
    by_tid[alive] = frame["track_id"][alive].duplicated(keep=False).to_numpy()
    detail = np.where(by_7d, "7digital id is not unique", "track id is not unique")
    verdict.drop(by_7d | by_tid, AMBIGUOUS_ID, detail.astype(object))

    track_ids = pa.array(frame["track_id"], type=pa.string())
    if mismatches is not None:
        verdict.drop(_isin(track_ids, mismatches), MISMATCH, "listed in sid_mismatches")

    length = frame["clip_length"].to_numpy(dtype="float64", na_value=np.nan)
    broken = (frame["file_size"].to_numpy() <= 0) | ~(length > 0)
    detail = frame["scan_detail"] if "scan_detail" in frame else pd.Series(pd.NA, frame.index)
    detail = detail.fillna("empty file or no clip length").to_numpy(dtype=object)
    verdict.drop(broken, BROKEN_AUDIO, detail)

    if tagged is not None:
        verdict.drop(~_isin(track_ids, tagged), NO_TAGS, "no Last.fm tags")

    if duplicates is not None:
        alive = verdict.alive.copy()
        keeper = np.full(len(frame), None, dtype=object)
        kept_by = duplicate_keepers(frame["track_id"][alive], duplicates)
        keeper[alive] = kept_by.to_numpy(dtype=object, na_value=None)
        current = frame["track_id"].to_numpy(dtype=object, na_value=None)
        dropped = (keeper != None) & (keeper != current)  # noqa: E711 (element-wise)
        detail = np.full(len(frame), None, dtype=object)
        detail[dropped] = ["duplicate of " + k for k in keeper[dropped]]
        verdict.drop(dropped, DUPLICATE, detail)

    frame = frame.drop(columns=["scan_detail"], errors="ignore")
    table = _order(frame[verdict.alive]).sort_values("track_id", ignore_index=True)
    gone = ~verdict.alive
    rejects = frame[gone].assign(
        reason=pd.array(verdict.reason[gone], dtype="str"),
        detail=pd.array(verdict.detail[gone], dtype="str"),
    )
    step = pd.Categorical(rejects["reason"], categories=REASONS).codes
    rejects = rejects.iloc[np.argsort(step, kind="stable")]
    return WrangleResult(table, _order(rejects).reset_index(drop=True))


class _Verdicts:
    """One reason per row: the first step that drops a row names it."""

    def __init__(self, n: int):
        self.alive = np.ones(n, dtype=bool)
        self.reason = np.full(n, None, dtype=object)
        self.detail = np.full(n, None, dtype=object)

    def drop(self, mask: np.ndarray, reason: str, detail: str | np.ndarray) -> None:
        hit = mask & self.alive
        self.reason[hit] = reason
        self.detail[hit] = detail[hit] if isinstance(detail, np.ndarray) else detail
        self.alive &= ~hit


def _isin(values: pa.Array, members: Iterable[str]) -> np.ndarray:
    """Membership on Arrow strings in C (pandas' Arrow-string `isin` loops in Python)."""
    if isinstance(members, pa.Array | pa.ChunkedArray):
        value_set = members.cast(pa.string())
    else:
        value_set = pa.array(list(members), type=pa.string())
    hit = pc.is_in(values, value_set=value_set)
    return hit.fill_null(False).to_numpy(zero_copy_only=False)


def duplicate_keepers(track_ids: pd.Series, groups: list[list[str]]) -> pd.Series:
    """For each track, the track ID its duplicate group keeps (NA when it is in no group).

    Groups are restricted to `track_ids`; groups sharing a track are merged (connected
    components), and each keeps its smallest track ID, so the choice never depends on order.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    group = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    member = pa.array([tid for g in groups for tid in g], type=pa.string())
    present = _isin(member, pa.array(track_ids, type=pa.string()))
    members = pd.DataFrame(
        {
            "group": group[present],
            "track_id": member.filter(pa.array(present)).to_numpy(zero_copy_only=False),
        }
    ).drop_duplicates()
    if members.empty:
        return pd.Series(pd.NA, index=track_ids.index, dtype="str")
    codes, uniques = pd.factorize(members["track_id"])
    n_tracks = len(uniques)
    group_codes = pd.factorize(members["group"])[0] + n_tracks
    size = n_tracks + int(group_codes.max()) + 1
    graph = coo_matrix((np.ones(len(codes)), (codes, group_codes)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    uniques = np.asarray(uniques, dtype=object)
    smallest = pd.Series(uniques).groupby(labels[:n_tracks]).min()
    chosen = smallest.reindex(labels[:n_tracks]).to_numpy(dtype=object)
    position = pd.Index(uniques).get_indexer(track_ids.to_numpy(dtype=object))
    keeper = np.where(position >= 0, chosen[position], None)
    return pd.Series(pd.array(keeper, dtype="str"), index=track_ids.index)


def _order(frame: pd.DataFrame) -> pd.DataFrame:
    lead = [c for c in LEAD_COLUMNS if c in frame.columns]
    return frame[lead + [c for c in frame.columns if c not in lead]]
