"""Music for the example corpus: a tiny composer per style, rendered with a General MIDI soundfont.

Each style sets tempo, key and mode, chord progression, drum kit and groove, instruments and
structure (intro, verses, choruses), so a listener or a pretrained tagger can tell rock from
jazz. The vocal tag is audible: a sung line on a GM voice program in a female or male register,
a rhythmic rap line, or no voice at all (a lead instrument carries the tune instead). Decades
colour the production (80s gated synths and electronic kits, 60s/70s drier rooms).

Rendering uses FluidSynth (through pyfluidsynth) with pretty_midi's bundled TimGM6mb.sf2, one
fresh synthesizer per track, stereo, at the track's sample rate: deterministic, so the same seed
gives the same samples.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
DORIAN = (0, 2, 3, 5, 7, 9, 10)
PHRYGIAN = (0, 1, 3, 5, 7, 8, 10)

KICK, SNARE, CLAP, SIDE, CHH, PHH, OHH, CRASH, RIDE, TAMB, SHAKER = (
    36,
    38,
    39,
    37,
    42,
    44,
    46,
    49,
    51,
    54,
    70,
)
KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "808": 25, "jazz": 32, "brush": 40}


def soundfont_path() -> str:
    """pretty_midi's bundled General MIDI soundfont (6 MB, ships with the dependency)."""
    import pretty_midi

    return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


@dataclass
class Part:
    program: int
    drum: bool = False
    volume: int = 100
    pan: int = 64
    reverb: int = 40
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)


class Song:
    """Notes placed in beats; converted to seconds at render time."""

    def __init__(self, tempo: float, key: int, scale: tuple[int, ...], rng: np.random.Generator):
        self.tempo, self.key, self.scale, self.rng = tempo, key, scale, rng
        self.beat = 60.0 / tempo
        self.parts: list[Part] = []
        self.swing = 0.0
        self.prog: list[int] = [0]
        self.decade = ""

    def part(self, program: int, **kw) -> Part:
        p = Part(program, **kw)
        self.parts.append(p)
        return p

    def pitch(self, degree: int, base: int) -> int:
        """Scale degree (any integer) to a MIDI pitch above the octave `base` (a C)."""
        octave, step = divmod(degree, len(self.scale))
        return base + self.key + 12 * octave + self.scale[step]

    def chord(self, degree: int, base: int, size: int = 3) -> list[int]:
        return [self.pitch(degree + 2 * k, base) for k in range(size)]

    def add(self, part: Part, beat: float, beats: float, pitch: int, vel: int) -> None:
        if self.swing and (beat * 2) % 2 == 1:  # swung off-beat eighths
            beat += self.swing
        start = beat * self.beat
        vel = int(np.clip(vel + self.rng.integers(-6, 7), 1, 127))
        part.notes.append((start, start + max(beats * self.beat, 0.03), int(pitch), vel))


def drums(song: Song, part: Part, bar: int, pattern: dict[int, str], vel: int = 100) -> None:
    """Place a one-bar 16-step pattern: 'x' accent, 'o' normal, '.' ghost, ' ' or '-' rest."""
    for note, steps in pattern.items():
        for k, c in enumerate(steps):
            if c in "xo.":
                v = {"x": vel, "o": vel - 25, ".": vel - 55}[c]
                song.add(part, bar * 4 + k / 4, 0.2, note, v)


