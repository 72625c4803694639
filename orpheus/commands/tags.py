"""`orpheus tags top | show | stats | clean | explain | related`: explore and clean Last.fm tags."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from orpheus.commands._common import console, info, options, print_json, progress, workspace
from orpheus.errors import OrpheusError
from orpheus.workspace import LABELS_DB, LASTFM

if TYPE_CHECKING:
    from orpheus.lastfm.db import LastFm
    from orpheus.workspace import Workspace

app = typer.Typer(
    help="Last.fm tags: the most popular, a track's tags, clean them, explain a tag's fate,"
    " the tags that go with a tag.",
    no_args_is_help=True,
)

CLEAN_DB = "tags/clean_lastfm.db"
ARTIFACT = "clean-tags"
STAGES = 6  # progress messages clean_database sends

RawOpt = Annotated[bool, typer.Option("--raw", help="Use the input Last.fm db, not the clean one.")]
DbOpt = Annotated[
    Path | None,
    typer.Option("--lastfm-db", help="Input Last.fm db (default: paths.lastfm_db); implies --raw."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def top(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("-n", help="How many tags.")] = 50,
    raw: RawOpt = False,
    lastfm_db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The most popular tags, counted in distinct tracks."""
    if n < 1:
        raise OrpheusError(f"-n must be at least 1, got {n}")
    with _open(ctx, raw, lastfm_db) as db:
        pop = db.popularity().head(n)
    rows = [{"rank": i, "tag": t, "tracks": int(c)} for i, (t, c) in enumerate(pop.items(), 1)]
    if as_json:
        print_json(rows)
        return
    table = Table("#", "tag", "tracks", title=f"top {len(rows)} tags")
    for r in rows:
        table.add_row(str(r["rank"]), escape(r["tag"]), f"{r['tracks']:,}")
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    tid: Annotated[str, typer.Argument(help="A track ID (MSD TR..., or an imported source's).")],
    raw: RawOpt = False,
    lastfm_db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The tags of one track, strongest (Last.fm `val`) first."""
    with _open(ctx, raw, lastfm_db) as db:
        if db.tid_to_num(tid) is None:
            raise OrpheusError(f"track {tid} is not in {db.path}")
        tags = db.tags_with_val(tid)
    if as_json:
        print_json({"tid": tid, "tags": [{"tag": t, "val": v} for t, v in tags]})
        return
    if not tags:
        console.print(f"{tid}: no tags")
        return
    table = Table("tag", "val", title=escape(tid))
    for t, v in tags:
        table.add_row(escape(t), f"{v:g}")
    console.print(table)


@app.command()
def stats(
    ctx: typer.Context, raw: RawOpt = False, lastfm_db: DbOpt = None, as_json: JsonOpt = False
) -> None:
    """Counts: tracks, tags, rows, duplicate rows, val range (and how a clean db was made)."""
    from orpheus.lastfm.cleaning import cleaning_meta

    with _open(ctx, raw, lastfm_db) as db:
        result = db.stats()
        meta = cleaning_meta(db)
    if meta:
        result["cleaning"] = meta
    if as_json:
        print_json(result)
        return
    table = Table("", "", show_header=False, title=str(result["path"]))
    for key, value in result.items():
        if key not in ("path", "cleaning"):
            table.add_row(key.replace("_", " "), _fmt(value))
    if meta:
        table.add_row("made from", str(meta.get("input")))
        table.add_row("parameters", str(meta.get("params")))
        table.add_row("lists", str(meta.get("lists")))
    console.print(table)


@app.command()
def clean(
    ctx: typer.Context,
    lastfm_db: Annotated[
        Path | None, typer.Option("--lastfm-db", help="Input db (default: paths.lastfm_db).")
    ] = None,
    threshold: Annotated[
        int | None, typer.Option(help="Tracks a genre tag needs (default 2000, from config).")
    ] = None,
    sub_threshold: Annotated[
        int | None, typer.Option(help="Tracks a spelling needs to be merged (default 10).")
    ] = None,
    val: Annotated[
        float | None, typer.Option(help="Keep only (track, tag) rows with val above this.")
    ] = None,
    lists: Annotated[
        Path | None, typer.Option(help="Folder of tag lists (default: the packaged originals).")
    ] = None,
    combine: Annotated[
        list[str] | None,
        typer.Option(help="Merge clean tags, e.g. --combine rap,hip-hop (repeatable)."),
    ] = None,
    drop: Annotated[
        list[str] | None, typer.Option(help="Drop a clean or raw tag (repeatable).")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="lastfm (Last.fm's rules and lists) or passthrough (keep every tag, merge"
            " spellings); default: passthrough for imported labels, else lastfm."
        ),
    ] = None,
    min_tracks: Annotated[
        int | None,
        typer.Option(help="passthrough: tracks a tag needs (default: tags-cleaning.min_tracks)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Last.fm's ~500k raw tags -> ~155 clean tags, written to tags/clean_lastfm.db.

    Same schema as the input (plus an audit table read by `orpheus tags explain`). Labels
    imported with `orpheus labels import` are cleaned by the passthrough profile.
    """
    from orpheus.lastfm.cleaning import (
        LASTFM_PROFILE,
        PASSTHROUGH_PROFILE,
        CleaningParams,
        clean_database,
        load_lists,
    )

    ws = workspace(ctx)
    cfg = ws.settings.tags_cleaning
    src = _input_db(ws, lastfm_db)
    imported = lastfm_db is None and ws.label_source() != LASTFM
    profile = profile or (PASSTHROUGH_PROFILE if imported else LASTFM_PROFILE)
    passthrough = profile == PASSTHROUGH_PROFILE
    if min_tracks is not None and not passthrough:
        raise OrpheusError(
            "--min-tracks belongs to the passthrough profile", hint="use --threshold"
        )
    lists_dir = lists if lists is not None else _config_path(ws, cfg.lists)
    groups = combine or cfg.combine
    params = CleaningParams(
        threshold=threshold if threshold is not None else cfg.threshold,
        sub_threshold=sub_threshold if sub_threshold is not None else cfg.sub_threshold,
        val=val if val is not None else float(cfg.val),
        combine=tuple(_group(g) for g in groups),
        drop=tuple(drop or cfg.drop),
        profile=profile,
        min_tracks=(min_tracks or cfg.min_tracks) if passthrough else 1,
    )
    tag_lists = None if passthrough else load_lists(lists_dir)
    dest = ws.path(CLEAN_DB)
    with progress(ctx) as bar:
        task = bar.add_task("cleaning tags", total=STAGES)
        done = iter(range(STAGES))

        def step(message: str) -> None:
            bar.update(task, completed=next(done, STAGES - 1), description=message)

        summary = clean_database(src, dest, params, tag_lists, progress=step)
        bar.update(task, completed=STAGES, description="done")
    inputs: dict[str, str | Path] = {LABELS_DB: LABELS_DB} if imported else {"lastfm_db": src}
    if lists_dir is not None and not passthrough:
        inputs["lists"] = Path(lists_dir).resolve()
    ws.register(
        ARTIFACT,
        CLEAN_DB,
        params={
            "threshold": params.threshold,
            "sub_threshold": params.sub_threshold,
            "val": params.val,
            "lists": str(lists_dir) if lists_dir is not None else None,
            "combine": [list(g) for g in params.combine],
            "drop": list(params.drop),
            "profile": params.profile,
            "min_tracks": params.min_tracks,
        },
        inputs=inputs,
        summary={k: summary[k] for k in ("clean_tags", "tracks", "rows")},
    )
    if as_json:
        print_json({"path": str(dest), **summary})
        return
    table = Table("", "", show_header=False, title=f"clean tags -> {dest}")
    for key, value in summary.items():
        table.add_row(key.replace("_", " "), _fmt(value))
    console.print(table)
    info(
        ctx, "see `orpheus tags top` and `orpheus tags explain TAG`; next: orpheus tfrecords build"
    )


