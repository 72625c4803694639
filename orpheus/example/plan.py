"""The example corpus's plan: every track's IDs, style, metadata, audio recipe and planted faults,
and what each cleaning stage must keep or drop (truth.json).

Everything here is decided from the seed alone, before any audio is rendered, so the plan is
cheap, deterministic, and the single source for the files and the truth that describes them.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np

from orpheus.example.tags import DECADES, STYLE_TAGS, STYLES, TagPlan, plan_tags

PREVIEW_SECONDS = 30.0
SHORT_SECONDS = 10.0
SILENCE_CONFIG = {
    "min_size": 200000,
    "filter_trim_length": 15.0,
    "filter_tot_silence": 3.0,
    "filter_max_silence": 1.0,
    "top_db": 60,
}
# MP3 constant bit rates, bit/s.
MP3_96K = 96_000  # 44.1 kHz: ~360 kB per 30 s
MP3_80K_22K = 80_000  # 22.05 kHz: ~300 kB per 30 s
MP3_320K = 320_000  # a 10 s clip is still ~400 kB (fails on length only)
MP3_56K = 56_000  # cut to 150 kB it holds ~21 s (fails on size only)

# Faults that change the audio file, with the silence stage's verdict for each.
AUDIO_FAULTS = {
    "silent": "silent",
    "short-clip": "too-short",
    "truncated-short": "too-short",
    "truncated-small": "too-small",
    "silent-gaps": "total-silence",
    "long-silent-gap": "max-silence",
}
SCAN_FAULTS = {"empty-file": "empty-file", "not-audio": "not-audio"}
DECADE_WEIGHTS = {
    "rock": (2, 3, 3, 2, 2),
    "metal": (0, 1, 3, 3, 2),
    "electronic": (0, 0, 2, 4, 4),
    "hip-hop": (0, 0, 2, 4, 4),
    "jazz": (4, 3, 1, 1, 1),
    "classical": (2, 2, 2, 2, 2),
    "ambient": (0, 1, 2, 3, 3),
    "folk": (3, 3, 1, 1, 2),
    "pop": (1, 2, 3, 3, 3),
    "rnb": (2, 3, 2, 3, 2),
}
VOCAL_WEIGHTS = {  # female, male, instrumental, rap
    "rock": (3, 6, 1, 0),
    "metal": (2, 7, 1, 0),
    "electronic": (4, 1, 5, 0),
    "hip-hop": (0, 0, 0, 1),
    "jazz": (4, 2, 4, 0),
    "classical": (0, 0, 1, 0),
    "ambient": (2, 0, 8, 0),
    "folk": (5, 4, 1, 0),
    "pop": (6, 3, 1, 0),
    "rnb": (6, 4, 0, 0),
}
VOCALS = ("female", "male", "instrumental", "rap")

_WORDS = (
    "midnight river golden echo velvet static neon paper ghost silver summer winter electric "
    "broken distant hollow crimson wild lonely northern burning quiet iron glass blue honey "
    "ocean thunder shadow morning city desert garden mirror signal wander harbor ember canyon"
).split()
_ARTIST_FORMS = ("The {A} {B}s", "{A} {B}", "DJ {A}", "{A} & the {B}s", "{A} Quartet")


@dataclass
class Track:
    """One summary row (or, with `track_id` None, an audio file that has none)."""

    index: int
    track_id: str | None
    song_id: str | None
    d7: int
    style: str
    decade: str
    vocals: str
    year: int
    artist: str
    title: str
    release: str
    duration: float
    has_file: bool = True
    sr: int = 44100
    channels: int = 2
    faults: list[str] = field(default_factory=list)
    tagged: bool = True
    song_of: int | None = None  # duplicates share the first member's recording
    expected: dict = field(default_factory=dict)

    @property
    def file_path(self) -> str | None:
        """Path relative to the 7digital root, as MSD lays it out."""
        if not self.has_file:
            return None
        s = str(self.d7)
        return f"{s[0]}/{s[1]}/{s}.clip.mp3"

    def audio_fault(self) -> str | None:
        return next((f for f in self.faults if f in AUDIO_FAULTS or f in SCAN_FAULTS), None)


@dataclass
class Plan:
    seed: int
    tracks: list[Track]
    orphans: list[Track]
    dup_groups: list[list[str]]
    mismatches: list[tuple[Track, str, str]]
    tags: TagPlan


def _ids(rng: np.random.Generator, prefix: str, n: int, taken: set[str]) -> list[str]:
    alphabet = np.array(list(string.ascii_uppercase + string.digits))
    out: list[str] = []
    while len(out) < n:
        s = prefix + "".join(rng.choice(alphabet, 16))
        if s not in taken:
            taken.add(s)
            out.append(s)
    return out


def _name(rng: np.random.Generator, form: str) -> str:
    a, b = rng.choice(_WORDS, 2, replace=False)
    return form.format(A=a.title(), B=b.title())


def make_plan(n: int, seed: int) -> Plan:
    """Decide the whole corpus from (n, seed): rows, files, faults, tags."""
    rng = np.random.default_rng([seed, 1])
    taken: set[str] = set()
    track_ids = _ids(rng, "TR", n + 1, taken)
    song_ids = _ids(rng, "SO", n + 1, taken)
    d7s = [int(x) for x in rng.choice(np.arange(1_000_000, 10_000_000), n + 1, replace=False)]
    tracks: list[Track] = []
    # balanced styles: the first ten tracks one per style, then a shuffled even mix
    rest = [STYLES[k % len(STYLES)] for k in range(max(0, n - len(STYLES)))]
    styles = list(STYLES[:n]) + [rest[k] for k in rng.permutation(len(rest))]
    styles.append(STYLES[int(rng.integers(len(STYLES)))])  # the orphan file's
    for i in range(n + 1):
        style = styles[i]
        w = np.array(DECADE_WEIGHTS[style], float)
        decade = DECADES[int(rng.choice(len(DECADES), p=w / w.sum()))]
        w = np.array(VOCAL_WEIGHTS[style], float)
        vocals = VOCALS[int(rng.choice(len(VOCALS), p=w / w.sum()))]
        base = {"60s": 1960, "70s": 1970, "80s": 1980, "90s": 1990, "00s": 2000}[decade]
        year = 0 if rng.random() < 0.1 else base + int(rng.integers(10))
        artist = _name(rng, _ARTIST_FORMS[int(rng.integers(len(_ARTIST_FORMS)))])
        tracks.append(
            Track(
                index=i,
                track_id=track_ids[i],
                song_id=song_ids[i],
                d7=d7s[i],
                style=style,
                decade=decade,
                vocals=vocals,
                year=year,
                artist=artist,
                title=_name(rng, "{A} {B}"),
                release=_name(rng, "{A} {B}s"),
                duration=round(float(rng.uniform(150, 400)), 5),
            )
        )
        if i % 10 == 3:
            tracks[-1].channels = 1
        elif i % 10 == 7:
            tracks[-1].channels, tracks[-1].sr = 1, 22050
    orphan = tracks.pop()
    orphan.track_id = orphan.song_id = None
    orphan.faults = ["no-summary-row"]
    dup_groups, mismatches = _plant_faults(tracks, rng)
    tagged = [(t.index, t.style, t.decade, t.vocals) for t in tracks if t.tagged]
    # each secondary on about half a style's tracks; rnb always carries soul and funk, so that
    # `funky` can be planted as a popular collision that the cleaning's combine rule merges
    secondaries = {
        t.index: tuple(s for s in STYLE_TAGS[t.style][1] if rng.random() < 0.5 or t.style == "rnb")
        for t in tracks
    }
    rubbish_only = {t.index for t in tracks if "rubbish-tags-only" in t.faults}
    tags = plan_tags(tagged, secondaries, rubbish_only, n, rng)
    return Plan(seed, tracks, [orphan], dup_groups, mismatches, tags)


def _plant_faults(
    tracks: list[Track], rng: np.random.Generator
) -> tuple[list[list[str]], list[tuple[Track, str, str]]]:
    """Give faults to tracks after the first ten (one normal track per style stays clean)."""
    free = list(range(len(STYLES), len(tracks)))
    dup_groups: list[list[str]] = []
    mismatches: list[tuple[Track, str, str]] = []

    def take(k: int, untagged: bool = False) -> list[Track] | None:
        """The next k free tracks; tracks that lose their tags spare the rarest-tagged style."""
        if len(free) < k:
            return None
        order = sorted(free, key=lambda i: untagged and tracks[i].style == "rnb")
        picked = [tracks[i] for i in order[:k]]
        for t in picked:
            free.remove(t.index)
        for t in picked:
            t.channels, t.sr = 2, 44100
        return picked

    def group(members: list[Track], keep: Track | None) -> None:
        """Record a duplicate group; `keep` gets the largest ID, so only earlier drops save it."""
        ids = sorted(t.track_id for t in members)
        if keep is not None:
            others = [t for t in members if t is not keep]
            for t, tid in zip([*others, keep], ids, strict=True):
                t.track_id = tid
        first = members[0]
        for t in members[1:]:
            t.artist, t.title, t.release = first.artist, first.title, first.release
            t.style, t.decade, t.vocals = first.style, first.decade, first.vocals
            t.song_of = first.index
        dup_groups.append([t.track_id for t in members])

    for fault in (*SCAN_FAULTS, *AUDIO_FAULTS, "mismatch", "no-tags", "rubbish-tags-only"):
        got = take(1, untagged=fault in ("no-tags", "rubbish-tags-only"))
        if got is None:
            return dup_groups, mismatches
        got[0].faults.append(fault)
        if fault == "no-tags":
            got[0].tagged = False
        if fault == "mismatch":
            other = _name(rng, "{A} {B}")
            mismatches.append((got[0], _name(rng, "{A} {B}"), other))
    if (got := take(2)) is not None:  # two summary rows share one 7digital ID
        got[1].d7 = got[0].d7
        for t in got:
            t.faults.append("ambiguous-id")
        got[1].has_file = True
    if (got := take(3)) is not None:  # a plain duplicate group: keep the smallest ID
        for t in got:
            t.faults.append("duplicate")
        group(got, None)
    if (got := take(2)) is not None:  # the other member has no audio: the survivor stays
        got[0].faults.append("duplicate-lone")
        got[1].faults.append("no-audio")
        got[1].has_file = False
        group(got, got[0])
    if (got := take(2, untagged=True)) is not None:  # the other member is dropped earlier
        got[0].faults.append("duplicate-lone")
        got[1].faults += ["no-tags", "duplicate"]
        got[1].tagged = False
        group(got, got[0])
    for _ in range(max(2, len(tracks) // 20)):
        if (got := take(1)) is None:
            break
        got[0].faults.append("no-audio")
        got[0].has_file = False
    if (got := take(1)) is not None:  # a mismatch on a row that has no audio anyway
        got[0].faults += ["no-audio", "mismatch"]
        got[0].has_file = False
        mismatches.append((got[0], _name(rng, "{A} {B}"), _name(rng, "{A} {B}")))
    return dup_groups, mismatches


def fill_expected(plan: Plan) -> None:
    """Fill each track's `expected` verdicts, stage by stage, in the stages' order."""
    rows_per_d7: dict[int, int] = {}
    for t in plan.tracks:
        rows_per_d7[t.d7] = rows_per_d7.get(t.d7, 0) + 1
    mismatched = {t.track_id for t, _, _ in plan.mismatches}
    candidates: dict[str, Track] = {}
    for t in plan.tracks:
        fault = t.audio_fault()
        scan = None
        if t.has_file:
            scan = f"reject:{SCAN_FAULTS[fault]}" if fault in SCAN_FAULTS else "ok"
        wrangle = None
        if t.has_file:
            if rows_per_d7[t.d7] > 1:
                wrangle = "drop:ambiguous-id"
            elif t.track_id in mismatched:
                wrangle = "drop:mismatch"
            elif scan != "ok":
                wrangle = "drop:broken-audio"
            elif not t.tagged:
                wrangle = "drop:no-tags"
            else:
                candidates[t.track_id] = t
        t.expected = {"scan": scan, "wrangle": wrangle, "silence": None}
    for ids in plan.dup_groups:
        present = sorted(tid for tid in ids if tid in candidates)
        for tid in present[1:]:
            candidates.pop(tid).expected["wrangle"] = "drop:duplicate"
    for t in candidates.values():
        t.expected["wrangle"] = "keep"
        fault = t.audio_fault()
        t.expected["silence"] = f"drop:{AUDIO_FAULTS[fault]}" if fault in AUDIO_FAULTS else "keep"
    for t in plan.orphans:
        t.expected = {"scan": "ok", "wrangle": "drop:no-summary-row", "silence": None}
