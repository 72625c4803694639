"""Writing predicted tags into real files of every container (`orpheus.tagwrite`), read back as a
library tool reads them: mutagen's standard keys, and mutagen's `easy` interface for MP3 and M4A.

The oracle for "the audio is untouched" is the decoded samples before and after (PyAV decodes
deterministically, so they must be equal, lossy codecs included). Files are 3 s of
`tagger_helpers.music` in stereo, encoded as tests/test_audio_formats.py encodes them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen import id3
from mutagen.easyid3 import EasyID3
from mutagen.easymp4 import EasyMP4
from mutagen.mp4 import MP4FreeForm
from process_helpers import ENV, PY, ROOT
from tagger_helpers import write as write_wav
from test_audio_formats import SR, encode, stereo

from orpheus import pretrained, tagwrite
from orpheus.audio import read_audio
from orpheus.tagfields import read_fields

TAGS = [("rock", 0.91), ("happy", 0.62), ("guitar", 0.55), ("80s", 0.31)]  # msd-musicnn labels
MODEL = "msd-musicnn"
# name -> (how to make it, where a library tool reads genre / mood)
CONTAINERS = ["mp3 v2.3", "mp3 v2.4", "flac", "ogg", "opus", "m4a", "wma", "wv", "wav", "aiff"]


def make(kind: str, path_stem: Path, y: np.ndarray) -> Path:
    """An audio file of `kind` holding `y`, with a genre `Jazz` and a mood `calm` already set
    through mutagen's own keys (an ID3 tag in the version the kind names)."""
    d, stem = path_stem.parent, path_stem.name
    if kind.startswith("mp3"):
        path = encode(d / f"{stem}.mp3", "libmp3lame", y, bit_rate=128_000)
        tags = id3.ID3()
        tags.add(id3.TCON(encoding=3, text=["Jazz"]))
        if kind == "mp3 v2.3":
            tags.add(id3.TXXX(encoding=3, desc="MOOD", text=["calm"]))
        else:
            tags.add(id3.TMOO(encoding=3, text=["calm"]))
        tags.save(path, v2_version=3 if kind == "mp3 v2.3" else 4)
        return path
    if kind in ("flac", "ogg", "wav", "aiff"):
        path = write_wav(d / f"{stem}.{kind}", y, sr=SR)
    elif kind == "opus":
        path = encode(d / f"{stem}.opus", "libopus", y, format="flt", bit_rate=96_000, rate=48_000)
    elif kind == "m4a":
        path = encode(d / f"{stem}.m4a", "aac", y, bit_rate=128_000)
    elif kind == "wma":
        path = encode(d / f"{stem}.wma", "wmav2", y, bit_rate=128_000)
    else:
        path = encode(d / f"{stem}.wv", "wavpack", y, format="fltp")
    audio = mutagen.File(path)
    if audio.tags is None:
        audio.add_tags()
    if kind in ("wav", "aiff"):
        audio.tags.add(id3.TCON(encoding=3, text=["Jazz"]))
        audio.tags.add(id3.TMOO(encoding=3, text=["calm"]))
    elif kind == "m4a":
        audio.tags["\xa9gen"] = ["Jazz"]
        audio.tags["----:com.apple.iTunes:MOOD"] = [MP4FreeForm(b"calm")]
    elif kind == "wma":
        audio.tags["WM/Genre"], audio.tags["WM/Mood"] = ["Jazz"], ["calm"]
    elif kind == "wv":
        audio.tags["Genre"], audio.tags["Mood"] = "Jazz", "calm"
    else:
        audio.tags["GENRE"], audio.tags["MOOD"] = ["Jazz"], ["calm"]
    audio.save()
    return Path(path)


def genre_mood(path: Path, kind: str) -> tuple[list[str], list[str]]:
    """Genre and mood as a library tool reads them, through mutagen's standard keys."""
    audio = mutagen.File(path)
    t = audio.tags
    if kind.startswith("mp3") or kind in ("wav", "aiff"):
        genre = [g for f in t.getall("TCON") for g in f.text]
        mood = [m for f in t.getall("TXXX:MOOD" if kind == "mp3 v2.3" else "TMOO") for m in f.text]
        if kind == "mp3 v2.3":  # one string per frame, values joined with "/" (checked below)
            return [g for v in genre for g in v.split("/")], [m for v in mood for m in v.split("/")]
        return genre, mood
    if kind == "m4a":
        return list(t.get("\xa9gen", [])), [bytes(v).decode() for v in t.get(
            "----:com.apple.iTunes:MOOD", [])]  # fmt: skip
    if kind == "wma":
        return [str(v) for v in t.get("WM/Genre", [])], [str(v) for v in t.get("WM/Mood", [])]
    if kind == "wv":
        return list(t["Genre"]) if "Genre" in t else [], list(t["Mood"]) if "Mood" in t else []
    return t.get("GENRE", []), t.get("MOOD", [])


