"""MSD inputs: the summary reader (layout checks), 7digital paths and the errata parsers."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from orpheus import msd
from orpheus.errors import OrpheusError

# The real summary's compound dtypes (as in an MSD track file), trimmed to a few extra fields.
METADATA = [
    ("artist_7digitalid", "<i4"),
    ("artist_name", "S1024"),
    ("release", "S1024"),
    ("song_id", "S32"),
    ("title", "S1024"),
    ("track_7digitalid", "<i4"),
]
ANALYSIS = [("duration", "<f8"), ("tempo", "<f8"), ("track_id", "S32")]
MUSICBRAINZ = [("idx_artist_mbtags", "<i4"), ("year", "<i4")]


def write_summary(path: Path, rows: list[dict], drop: tuple[str, ...] = ()) -> Path:
    """An MSD-shaped summary file; each row gives track_7digitalid, track_id and optionally more.

    `drop` names tables ("metadata/songs") or fields ("analysis/songs.track_id") to leave out.
    """
    with h5py.File(path, "w") as h5:
        for table, spec in (
            ("metadata/songs", METADATA),
            ("analysis/songs", ANALYSIS),
            ("musicbrainz/songs", MUSICBRAINZ),
        ):
            if table in drop:
                continue
            spec = [(n, t) for n, t in spec if f"{table}.{n}" not in drop]
            data = np.zeros(len(rows), dtype=spec)
            for i, row in enumerate(rows):
                values = {
                    "artist_name": f"Artist {i}".encode(),
                    "title": f"Title é {i}".encode(),
                    "release": f"Release {i}".encode(),
                    "song_id": f"SO{i:016d}".encode(),
                    "duration": 200.0 + i,
                    "year": 1990 + i,
                } | row
                for name, _ in spec:
                    if name in values:
                        value = values[name]
                        data[name][i] = value.encode() if isinstance(value, str) else value
            h5.create_group(table.split("/")[0]).create_dataset("songs", data=data)
    return path


def tid(i: int) -> str:
    return f"TR{i:016d}"


def test_read_summary_columns_and_types(tmp_path):
    rows = [{"track_7digitalid": 10 + i, "track_id": tid(i)} for i in range(3)]
    frame = msd.read_summary(write_summary(tmp_path / "s.h5", rows))
    assert list(frame.columns) == msd.SUMMARY_COLUMNS
    assert frame["track_7digitalid"].tolist() == [10, 11, 12]
    assert frame["track_id"].tolist() == [tid(0), tid(1), tid(2)]
    assert frame["title"].iloc[1] == "Title é 1"
    assert frame["year"].tolist() == [1990, 1991, 1992]
    assert frame["track_7digitalid"].dtype == np.int64


def test_read_summary_spans_several_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(msd, "BLOCK_ROWS", 4)
    rows = [{"track_7digitalid": i, "track_id": tid(i)} for i in range(10)]
    frame = msd.read_summary(write_summary(tmp_path / "s.h5", rows))
    assert frame["track_id"].tolist() == [tid(i) for i in range(10)]
    assert frame["artist"].tolist()[-1] == "Artist 9"


def test_summary_names_every_missing_table_and_field(tmp_path):
    rows = [{"track_7digitalid": 1, "track_id": tid(1)}]
    path = write_summary(
        tmp_path / "s.h5", rows, drop=("musicbrainz/songs", "analysis/songs.track_id")
    )
    with pytest.raises(OrpheusError) as err:
        msd.read_summary(path)
    assert "analysis/songs.track_id" in err.value.message
    assert "table musicbrainz/songs" in err.value.message


def test_summary_field_of_the_wrong_type(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("metadata").create_dataset("songs", data=np.zeros(1, dtype=METADATA))
        wrong = [("duration", "<f8"), ("track_id", "<i8")]
        h5.create_group("analysis").create_dataset("songs", data=np.zeros(1, dtype=wrong))
        h5.create_group("musicbrainz").create_dataset("songs", data=np.zeros(1, dtype=MUSICBRAINZ))
    with pytest.raises(OrpheusError, match=r"analysis/songs.track_id as text \(found int64\)"):
        msd.read_summary(path)


def test_summary_not_hdf5_and_missing(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(OrpheusError, match="not an HDF5 file"):
        msd.read_summary(bad)
    with pytest.raises(OrpheusError, match="not found"):
        msd.read_summary(tmp_path / "nope.h5")


def test_summary_tables_must_be_row_aligned(tmp_path):
    path = write_summary(tmp_path / "s.h5", [{"track_7digitalid": 1, "track_id": tid(1)}])
    with h5py.File(path, "a") as h5:
        del h5["musicbrainz/songs"]
        h5["musicbrainz"].create_dataset("songs", data=np.zeros(2, dtype=MUSICBRAINZ))
    with pytest.raises(OrpheusError, match="not row-aligned"):
        msd.read_summary(path)


def test_7digital_paths():
    assert msd.audio_relpath(2573962) == "2/5/2573962.clip.mp3"
    assert msd.audio_relpath(7) == "7/0/7.clip.mp3"
    assert msd.id_from_filename("2573962.clip.mp3") == 2573962
    assert msd.id_from_filename("abc.clip.mp3") is None
    assert msd.id_from_filename("12.mp3") is None


def test_duplicates_parser_reports_bad_lines(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text(
        "# header\n# more\n"
        f"{tid(99)}\n"  # line 3: a member before any group
        "%1 group one\n"
        f"{tid(1)}\n{tid(2)}\n"
        "\n"
        "garbage line\n"  # line 8
        "%2 group two\n"
        f"{tid(3)} trailing text\n"
        "%3 empty group\n"
    )
    parsed = msd.read_duplicates(path)
    assert parsed.groups == [[tid(1), tid(2)], [tid(3)]]
    assert [n for n, _ in parsed.skipped] == [3, 8]


def test_mismatches_parser_reports_bad_lines(tmp_path):
    path = tmp_path / "mm.txt"
    path.write_text(
        f"ERROR: <SOUMNSI12AB0182807 {tid(5)}> A - B  !=  C - D\n"
        "\n"
        "ERROR: something without an id\n"
        f"ERROR: <SOAAAAA12AB0182807 {tid(6)}> E - F  !=  G - H\n"
    )
    parsed = msd.read_mismatches(path)
    assert parsed.track_ids == [tid(5), tid(6)]
    assert parsed.skipped == [(3, "ERROR: something without an id")]


def test_errata_missing_file(tmp_path):
    with pytest.raises(OrpheusError, match="file not found"):
        msd.read_mismatches(tmp_path / "none.txt")
