"""Train/valid/test: from the dataset's own split files, else by artist, else by track-ID hash;
and whether each split of a TFRecord plan can score every tag.

By artist: every artist's tracks go to the split its name hashes to (`records.split_of` on the
artist instead of the track ID), so no artist is in two splits and an artist never moves when
the corpus grows. Tracks without a known artist fall back to their own hash.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from orpheus.records import SPLIT_NAMES, Plan, split_of

DATASET, ARTIST, HASH = "dataset", "artist", "track-id hash"


def assign(table: pd.DataFrame, split: Sequence[float]) -> tuple[dict[str, str] | None, str]:
    """(track ID -> split name, or None for the plain hash split; the split's source).

    A dataset split ('split' column) wins; its tracks keep their split even where the
    configured percentages would say otherwise. Then artists ('artist' column).
    """
    if "split" in table and table["split"].notna().any():
        given = table[table["split"].notna()]
        chosen = dict(zip(given["track_id"], given["split"], strict=True))
        return chosen, DATASET
    if "artist" in table and table["artist"].notna().any():
        known = table[table["artist"].notna()]
        by_artist = {a: split_of(a, split) for a in known["artist"].unique()}
        chosen = {t: by_artist[a] for t, a in zip(known["track_id"], known["artist"], strict=True)}
        return chosen, ARTIST
    return None, HASH


def problems(plan: Plan) -> list[str]:
    """One line per split that is empty, or lacks a positive for some tag (its AUC is undefined)."""
    wanted = [n for n, pct in zip(SPLIT_NAMES, plan.split, strict=False) if pct > 0]
    found: dict[str, set[int]] = {n: set() for n in wanted}
    counts: dict[str, int] = dict.fromkeys(wanted, 0)
    for shard in plan.shards:
        if shard.split in found:
            counts[shard.split] += len(shard.tracks)
            for track in shard.tracks:
                found[shard.split].update(track.tags)
    out = []
    for name in wanted:
        if not counts[name]:
            out.append(f"the {name} split is empty")
            continue
        missing = [t for i, t in enumerate(plan.vocabulary) if i not in found[name]]
        if missing and name != "train":
            shown = ", ".join(repr(t) for t in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            out.append(
                f"the {name} split ({counts[name]} tracks) has no track for "
                f"{len(missing)} of {len(plan.vocabulary)} tags ({shown}{more}): "
                "their scores are undefined"
            )
    return out