def own_field(path: Path, kind: str) -> dict | None:
    """Orpheus's JSON field for MODEL, read by its full key, or None."""
    t = mutagen.File(path).tags
    if kind.startswith("mp3") or kind in ("wav", "aiff"):
        frames = t.getall(f"TXXX:ORPHEUS_TAGS:{MODEL}")
        return json.loads(frames[0].text[0]) if frames else None
    key = {
        "m4a": f"----:com.apple.iTunes:ORPHEUS_TAGS:{MODEL}",
        "wma": f"WM/ORPHEUS_TAGS:{MODEL}",
    }.get(kind, f"ORPHEUS_TAGS:{MODEL}")
    if key not in t:
        return None
    value = t[key]
    value = value[0] if isinstance(value, list) else value
    return json.loads(bytes(value).decode() if kind == "m4a" else str(value))


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tagwrite")
    y = stereo(3.0)
    return {kind: make(kind, d / kind.replace(" ", "-").replace(".", ""), y) for kind in CONTAINERS}


def fresh(originals, kind: str, tmp_path: Path) -> Path:
    return Path(shutil.copy2(originals[kind], tmp_path / originals[kind].name))


@pytest.mark.parametrize("kind", CONTAINERS)
def test_every_container_gets_genre_and_mood_where_tools_read_them_and_keeps_its_audio(
    originals, kind, tmp_path
):
    path = fresh(originals, kind, tmp_path)
    samples, _ = read_audio(path)
    assert genre_mood(path, kind) == (["Jazz"], ["calm"])

    done = tagwrite.write(path, TAGS, model=MODEL)
    assert done.status == "written", done.line
    # genre and mood kinds go to the standard fields, merged; instrument and era do not
    assert genre_mood(path, kind) == (["Jazz", "rock"], ["calm", "happy"])
    own = own_field(path, kind)
    assert own["model"] == MODEL and own["tags"] == dict(TAGS)
    assert own["kinds"] == {"rock": "genre", "happy": "mood", "guitar": "instrument", "80s": "era"}
    assert own["fields"]["genre"] == {"before": ["Jazz"], "after": ["Jazz", "rock"]}
    np.testing.assert_array_equal(read_audio(path)[0], samples)
    if kind.startswith("mp3"):
        version = (2, 3, 0) if kind == "mp3 v2.3" else (2, 4, 0)
        assert id3.ID3(path).version == version  # mutagen's plain save() would make it 2.4
        # ID3v2.3 joins several values with "/" in one frame; 2.4 stores them apart
        text = id3.ID3(path).getall("TCON")[0].text
        assert text == (["Jazz/rock"] if kind == "mp3 v2.3" else ["Jazz", "rock"])
        assert EasyID3(path)["genre"] == text
    if kind == "m4a":
        assert EasyMP4(path)["genre"] == ["Jazz", "rock"]
    # the label reader sees the user's values and not Orpheus's
    fields = read_fields(path)
    assert fields["genre"] == ["jazz"] and fields["mood"] == ["calm"]

    assert tagwrite.write(path, TAGS, model=MODEL).status == "unchanged"
    undone = tagwrite.remove(path, model=MODEL)
    assert undone.status == "written", undone.line
    assert genre_mood(path, kind) == (["Jazz"], ["calm"]) and own_field(path, kind) is None
    np.testing.assert_array_equal(read_audio(path)[0], samples)


