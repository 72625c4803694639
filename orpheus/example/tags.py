"""The example corpus's Last.fm tags: which raw strings each track carries, and what survives.

Raw tags are built to exercise every cleaning rule of seed-inventory §2.6 with counts that make
the outcome unambiguous: canonical genre spellings (lines kept in the genre list) are popular
(count >= threshold T); spelling variants that normalise onto them are rarer (sub_threshold S <=
count < T); a few variants are too rare for the search pool (count < S) or are `-` rejected lines
and map to nothing; `2000s`, `rhythm and blues` and `funky` are popular enough to collide and be
merged into `00s`, `rnb` and `funk`; bare decade numbers are merged, then dropped; rubbish and
low-`val` noise map to nothing. Every raw string that is not a genre-list line is kept below T so
it can never become a genre target. Counts are distinct tracks.

The clean tag each raw tag yields is decided here, by construction, and written to truth.json;
the tags helper's cleaner must reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from orpheus.example.lists import tag_lists

# style -> (primary canonical spelling, secondary canonical spellings); all are genre-list lines.
STYLE_TAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rock": ("rock", ("classic rock", "hard rock", "alternative rock")),
    "metal": ("metal", ("heavy metal", "thrash metal", "hard rock")),
    "electronic": ("electronic", ("dance", "House", "techno")),
    "hip-hop": ("Hip-Hop", ()),
    "jazz": ("jazz", ("Smooth Jazz", "lounge")),
    "classical": ("Classical", ()),
    "ambient": ("ambient", ("chillout", "new age")),
    "folk": ("folk", ("indie folk", "folk rock")),
    "pop": ("pop", ("dance", "pop rock")),
    "rnb": ("rnb", ("soul", "funk")),
}
STYLES = tuple(STYLE_TAGS)
DECADES = ("60s", "70s", "80s", "90s", "00s")

# Spellings that replace the canonical on a few tracks and normalise onto it (clean_1 key + plural).
VARIANTS: dict[str, tuple[str, ...]] = {
    "rock": ("Rock", "rocks"),
    "metal": ("Metal",),
    "electronic": ("Electronic",),
    "Hip-Hop": ("hip hop", "hiphop", "Hip Hop", "hip-hop"),
    "jazz": ("Jazz",),
    "Classical": ("classical",),
    "ambient": ("Ambient",),
    "folk": ("Folk",),
    "pop": ("Pop",),
    "rnb": ("RnB", "R n B"),
    "House": ("house",),
    "chillout": ("chill out", "Chill-out"),
    "Smooth Jazz": ("smooth jazz",),
    "classic rock": ("Classic Rock",),
    "dance": ("Dance",),
    "soul": ("Soul",),
    "funk": ("Funk",),
    "pop rock": ("Pop-Rock", "poprock"),
    "90s": ("90's",),
    "70s": ("70's",),
    "60s": ("60's",),
    "00s": ("00's",),
}
# Spellings that are `-` rejected lines of the genre list: they replace the canonical and are lost.
REJECTED_SPELLINGS: dict[str, tuple[str, ...]] = {"80s": ("80's", "1980s"), "90s": ("1990s",)}
# Popular enough to be genre targets themselves; merged into the (more popular) canonical.
MERGED_REPLACING = {"00s": "2000s"}
MERGED_ADDED = {"rnb": "rhythm and blues", "funk": "funky"}
# Bare numbers: merged into a decade by the searches, then dropped by the cleaning's drop list.
NUMBERS: dict[str, tuple[str, ...]] = {
    "00s": ("00", "2000"),
    "90s": ("90",),
    "80s": ("80",),
    "70s": ("70",),
    "60s": ("60",),
}
# Too rare for the search pool when S >= 2: replaces the canonical on one track, which loses it.
RARE = {"Hip-Hop": "hip_hop"}

VOCAL_PRIMARY = {
    "female": "female vocalists",
    "male": "male vocalists",
    "rap": "rap",
    "instrumental": "instrumental",
}
VOCAL_VARIANTS: dict[str, tuple[str, ...]] = {
    "female": ("female vocalist", "female vocals", "Female fronted metal"),
    "male": ("male vocals", "male vocalist", "male vocal"),
    "rap": ("Gangsta Rap", "hardcore rap"),
    "instrumental": ("instrumental rock", "jazz instrumental"),
}
# Lines rejected (`-`) inside the vocal lists, and rubbish found in no list at all.
UNLISTED_RUBBISH = ("Female Names", "mostly instrumental", "albums I own", "check out")
# Descriptive rubbish per style, all `-` rejected lines of the genre list.
STYLE_RUBBISH: dict[str, tuple[str, ...]] = {
    "rock": ("guitar", "british"),
    "metal": ("hardcore", "dark"),
    "electronic": ("upbeat", "party"),
    "hip-hop": ("hardcore", "american"),
    "jazz": ("smooth", "piano"),
    "classical": ("piano", "epic"),
    "ambient": ("atmospheric", "relaxing"),
    "folk": ("acoustic", "singer-songwriter"),
    "pop": ("catchy", "happy"),
    "rnb": ("groovy", "smooth"),
}
GENERIC_RUBBISH = ("seen live", "favorites", "Favourites", "cool", "Awesome", "beautiful", "Love")

NOISE_VAL_MAX = 9  # noise rows have val 1..9; the example config keeps only val > VAL_THRESHOLD
VAL_THRESHOLD = 10.0


def clean_name(canonical: str) -> str:
    """The clean tag a canonical spelling becomes: the cleaner lowercases the tags table."""
    return canonical.lower()


def thresholds(n_tracks: int) -> tuple[int, int, int]:
    """(quota q, threshold T, sub_threshold S): variants appear on q tracks, T = q + 1, S = q.

    Scaled with the corpus like the original's 2000/10 against Last.fm's ~505k tracks.
    """
    q = max(1, n_tracks // 100)
    return q, q + 1, q


@dataclass
class TagPlan:
    """Raw tags per track (index -> {raw: val}) and the clean tags each track must end with."""

    raw: dict[int, dict[str, float]]
    clean: dict[int, list[str]]
    counts: dict[str, int]
    threshold: int
    sub_threshold: int
    targets: set[str] = field(default_factory=set)


def plan_tags(
    tagged: list[tuple[int, str, str, str]],
    secondaries: dict[int, tuple[str, ...]],
    rubbish_only: set[int],
    n_tracks: int,
    rng: np.random.Generator,
) -> TagPlan:
    """Assign raw tags to the tagged tracks `(index, style, decade, vocals)`; derive clean tags."""
    q, t_thr, s_thr = thresholds(n_tracks)
    lists = tag_lists()
    raw: dict[int, dict[str, float]] = {i: {} for i, *_ in tagged}
    holders: dict[str, list[int]] = {}

    def val(lo: int = 20) -> float:
        return float(rng.integers(lo, 101))

    for i, style, decade, vocals in tagged:
        if i in rubbish_only:
            for tag in STYLE_RUBBISH[style] + GENERIC_RUBBISH[:2]:
                raw[i][tag] = val(10)
            continue
        primary, _ = STYLE_TAGS[style]
        for canon in (primary, *secondaries[i], decade):
            raw[i][canon] = val()
            holders.setdefault(canon, []).append(i)
        raw[i][VOCAL_PRIMARY[vocals]] = val()
        holders.setdefault(VOCAL_PRIMARY[vocals], []).append(i)
        for tag in STYLE_RUBBISH[style]:
            if rng.random() < 0.4:
                raw[i][tag] = val(10)
        if rng.random() < 0.3:
            raw[i][GENERIC_RUBBISH[int(rng.integers(len(GENERIC_RUBBISH)))]] = val(10)

    def replace(canon: str, spelling: str, n: int, floor: int) -> bool:
        """Swap `canon` for `spelling` on n tracks if `canon` keeps at least `floor` tracks."""
        still = [i for i in holders.get(canon, []) if canon in raw[i]]
        if len(still) - n < floor:
            return False
        for i in still[-n:]:
            raw[i][spelling] = raw[i].pop(canon)
        return True

    def add(canon: str, spelling: str, n: int, floor: int) -> bool:
        """Add `spelling` beside `canon` on n tracks if `canon` has at least `floor` tracks."""
        still = [i for i in holders.get(canon, []) if canon in raw[i]]
        if len(still) < max(n, floor):
            return False
        for i in still[:n]:
            raw[i][spelling] = val()
        return True

    for canon in sorted(holders):
        # a canonical with a merged partner (count T) must stay strictly more popular than it
        floor = t_thr + 1 if canon in MERGED_REPLACING or canon in MERGED_ADDED else t_thr
        if canon in MERGED_REPLACING:
            replace(canon, MERGED_REPLACING[canon], t_thr, t_thr + 1)
        if canon in MERGED_ADDED:
            add(canon, MERGED_ADDED[canon], t_thr, t_thr + 1)
        for spelling in VARIANTS.get(canon, ()) + REJECTED_SPELLINGS.get(canon, ()):
            replace(canon, spelling, q, floor)
        if canon in RARE and q >= 2:
            replace(canon, RARE[canon], 1, t_thr)
    for vocals, primary in VOCAL_PRIMARY.items():
        for spelling in VOCAL_VARIANTS[vocals]:
            replace(primary, spelling, q, 1)
    for k, tag in enumerate(UNLISTED_RUBBISH):
        owners = [i for i, *_ in tagged if i not in rubbish_only]
        for i in owners[k * q : (k + 1) * q] if len(owners) >= (k + 1) * q else []:
            raw[i][tag] = val(10)

    counts = _counts(raw)
    targets = {c for c in counts if c in lists.genre_kept and counts[c] >= t_thr}
    for decade, numbers in NUMBERS.items():
        for number in numbers:
            ok = decade in targets and (number != "2000" or "2000s" in targets)
            if ok:
                add(decade, number, q, 1)
    # Low-val noise: another style's primary, only where that primary is a target without it.
    for i, style, _, _ in tagged:
        if i in rubbish_only or rng.random() >= 0.15:
            continue
        other = STYLES[(STYLES.index(style) + 1 + int(rng.integers(len(STYLES) - 1))) % len(STYLES)]
        noise = STYLE_TAGS[other][0]
        if noise in targets and noise not in raw[i]:
            raw[i][noise] = float(rng.integers(1, NOISE_VAL_MAX + 1))

    counts = _counts(raw)
    _check(counts, targets, t_thr)
    clean = {i: sorted(_clean_of(tags, counts, targets, s_thr)) for i, tags in raw.items()}
    return TagPlan(raw, clean, counts, t_thr, s_thr, targets)


def _counts(raw: dict[int, dict[str, float]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tags in raw.values():
        for tag, v in tags.items():
            if v > NOISE_VAL_MAX:
                counts[tag] = counts.get(tag, 0) + 1
    return counts


def _check(counts: dict[str, int], targets: set[str], t_thr: int) -> None:
    """Fail loudly if a design invariant that makes the clean outcome unambiguous broke."""
    lists = tag_lists()
    listed = set(lists.genre_kept) | set(lists.genre_rejected)
    for tag, n in counts.items():
        if tag not in listed and n >= t_thr:
            raise RuntimeError(f"example tags: unlisted tag {tag!r} reached the threshold")
    for canon, merged in {**MERGED_REPLACING, **MERGED_ADDED}.items():
        if merged in targets and not counts.get(canon, 0) > counts[merged]:
            raise RuntimeError(f"example tags: {merged!r} is not rarer than {canon!r}")


def _clean_of(
    tags: dict[str, float], counts: dict[str, int], targets: set[str], s_thr: int
) -> set[str]:
    """The clean tags one track's raw tags yield under the cleaning rules (by construction)."""
    out: set[str] = set()
    variant_of = {v: c for c, vs in VARIANTS.items() for v in vs}
    merged_of = {m: c for c, m in {**MERGED_REPLACING, **MERGED_ADDED}.items()}
    vocal_of = {VOCAL_PRIMARY[v]: v for v in VOCAL_PRIMARY}
    vocal_of |= {s: v for v, ss in VOCAL_VARIANTS.items() for s in ss}
    for tag, v in tags.items():
        if v <= VAL_THRESHOLD:
            continue
        if tag in targets and tag not in merged_of:
            out.add(clean_name(tag))
        elif tag in variant_of and variant_of[tag] in targets and counts[tag] >= s_thr:
            out.add(clean_name(variant_of[tag]))
        elif tag in merged_of and tag in targets and merged_of[tag] in targets:
            out.add(clean_name(merged_of[tag]))
        elif tag in vocal_of:
            out.add(vocal_of[tag])
    return out