def melody(
    song: Song,
    bars: range,
    base: int,
    low: int,
    high: int,
    rhythm: list[list[float]],
    part: Part,
    vel: int,
    legato: float = 0.9,
    prog: list[int] | None = None,
) -> None:
    """A phrase-structured tune: 2-bar motifs repeated with variation, resting at phrase ends."""
    rng = song.rng
    motif: list[tuple[float, float, int]] = []
    deg = int(rng.integers(low, high + 1))
    for bar in range(2):
        onsets = rhythm[int(rng.integers(len(rhythm)))]
        for k, on in enumerate(onsets):
            nxt = onsets[k + 1] if k + 1 < len(onsets) else 4.0
            deg = int(np.clip(deg + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), low, high))
            motif.append((bar * 4 + on, (nxt - on) * legato, deg))
    bars = list(bars)
    for j in range(0, len(bars) - 1, 2):
        shift = 0 if (j // 2) % 4 in (0, 2) else int(rng.choice([-2, 1, 2]))
        last = (j // 2) % 2 == 1
        for on, dur, d in motif:
            if last and on >= 6.0:
                continue  # breathe at the end of every second phrase
            chord_root = prog[(bars[j] + int(on // 4)) % len(prog)] if prog else 0
            dd = d + shift
            if on % 2 == 0 and prog:  # strong beats land on a chord tone
                tones = [chord_root + 2 * k for k in range(-3, 6)]
                dd = min(tones, key=lambda t: abs(t - dd))
            dd = int(np.clip(dd, low - 2, high + 2))
            song.add(part, bars[j] * 4 + on, dur, song.pitch(dd, base), vel)


R_SUNG = [[0, 1, 2, 3], [0, 1.5, 2, 3], [0, 0.5, 1, 2, 3], [0, 2, 2.5, 3], [0, 1, 1.5, 2.5]]
R_BUSY = [[0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5], [0, 0.5, 1, 2, 2.5, 3, 3.5], [0, 0.75, 1.5, 2, 3]]
R_SLOW = [[0, 2], [0, 1, 2], [0, 3], [0]]


def _sections(n_bars: int) -> list[str]:
    """Per-bar section names: a short intro, then verses and choruses of four bars."""
    out = ["intro"] * 2
    while len(out) < n_bars:
        out += ["verse"] * 4 + ["chorus"] * 4
    return out[:n_bars]


def _voice(song: Song, vocals: str, style: str, bars: list[int], prog: list[int]) -> None:
    """The vocal line: female/male sung register, rap rhythm, or nothing for instrumentals."""
    rng = song.rng
    if vocals == "instrumental" or not bars:
        return
    program = (
        54 if style in ("electronic", "pop") and rng.random() < 0.5 else int(rng.choice([52, 53]))
    )
    if vocals == "rap":
        part = song.part(53, volume=118, pan=64, reverb=15)
        base = 48 if rng.random() < 0.8 else 60
        flows = [
            [0, 0.25, 0.5, 1, 1.25, 1.5, 2, 2.5, 2.75, 3, 3.5],
            [0, 0.5, 0.75, 1, 1.5, 2, 2.25, 2.5, 3, 3.25],
            [0, 0.25, 0.5, 0.75, 1, 2, 2.5, 3],
        ]
        for bar in bars:
            if bar % 4 == 3 and rng.random() < 0.5:
                continue
            flow = flows[int(rng.integers(len(flows)))]
            for on in flow:
                pitch = song.pitch(int(rng.choice([0, 0, 1, 2, -1])), base)
                song.add(part, bar * 4 + on, 0.18, pitch, 112 if on % 1 == 0 else 95)
        return
    part = song.part(program, volume=120, pan=64, reverb=50)
    base, low, high = (60, 2, 11) if vocals == "female" else (48, 0, 9)
    rhythm = R_SLOW + R_SUNG if style in ("classical", "ambient") else R_SUNG
    melody(song, range(bars[0], bars[-1] + 1), base, low, high, rhythm, part, 112, 0.95, prog)


def compose(style: str, decade: str, vocals: str, seconds: float, seed: list[int]) -> Song:
    """Compose one preview of `seconds` in `style`."""
    rng = np.random.default_rng(seed)
    spec = STYLE_SPECS[style]
    tempo = float(rng.integers(*spec.tempo))
    song = Song(tempo, int(rng.integers(12)), spec.scales[int(rng.integers(len(spec.scales)))], rng)
    song.prog = spec.progs[int(rng.integers(len(spec.progs)))]
    song.decade = decade
    n_bars = int(np.ceil(seconds / (4 * song.beat))) + 1
    sec = _sections(n_bars)
    spec.arrange(song, sec)
    sung = [b for b, s in enumerate(sec) if s != "intro"]
    _voice(song, vocals, style, sung, song.prog)
    if vocals == "instrumental" or style == "hip-hop":
        _lead(
            song,
            style,
            [
                b
                for b, s in enumerate(sec)
                if s == "chorus" or vocals == "instrumental" and s == "verse"
            ],
        )
    return song


LEADS = {
    "rock": 30,
    "metal": 30,
    "electronic": 81,
    "hip-hop": 5,
    "jazz": 66,
    "classical": 40,
    "ambient": 98,
    "folk": 73,
    "pop": 0,
    "rnb": 4,
}


def _lead(song: Song, style: str, bars: list[int]) -> None:
    """An instrumental lead carries the tune where there is no voice (or a hook in hip-hop)."""
    if not bars:
        return
    part = song.part(LEADS[style], volume=105, pan=50, reverb=45)
    base = 48 if style in ("metal", "rock") else 60
    rhythm = {"jazz": R_BUSY, "classical": R_SUNG, "ambient": R_SLOW}.get(style, R_SUNG)
    melody(song, range(bars[0], bars[-1] + 1), base, 0, 9, rhythm, part, 100, 0.9, song.prog)


@dataclass(frozen=True)
class Style:
    """What a style fixes before arranging: tempo range, modes, chord progressions."""

    tempo: tuple[int, int]
    scales: tuple[tuple[int, ...], ...]
    progs: list[list[int]]
    arrange: Callable[[Song, list[str]], None]


def _style(tempo: tuple[int, int], scales: tuple[tuple[int, ...], ...], progs: list[list[int]]):
    def deco(arrange: Callable[[Song, list[str]], None]) -> Style:
        return Style(tempo, scales, progs, arrange)

    return deco


def _chords(
    song: Song,
    part: Part,
    sec: list[str],
    base: int,
    rhythm: list[float],
    dur: float,
    vel: int,
    size: int = 3,
    skip: tuple[str, ...] = (),
) -> None:
    for bar, s in enumerate(sec):
        if s in skip:
            continue
        deg = song.prog[bar % len(song.prog)]
        for on in rhythm:
            for p in song.chord(deg, base, size):
                song.add(part, bar * 4 + on, dur, p, vel)


def _bass(
    song: Song,
    part: Part,
    sec: list[str],
    base: int,
    rhythm: list[float],
    dur: float,
    vel: int,
    fifths: bool = False,
) -> None:
    for bar, _ in enumerate(sec):
        deg = song.prog[bar % len(song.prog)]
        for k, on in enumerate(rhythm):
            d = deg + (4 if fifths and k % 2 == 1 else 0)
            song.add(part, bar * 4 + on, dur, song.pitch(d, base), vel)


def _kit(song: Song, default: str) -> Part:
    decade = song.decade
    kit = "electronic" if decade == "80s" and default == "standard" else default
    if decade in ("60s", "70s") and default == "standard":
        kit = "room"
    return song.part(KITS[kit], drum=True, volume=110, reverb=20 if kit != "electronic" else 60)


EIGHTHS = [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]
SIXTEENTHS = [k / 4 for k in range(16)]


@_style((108, 140), (MAJOR, MINOR), [[0, 4, 5, 3], [0, 3, 4, 4], [5, 3, 0, 4], [0, 6, 3, 0]])
def _rock(song: Song, sec: list[str]) -> None:
    gtr = song.part(29, volume=100, pan=40)
    gtr2 = song.part(30 if song.decade != "60s" else 27, volume=85, pan=90)
    bass = song.part(33, volume=110)
    kit = _kit(song, "standard")
    for bar, s in enumerate(sec):
        deg = song.prog[bar % len(song.prog)]
        root = song.pitch(deg, 36)
        for on in EIGHTHS:
            if s != "intro" or bar % 2:
                for p in (root, root + 7, root + 12):
                    song.add(gtr, bar * 4 + on, 0.45, p, 95 if on % 1 == 0 else 80)
        if s == "chorus":
            for p in song.chord(deg, 60):
                song.add(gtr2, bar * 4, 3.9, p, 80)
        groove = {KICK: "x-----x-x-------", SNARE: "----x-------x---", CHH: "o-o-o-o-o-o-o-o-"}
        if s == "chorus":
            groove[CHH] = ""
            groove[RIDE] = "o-o-o-o-o-o-o-o-"
        if bar % 4 == 0:
            groove[CRASH] = "x---------------"
        if s != "intro":
            drums(song, kit, bar, groove)
    _bass(song, bass, sec, 36, EIGHTHS, 0.45, 100)


@_style((150, 190), (PHRYGIAN, MINOR), [[0, 0, 5, 6], [0, 1, 0, 6], [0, 5, 3, 4]])
def _metal(song: Song, sec: list[str]) -> None:
    gtr = song.part(30, volume=105, pan=30)
    gtr2 = song.part(30, volume=100, pan=100)
    bass = song.part(34, volume=105)
    kit = _kit(song, "power")
    song.key = song.key % 5 + 4  # low E-ish tunings: E..G#
    for bar, s in enumerate(sec):
        deg = song.prog[bar % len(song.prog)]
        root = song.pitch(deg, 24)
        for k, on in enumerate(SIXTEENTHS):
            chug = k % 4 != 3 or s == "verse"
            p = root if chug else root + 7
            for g in (gtr, gtr2):
                song.add(g, bar * 4 + on, 0.2, p + (12 if g is gtr2 and not chug else 0), 105)
        if s == "chorus":
            for p in (root + 12, root + 19, root + 24):
                song.add(gtr2, bar * 4, 3.9, p, 90)
        groove = {KICK: "xoxoxoxoxoxoxoxo", SNARE: "----x-------x---", CHH: "x-x-x-x-x-x-x-x-"}
        if s == "chorus" or bar % 4 == 0:
            groove[CRASH] = "x-------x-------"
        if s == "intro":
            groove = {CRASH: "x---------------", KICK: "x-------x-------"}
        drums(song, kit, bar, groove, 115)
    _bass(song, bass, sec, 24, SIXTEENTHS[::2], 0.22, 105)


@_style((120, 130), (MINOR, DORIAN), [[0, 5, 3, 4], [0, 0, 5, 6], [0, 3, 0, 4], [5, 3, 0, 6]])
def _electronic(song: Song, sec: list[str]) -> None:
    pad = song.part(89 if song.decade != "80s" else 62, volume=85, reverb=80)
    stab = song.part(81, volume=85, pan=80)
    arp = song.part(80, volume=70, pan=40, reverb=70)
    bass = song.part(38, volume=115)
    kit = _kit(song, "808" if song.decade == "80s" else "electronic")
    _chords(song, pad, sec, 60, [0], 3.95, 80, 4)
    for bar, s in enumerate(sec):
        deg = song.prog[bar % len(song.prog)]
        tones = song.chord(deg, 60, 4)
        for k, on in enumerate(SIXTEENTHS[::2] if s == "verse" else SIXTEENTHS):
            song.add(arp, bar * 4 + on, 0.2, tones[k % 4] + 12, 80)
        if s == "chorus":
            for on in (0.5, 1.5, 2.5, 3.5):
                for p in tones[:3]:
                    song.add(stab, bar * 4 + on, 0.3, p, 95)
        groove = {
            KICK: "x---x---x---x---",
            OHH: "--o---o---o---o-",
            CLAP: "----x-------x---",
            CHH: "o.o.o.o.o.o.o.o." if s == "chorus" else "",
        }
        if s == "intro":
            groove = {KICK: "x---x---x---x---", CHH: "o.o.o.o.o.o.o.o."}
        drums(song, kit, bar, groove, 110)
    _bass(song, bass, sec, 36, [0.5, 1.5, 2.5, 3.5], 0.35, 110)


@_style((84, 96), (MINOR, DORIAN), [[0, 0, 5, 5], [0, 3, 0, 4], [0, 5, 3, 6]])
def _hiphop(song: Song, sec: list[str]) -> None:
    song.swing = 0.08
    keys = song.part(4, volume=85, pan=50, reverb=40)
    strings = song.part(48, volume=70, reverb=70)
    bass = song.part(38 if song.decade != "90s" else 33, volume=120)
    kit = _kit(song, "808" if song.rng.random() < 0.6 else "standard")
    _chords(song, keys, sec, 60, [0, 2.5], 1.2, 85, 4)
    _chords(song, strings, sec, 48, [0], 3.9, 70, 3, skip=("verse", "intro"))
    for bar, s in enumerate(sec):
        groove = {
            KICK: "x-----x---x-x---",
            SNARE: "----x-------x---",
            CHH: "o-o-o-o-o-o-o-o-" if s != "chorus" else "o.o.o.o.o.o.o.oo",
        }
        if s == "intro" and bar == 0:
            groove = {CHH: "o-o-o-o-o-o-o-o-"}
        drums(song, kit, bar, groove, 120)
    _bass(song, bass, sec, 24, [0, 1.5, 2.5], 0.8, 115)


@_style((100, 170), (MAJOR, DORIAN), [[1, 4, 0, 0], [1, 4, 0, 5], [0, 5, 1, 4]])
def _jazz(song: Song, sec: list[str]) -> None:
    song.swing = 0.17
    piano = song.part(0, volume=90, pan=45)
    bass = song.part(32, volume=115, pan=70)
    kit = _kit(song, "brush" if song.rng.random() < 0.5 else "jazz")
    for bar in range(len(sec)):
        deg = song.prog[bar % len(song.prog)]
        for on in [1.5, 3] if bar % 2 else [0.5, 2.5]:
            for p in song.chord(deg, 55, 4)[1:]:
                song.add(piano, bar * 4 + on, 0.6, p, 75)
        walk = [deg, deg + 2, deg + 4, deg + 5 if bar % 2 else deg + 3]
        for k, d in enumerate(walk):
            song.add(bass, bar * 4 + k, 0.9, song.pitch(d, 36), 100)
        drums(song, kit, bar, {RIDE: "o---o-.-o---o-.-", PHH: "----o-------o---"}, 95)


@_style((66, 100), (MAJOR, MINOR), [[0, 3, 4, 0], [0, 5, 3, 4], [0, 4, 5, 2, 3, 0, 3, 4]])
def _classical(song: Song, sec: list[str]) -> None:
    strings = song.part(48, volume=95, reverb=90)
    cello = song.part(42, volume=100, pan=80, reverb=80)
    harp = song.part(46 if song.rng.random() < 0.5 else 6, volume=80, pan=40, reverb=80)
    _chords(song, strings, sec, 60, [0], 3.98, 70)
    _bass(song, cello, sec, 36, [0, 2], 1.95, 90)
    for bar, _ in enumerate(sec):
        deg = song.prog[bar % len(song.prog)]
        tones = song.chord(deg, 60) + song.chord(deg + 7, 60)
        for k, on in enumerate(EIGHTHS):
            song.add(harp, bar * 4 + on, 0.5, tones[[0, 1, 2, 3, 4, 3, 2, 1][k]], 75)


@_style((60, 80), (MAJOR, DORIAN, MINOR), [[0, 0, 3, 3], [0, 5, 0, 3], [0, 2, 5, 3]])
def _ambient(song: Song, sec: list[str]) -> None:
    pad = song.part(88 if song.rng.random() < 0.5 else 94, volume=100, reverb=120)
    pad2 = song.part(91, volume=80, pan=30, reverb=120)
    drone = song.part(89, volume=90, reverb=100)
    bells = song.part(8, volume=75, pan=90, reverb=127)
    for bar, _ in enumerate(sec):
        deg = song.prog[bar % len(song.prog)]
        for p in song.chord(deg, 60, 4):
            song.add(pad, bar * 4, 4.2, p, 80)
        song.add(pad2, bar * 4 + 2, 2.2, song.pitch(deg + 4, 72), 60)
        song.add(drone, bar * 4, 4.1, song.pitch(0, 36), 85)
        for on in (0, 1.5, 3) if bar % 2 else (0.5, 2):
            song.add(bells, bar * 4 + on, 1.5, song.pitch(int(song.rng.integers(0, 8)), 72), 60)


@_style((88, 124), (MAJOR,), [[0, 3, 0, 4], [0, 4, 5, 3], [0, 3, 4, 0]])
def _folk(song: Song, sec: list[str]) -> None:
    gtr = song.part(25 if song.rng.random() < 0.6 else 24, volume=105, pan=40, reverb=35)
    bass = song.part(32, volume=95, pan=70)
    perc = song.part(0, drum=True, volume=80, reverb=30)
    for bar, s in enumerate(sec):
        deg = song.prog[bar % len(song.prog)]
        tones = song.chord(deg, 48) + [song.pitch(deg + 7, 48), song.pitch(deg + 9, 48)]
        for k, on in enumerate(EIGHTHS):
            song.add(gtr, bar * 4 + on, 0.9, tones[[0, 2, 1, 3, 4, 3, 1, 2][k]], 85)
        if s != "intro":
            drums(song, perc, bar, {KICK: "o-------o-------", TAMB: "----o-------o---"}, 85)
    _bass(song, bass, sec, 36, [0, 2], 1.8, 90, fifths=True)


@_style((100, 126), (MAJOR,), [[0, 4, 5, 3], [5, 3, 0, 4], [0, 5, 3, 4]])
def _pop(song: Song, sec: list[str]) -> None:
    piano = song.part(0 if song.decade != "80s" else 5, volume=95, pan=45)
    pad = song.part(90 if song.decade in ("80s", "00s") else 49, volume=70, reverb=80)
    bass = song.part(33 if song.rng.random() < 0.5 else 38, volume=105)
    kit = _kit(song, "standard")
    _chords(song, piano, sec, 60, [0, 1, 2, 3, 3.5], 0.9, 85)
    _chords(song, pad, sec, 48, [0], 3.9, 65, 3, skip=("intro", "verse"))
    for bar, s in enumerate(sec):
        groove = {KICK: "x-------x-x-----", CLAP: "----x-------x---", CHH: "o-o-o-o-o-o-o-o-"}
        if s == "chorus":
            groove[TAMB] = "--o---o---o---o-"
        if s != "intro":
            drums(song, kit, bar, groove, 105)
    _bass(song, bass, sec, 36, [0, 1.5, 2, 3.5], 0.45, 105)


@_style((90, 112), (DORIAN, MINOR), [[0, 3, 0, 3], [1, 4, 0, 5], [0, 0, 3, 4]])
def _rnb(song: Song, sec: list[str]) -> None:
    song.swing = 0.04
    ep = song.part(4, volume=90, pan=40, reverb=50)
    gtr = song.part(28, volume=80, pan=90, reverb=20)
    brass = song.part(61 if song.decade != "80s" else 62, volume=90, pan=60)
    bass = song.part(36, volume=115)
    kit = _kit(song, "standard")
    _chords(song, ep, sec, 60, [0, 1.5, 2.5], 1.0, 80, 4)
    for bar, s in enumerate(sec):
        deg = song.prog[bar % len(song.prog)]
        for k, on in enumerate(SIXTEENTHS):
            if k % 4 in (0, 2) or k % 3 == 0:
                song.add(gtr, bar * 4 + on, 0.1, song.chord(deg, 60)[k % 3], 85)
        if s == "chorus" and bar % 2 == 0:
            for on in (1.5, 3):
                for p in song.chord(deg, 60):
                    song.add(brass, bar * 4 + on, 0.35, p, 100)
        drums(
            song,
            kit,
            bar,
            {KICK: "x--x--x---x-----", SNARE: "----x..-.---x..-", CHH: "oooooooooooooooo"},
            105,
        )
    _bass(song, bass, sec, 24, [0, 0.75, 1.5, 2, 2.75, 3.5], 0.3, 110, fifths=True)


STYLE_SPECS = {
    "rock": _rock,
    "metal": _metal,
    "electronic": _electronic,
    "hip-hop": _hiphop,
    "jazz": _jazz,
    "classical": _classical,
    "ambient": _ambient,
    "folk": _folk,
    "pop": _pop,
    "rnb": _rnb,
}


_dither_table_seeded = False


def _seed_dither_table() -> None:
    """Make FluidSynth's 16-bit dither the same in every process.

    The first Synth of a process fills a static dither table from C `rand()`, so any earlier
    `rand()` call in the process (TensorFlow, a test run before) changed every rendered file.
    `srand(1)` is the state a fresh process starts in, so the files match a spawned worker's.
    """
    global _dither_table_seeded
    if not _dither_table_seeded:
        ctypes.CDLL(None).srand(1)
        _dither_table_seeded = True


def render(song: Song, seconds: float, sr: int) -> np.ndarray:
    """Render with FluidSynth: float32 (frames, 2), peak-normalised, `seconds` long."""
    import fluidsynth

    _seed_dither_table()
    synth = fluidsynth.Synth(gain=0.3, samplerate=float(sr))
    try:
        sfid = synth.sfload(soundfont_path())
        events: list[tuple[float, int, int, int, int]] = []
        melodic = 0
        for part in song.parts:
            if part.drum:
                chan = 9
                synth.program_select(chan, sfid, 128, part.program)
            else:
                chan = melodic if melodic < 9 else melodic + 1
                melodic += 1
                synth.program_select(chan, sfid, 0, part.program)
            synth.cc(chan, 7, part.volume)
            synth.cc(chan, 10, part.pan)
            synth.cc(chan, 91, min(part.reverb, 127))
            for start, end, pitch, vel in part.notes:
                if start < seconds:
                    events.append((start, 1, chan, pitch, vel))
                    events.append((min(end, seconds), 0, chan, pitch, 0))
        events.sort()
        total = int(round(seconds * sr))
        out = np.zeros((total, 2), np.float32)
        pos = 0
        for t, on, chan, pitch, vel in events:
            target = min(int(t * sr), total)
            if target > pos:
                out[pos:target] = synth.get_samples(target - pos).reshape(-1, 2)
                pos = target
            if on:
                synth.noteon(chan, pitch, vel)
            else:
                synth.noteoff(chan, pitch)
        if pos < total:
            out[pos:] = synth.get_samples(total - pos).reshape(-1, 2)
    finally:
        synth.delete()
    peak = float(np.abs(out).max())
    return out / peak * 0.89 if peak > 0 else out