def test_replace_then_remove_restores_exactly_what_was_there(originals, tmp_path):
    path = fresh(originals, "flac", tmp_path)
    audio = mutagen.File(path)
    audio.tags["GENRE"], audio.tags["MOOD"] = ["Jazz", "Blues"], ["calm"]
    audio.save()
    assert tagwrite.write(path, TAGS, model=MODEL, mode="replace").status == "written"
    assert genre_mood(path, "flac") == (["rock"], ["happy"])
    assert own_field(path, "flac")["fields"]["genre"]["before"] == ["Jazz", "Blues"]
    # a second model merges on top; a rerun of the first in merge mode starts from what was there
    other = [("metal", 0.7), ("loud", 0.6)]  # mtt-musicnn: genre, other
    tagwrite.write(path, other, model="mtt-musicnn")
    assert genre_mood(path, "flac") == (["rock", "metal"], ["happy"])
    tagwrite.remove(path, model="mtt-musicnn")
    tagwrite.write(path, TAGS, model=MODEL)  # merge
    assert genre_mood(path, "flac") == (["Jazz", "Blues", "rock"], ["calm", "happy"])
    assert tagwrite.remove(path).status == "written"
    assert genre_mood(path, "flac") == (["Jazz", "Blues"], ["calm"])


def test_remove_keeps_what_the_user_changed_since(originals, tmp_path):
    path = fresh(originals, "flac", tmp_path)
    tagwrite.write(path, TAGS, model=MODEL, mode="replace")
    audio = mutagen.File(path)
    audio.tags["GENRE"] = ["rock", "Punk"]  # the user adds a genre after Orpheus wrote
    audio.save()
    tagwrite.remove(path, model=MODEL)
    assert genre_mood(path, "flac") == (["Punk", "Jazz"], ["calm"])


def test_dry_run_shows_the_change_and_writes_nothing(originals, tmp_path):
    path = fresh(originals, "mp3 v2.3", tmp_path)
    before = path.read_bytes()
    done = tagwrite.write(path, TAGS, model=MODEL, dry_run=True)
    assert path.read_bytes() == before
    assert done.status == "written" and done.dry_run and "would be written" in done.line
    lines = done.diff.splitlines()
    assert "-TCON=Jazz" not in lines and "+TCON=rock" in lines and "+TXXX:MOOD=happy" in lines
    assert any(line.startswith("+TXXX:ORPHEUS_TAGS:msd-musicnn={") for line in lines)
    tagwrite.write(path, TAGS, model=MODEL)
    undo = tagwrite.remove(path, model=MODEL, dry_run=True)
    assert "-TCON=rock" in undo.diff.splitlines() and mutagen.File(path).tags.getall("TCON")


def test_the_bundled_vocabularies_are_sorted_into_kinds():
    for name in pretrained.NAMES:
        kinds = pretrained.kinds(name)
        assert sorted(kinds) == sorted(pretrained.labels(name)), name  # each label once
        assert set(kinds.values()) <= set(tagwrite.KINDS)
    msd, mtt = pretrained.kinds("msd-musicnn"), pretrained.kinds("mtt-musicnn")
    assert (msd["Hip-Hop"], msd["sad"], msd["80s"], msd["female vocalists"]) == (
        "genre", "mood", "era", "vocals")  # fmt: skip
    assert (mtt["loud"], mtt["fast"], mtt["guitar"], mtt["techno"]) == (
        "other", "other", "instrument", "genre")  # fmt: skip


def test_a_trained_run_takes_kinds_from_the_label_categories_and_the_override(originals, tmp_path):
    labels = ["genre---rock", "mood/theme---dark", "instrument---piano", "grouping---live", "x"]
    kinds = tagwrite.kinds_for("run/20261204", labels, override={"x": "mood"})
    assert list(kinds.values()) == ["genre", "mood", "instrument", "other", "mood"]
    assert set(tagwrite.kinds_for("run/a", ["jazz", "loud"]).values()) == {"genre"}
    path = fresh(originals, "ogg", tmp_path)
    tags = [(t, 0.5) for t in labels]
    tagwrite.write(path, tags, model="run/20261204", kinds=kinds, mode="replace")
    assert genre_mood(path, "ogg") == (["rock"], ["dark", "x"])  # written without the category
    assert "ORPHEUS_TAGS:run_20261204" in mutagen.File(path).tags


