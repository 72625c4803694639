"""`orpheus labels import`: labels from a CSV, MTG-Jamendo, MagnaTagATune or the files' own tags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orpheus.commands._common import check_workers, console, info, workspace
from orpheus.errors import EXIT_PARTIAL, OrpheusError
from orpheus.tables import save_table
from orpheus.workspace import LABELS, LABELS_DB

app = typer.Typer(
    help="Labels from other sources than the MSD + Last.fm, written for the same pipeline.",
    no_args_is_help=True,
)

TABLE = "data/labels.parquet"
TAG_DB = "tags/labels.db"
SOURCE_HELP = (
    "csv: a CSV/TSV with a header naming `path` and `tags` (`;` between tags, or repeated"
    " rows; a weight as `tag:0.8`: weights of at most 1 are fractions of 100, larger ones"
    " are scaled so the file's largest is 100; optional `artist`, `track_id` columns). jamendo:"
    " MTG-Jamendo TSVs or a split-N folder (its split is used). mtat: MagnaTagATune's"
    " annotations_final.csv. files: the genre, mood and grouping tags in the audio files"
    " under PATH."
)


@app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(help="Label files (for --from files: the audio root).")
    ],
    source: Annotated[str, typer.Option("--from", help=SOURCE_HELP)],
    audio_root: Annotated[
        Path | None,
        typer.Option(
            help="Folder the label files' paths are relative to (default: the folder of"
            " the first label file; for files, PATH; jamendo needs it)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", help="Processes reading file tags.")
    ] = None,
) -> None:
    """Write the labels as the workspace's tag db (Last.fm schema) and its track table.

    Then `orpheus silence`, `tags clean`, `tfrecords build`, `train` and `test` run on them.
    Rows that cannot be used are counted per reason; exit 1 when some were malformed.
    """
    from orpheus import labels
    from orpheus.labels import common, splits

    ws = workspace(ctx)
    check_workers(workers)
    root = _audio_root(source, paths, audio_root)
    given = [p.expanduser().resolve() for p in paths]
    imported = labels.read_source(source, given, root, workers=workers)
    if imported.tracks.empty:
        counts = ", ".join(f"{n} {r}" for r, n in imported.skipped.counts.items()) or "no rows"
        raise OrpheusError(
            f"no track of {given[0]} has both audio and labels ({counts})",
            hint=f"check that the paths are relative to the audio root {root}",
        )
    common.save_tag_rows(ws.path(TAG_DB), imported.rows)
    save_table(imported.tracks, ws.path(TABLE))
    _, split_source = splits.assign(imported.tracks, ws.settings.model_training.split)
    params = {"source": source, "paths": [str(p) for p in given], "audio_root": str(root)}
    inputs = {f"labels{i}": p for i, p in enumerate(given)}
    summary = {"tracks": len(imported.tracks), "tags": imported.tags, "rows": len(imported.rows)}
    ws.register(LABELS_DB, TAG_DB, params=params, inputs=inputs, summary=summary)
    ws.register(
        LABELS,
        TABLE,
        params={**params, "split_source": split_source},
        inputs={**inputs, LABELS_DB: LABELS_DB},
        summary={**summary, "skipped": imported.skipped.total},
    )
    _report(imported, source, split_source)
    info(ctx, f"tag db: {ws.path(TAG_DB)}; tracks: {ws.path(TABLE)}; next: orpheus silence")
    if any(imported.skipped.counts[r] for r in (common.BAD_ROW, common.UNREADABLE, common.OUTSIDE)):
        raise typer.Exit(EXIT_PARTIAL)


def _audio_root(source: str, paths: list[Path], given: Path | None) -> Path:
    if not paths:
        raise OrpheusError("no PATH given", hint="orpheus labels import --from SOURCE PATH...")
    if given is None and source == "jamendo":
        raise OrpheusError(
            "--from jamendo needs --audio-root (the folder holding NN/ID.mp3)",
            hint="orpheus labels import --from jamendo SPLIT_DIR --audio-root AUDIO_DIR",
        )
    first = paths[0].expanduser()
    root = given if given is not None else (first if source == "files" else first.parent)
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise OrpheusError(f"audio root {root} is not a folder")
    return root


def _report(imported, source: str, split_source: str) -> None:
    """What was imported, and every skip with a few examples."""
    console.print(
        f"{source}: imported {len(imported.tracks)} tracks, {imported.tags} tags,"
        f" {len(imported.rows)} labels; split: {split_source}"
    )
    skipped = imported.skipped
    if not skipped.total:
        return
    table = Table("skipped", "count", "for example", title="skipped", title_justify="left")
    for reason, n in sorted(skipped.counts.items()):
        table.add_row(reason, str(n), escape("; ".join(skipped.examples[reason][:3])))
    console.print(table)