@app.command()
def explain(
    ctx: typer.Context,
    tag: Annotated[str, typer.Argument(help="A raw Last.fm tag, or a clean tag.")],
    as_json: JsonOpt = False,
) -> None:
    """Where a raw tag went and why (rule, list); for a clean tag, what merged into it."""
    from orpheus.lastfm.cleaning import explain as explain_tag

    with _open(ctx, False, None, clean_only=True) as db:
        result = explain_tag(db, tag)
    if as_json:
        print_json(result)
        return
    raw, merged = result["raw"], result["merged_into_it"]
    if raw is None and not merged:
        similar = ", ".join(repr(s) for s in result["similar"])
        raise OrpheusError(
            f"{tag!r} is neither a raw tag of the input db nor a clean tag",
            hint=f"did you mean {similar}?" if similar else "tag names are case-sensitive",
        )
    if raw is not None:
        console.print(_sentence(raw))
    if merged:
        title = escape(f"merged into {tag!r}")
        table = Table("raw tag", "rule", "source", "via", "tracks", title=title)
        for r in merged:
            cells = (r["raw_tag"], r["rule"], r["source"], r["via"])
            table.add_row(*(escape(str(c)) for c in cells), f"{r['tracks']:,}")
        console.print(table)


@app.command()
def related(
    ctx: typer.Context,
    tag: Annotated[str, typer.Argument(help="A tag of the chosen db (case-sensitive).")],
    db: Annotated[
        Literal["raw", "clean"] | None,
        typer.Option(
            help="raw: the input Last.fm db; clean: tags/clean_lastfm.db"
            " (default: the clean db if it exists)."
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="How many related tags.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The tags that share tracks with TAG: tracks with both, share of TAG's tracks, lift.

    Lift: P(both) / (P(TAG) P(other)) over tagged tracks; 1 if unrelated, above 1 if related.
    """
    from orpheus.lastfm.matrix import related as related_tags

    if top < 1:
        raise OrpheusError(f"--top must be at least 1, got {top}")
    with _open(ctx, db == "raw", None, clean_only=db == "clean") as lastfm:
        result = related_tags(lastfm, tag, top)
    if as_json:
        print_json(result)
        return
    rows = result["related"]
    if not rows:
        console.print(escape(f"{tag!r}: no other tag shares a track with it"))
        return
    table = Table(
        "tag",
        "both",
        "tracks",
        "share",
        "lift",
        title=escape(f"{tag!r} ({result['tracks']:,} of {result['total_tracks']:,} tracks)"),
    )
    for r in rows:
        table.add_row(
            escape(r["tag"]),
            f"{r['both']:,}",
            f"{r['tracks']:,}",
            f"{r['share']:.1%}",
            f"{r['lift']:.2f}",
        )
    console.print(table)


def _fmt(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _sentence(r: dict) -> str:
    """One line of plain English for an audit row."""
    rule, source = r["rule"], escape(str(r["source"]))
    name, via, clean = escape(repr(r["raw_tag"])), escape(repr(r["via"])), r["clean_tag"]
    clean = escape(clean) if clean else clean
    where = f"-> [bold]{clean}[/bold]" if clean else "-> [red]discarded[/red]"
    reasons = {
        "genre": f"a genre tag ({r['tracks']:,} tracks; {source})",
        "kept": f"kept as named ({r['tracks']:,} tracks; {source})",
        "spelling": f"same {source} spelling key as {via}",
        "collision": f"collides with {via} ({source}); the more popular spelling names the tag",
        "vocal": f"vocal tag list {source}",
        "combine": f"combined into {via} ({source})",
        "drop": f"dropped ({source})",
        "rejected": f"a `-` line of {source}",
        "below-sub-threshold": f"only {r['tracks']:,} tracks; {source}",
        "no-match": source,
        "no-rows": source,
    }
    return f"{name} {where}: {reasons.get(rule, rule)}"


# -- which db -------------------------------------------------------------------------------


def _open(ctx: typer.Context, raw: bool, given: Path | None, clean_only: bool = False) -> LastFm:
    """The clean db by default; the input db with --raw / --lastfm-db (or while none exists)."""
    from orpheus.lastfm.db import LastFm

    if given is not None:
        return LastFm(_checked(given, "--lastfm-db"))
    ws = workspace(ctx)
    clean_path = ws.artifact_path(ARTIFACT) or ws.path(CLEAN_DB)
    if not raw and clean_path.exists():
        if options(ctx).verbose:
            info(ctx, f"[dim]clean db: {clean_path}[/dim]")
        return LastFm(clean_path)
    if clean_only:
        raise OrpheusError(f"no {ARTIFACT} yet: run `orpheus tags clean`")
    if not raw:
        info(ctx, "[dim]no clean db yet: showing the input Last.fm db[/dim]")
    return LastFm(_input_db(ws, None))


def _input_db(ws: Workspace, given: Path | None) -> Path:
    """The raw tag db: --lastfm-db, else the imported labels' db, else paths.lastfm_db."""
    if given is None and ws.label_source() != LASTFM:
        return ws.require(LABELS_DB)
    path = given if given is not None else ws.input_path("lastfm_db")
    if path is None:
        raise OrpheusError(
            "no Last.fm db given",
            hint="pass --lastfm-db DB, or: orpheus config set paths.lastfm_db DB",
        )
    return _checked(path, "--lastfm-db" if given is not None else "paths.lastfm_db in config.json")


def _checked(path: Path, source: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise OrpheusError(f"file not found: {path} (from {source})")
    return path.resolve()


def _config_path(ws: Workspace, value: str | None) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else ws.root / p


def _group(value: str | list[str]) -> tuple[str, ...]:
    """A combine group from `A,B` (CLI) or a list (config)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(i.strip() for i in items if i.strip())