def test_links_survive_and_the_target_is_tagged(originals, tmp_path):
    for kind in ("flac", "mp3 v2.4", "wav"):
        real = fresh(originals, kind, tmp_path)
        twin = tmp_path / f"twin-{real.name}"
        os.link(real, twin)
        link = tmp_path / f"link-{real.name}"
        link.symlink_to(real)
        inode = real.stat().st_ino
        big = [(f"t{i}", 0.5) for i in range(300)]  # overflows any padding: the audio moves
        for tags in (TAGS, big):
            assert tagwrite.write(link, tags, model=MODEL).status == "written"
            assert link.is_symlink() and os.readlink(link) == str(real)
            assert real.stat().st_ino == twin.stat().st_ino == inode and real.stat().st_nlink == 2
            assert own_field(twin, kind)["tags"] == dict(tags)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_read_only_files_and_matroska_are_skipped_with_one_line(originals, tmp_path):
    path = fresh(originals, "flac", tmp_path)
    before = path.read_bytes()
    path.chmod(0o444)  # os.access would say yes to root: the mode bits decide
    done = tagwrite.write(path, TAGS, model=MODEL)
    assert (done.status, done.reason) == ("skipped", "read-only") and path.read_bytes() == before
    assert done.line == f"{path}: skipped (read-only)"
    mka = tmp_path / "song.mka"
    encode(mka, "flac", stereo(1.0), format="s16")
    done = tagwrite.write(mka, TAGS, model=MODEL)
    assert done.status == "skipped" and "Matroska" in done.reason


def test_tags_that_fit_are_one_overwrite_and_a_leftover_backup_is_restored(originals, tmp_path):
    path = fresh(originals, "flac", tmp_path)
    samples, _ = read_audio(path)
    tagwrite.write(path, [(f"t{i}", 0.5) for i in range(100)], model=MODEL)  # grows, pads
    size = path.stat().st_size
    tagwrite.write(path, TAGS, model=MODEL)  # smaller: fits the padding
    assert path.stat().st_size == size and genre_mood(path, "flac")[0] == ["Jazz", "rock"]
    # a run that died mid-move left its backup and a half-moved file: the next run restores it
    backup = tmp_path / f".{path.name}.orpheus-backup"
    shutil.copy2(path, backup)
    with open(path, "r+b") as fh:
        fh.seek(4000)
        fh.write(b"\x00" * 20000)
    assert tagwrite.write(path, TAGS, model=MODEL).status == "unchanged"
    assert not backup.exists()
    np.testing.assert_array_equal(read_audio(path)[0], samples)


KILL_WRITE = """
import sys
from orpheus import tagwrite
tagwrite.write(sys.argv[1], [(f"tag{i}", 0.5) for i in range(400)], model="msd-musicnn")
"""


def test_sigkill_during_a_write_that_moves_the_audio_never_breaks_the_file(tmp_path):
    # ~20 MB of FLAC (2 minutes of stereo noise at 44.1 kHz, 16 bit) with no padding at all, so
    # new tags move all the audio, which mutagen does in place: killed during the move, mutagen
    # alone left an undecodable file 3 times in 8 here
    rng = np.random.default_rng(0)
    y = (rng.uniform(-0.5, 0.5, (120 * SR, 2)) * 32767).astype(np.int16)
    pristine = tmp_path / "pristine.flac"
    sf.write(pristine, y, SR, subtype="PCM_16")
    audio = mutagen.File(pristine)
    audio.tags["GENRE"] = ["Jazz"]
    audio.save(padding=lambda info: 0)
    size = pristine.stat().st_size
    assert size > 20e6
    path = tmp_path / "big.flac"
    backup = tmp_path / ".big.flac.orpheus-backup"
    landed = 0
    for _attempt in range(8):  # until three kills land inside the write
        shutil.copy2(pristine, path)
        proc = subprocess.Popen([PY, "-c", textwrap.dedent(KILL_WRITE), str(path)], env=ENV,
                                cwd=ROOT)  # fmt: skip
        # persisted progress: the backup is whole and the file has started to grow (the move)
        deadline = time.monotonic() + 120  # a safety net only
        while proc.poll() is None and time.monotonic() < deadline:
            if backup.exists() and path.stat().st_size != size:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        landed += proc.returncode == -signal.SIGKILL
        # the next run restores the original before it writes
        tagwrite.recover(path)
        assert not backup.exists()
        data, _ = sf.read(path, dtype="int16")
        np.testing.assert_array_equal(data, y)
        genres = mutagen.File(path).tags["GENRE"]
        assert genres in (["Jazz"], ["Jazz", *(f"tag{i}" for i in range(400))]), genres[:3]
        if landed == 3:
            break
    assert landed >= 1, "every write finished before the kill"


LOCKED_WRITE = """
import sys
from orpheus import tagwrite
print(tagwrite.write(sys.argv[1], [("metal", 0.8)], model="mtt-musicnn").status)
"""


def test_a_second_run_waits_for_the_first_one_s_lock(originals, tmp_path):
    path = fresh(originals, "flac", tmp_path)
    with tagwrite.locked(path):
        before = path.read_bytes()
        proc = subprocess.Popen([PY, "-c", textwrap.dedent(LOCKED_WRITE), str(path)], env=ENV,
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
        # /proc/locks lists a process blocked on a flock as "-> FLOCK ... PID MAJ:MIN:INODE"
        waiting = f"{proc.pid} "
        deadline = time.monotonic() + 120  # a safety net only: the kernel's lock table decides
        while time.monotonic() < deadline and proc.poll() is None:
            blocked = [line for line in Path("/proc/locks").read_text().splitlines()
                       if "->" in line and f" {waiting}" in line
                       and line.split()[6].endswith(f":{path.stat().st_ino}")]  # fmt: skip
            if blocked:
                break
            time.sleep(0.01)
        assert blocked, "the second writer never waited for the lock"
        assert path.read_bytes() == before
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip() == "written"
    assert genre_mood(path, "flac")[0] == ["Jazz", "metal"]


def predict(*args):
    from cli_helpers import orpheus

    return orpheus("predict", *args)


def test_predict_writes_per_file_previews_resumes_replaces_and_removes(originals, tmp_path):
    a, b = fresh(originals, "mp3 v2.3", tmp_path), fresh(originals, "flac", tmp_path)
    pristine = {p: p.read_bytes() for p in (a, b)}
    out = tmp_path / "out.jsonl"
    common = ["--write-tags", "--top-k", "3", "-t", "0", "-f", "jsonl", "-o", out]

    preview = predict(a, *common[:-2], "--dry-run")
    assert preview.exit_code == 0, preview.output
    assert a.read_bytes() == pristine[a]  # nothing written
    assert f"{a}: would be written" in preview.stderr and "+TXXX:ORPHEUS_TAGS:msd-musicnn=" in (
        preview.stderr
    )

    first = predict(a, *common)
    assert first.exit_code == 0, first.output
    rec = json.loads(out.read_text().splitlines()[0])
    top = [t["tag"] for t in rec["tags"]]
    assert len(top) == 3 and own_field(a, "mp3 v2.3")["tags"].keys() == set(top)
    kind = pretrained.kinds(MODEL)
    genres = [t for t in top if kind[t] == "genre"]
    assert genre_mood(a, "mp3 v2.3")[0] == ["Jazz", *genres]
    # the record holds the file as written, so --resume passes over it
    assert (rec["size"], rec["mtime_ns"]) == (a.stat().st_size, a.stat().st_mtime_ns)
    written = a.read_bytes()
    second = predict(a, b, *common, "--resume", "--tag-mode", "replace")
    assert second.exit_code == 0, second.output
    assert a.read_bytes() == written and len(out.read_text().splitlines()) == 2
    rec_b = json.loads(out.read_text().splitlines()[1])
    genres_b = [t["tag"] for t in rec_b["tags"] if kind[t["tag"]] == "genre"]
    assert genre_mood(b, "flac")[0] == (genres_b or ["Jazz"])  # replaced, if any genre was kept

    b.chmod(0o444)
    undo = predict(a, b, "--remove-tags")
    assert undo.exit_code == 1 and f"{b}: read-only" in undo.stderr
    assert a.read_bytes() != written and genre_mood(a, "mp3 v2.3") == (["Jazz"], ["calm"])
    assert own_field(a, "mp3 v2.3") is None


def test_predict_restores_a_file_a_killed_tag_write_left_half_moved_before_decoding_it(
    originals, tmp_path
):
    """A SIGKILL while the audio moved leaves the file broken and its backup beside it. The
    next `predict --write-tags` restores the file before decoding it: tagged from its whole
    audio (here the broken file would not even decode), its backup gone."""
    path = fresh(originals, "flac", tmp_path)
    samples, _ = read_audio(path)
    backup = tmp_path / f".{path.name}.orpheus-backup"
    shutil.copy2(path, backup)
    path.write_bytes(path.read_bytes()[:3000])  # cut inside the audio: nothing decodes
    out = tmp_path / "out.jsonl"

    done = predict(path, "--write-tags", "-f", "jsonl", "-o", out)
    assert done.exit_code == 0, done.output
    assert f"restored {path}" in " ".join(done.stderr.split())
    assert not backup.exists()
    np.testing.assert_array_equal(read_audio(path)[0], samples)
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert own_field(path, "flac")["tags"].keys() == {t["tag"] for t in record["tags"]}
