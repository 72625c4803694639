"""`orpheus config show | set | validate`: read and change config.json by dotted keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orpheus import config as config_lib
from orpheus.commands._common import console, info, print_json, workspace

app = typer.Typer(help="Show, change or check the workspace configuration.", no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    key: Annotated[
        str | None, typer.Argument(help="Dotted key, e.g. model-training.batch_size.")
    ] = None,
) -> None:
    """Print the configuration (or one key) as JSON."""
    cfg = workspace(ctx).config
    value = cfg if key is None else config_lib.get(cfg, key)
    print_json(value)


@app.command("set", context_settings={"ignore_unknown_options": True})
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. model-training.batch_size.")],
    value: Annotated[str, typer.Argument(help="A JSON value (bare words are strings).")],
) -> None:
    """Set one key; the whole config is validated before it is written."""
    ws = workspace(ctx)
    with ws.lock():
        updated = config_lib.set_value(ws.config, key, value, source=str(ws.path("config.json")))
        ws.save_config(updated)
    info(ctx, f"{key} = {json.dumps(config_lib.get(updated, key))}")


@app.command("validate")
def validate(
    ctx: typer.Context,
    file: Annotated[
        Path | None, typer.Argument(help="A config file (default: the workspace's config.json).")
    ] = None,
) -> None:
    """Check a config file against the schema; exit 2 with the offending key if it is wrong."""
    path = file if file is not None else workspace(ctx).path("config.json")
    config_lib.load(path)
    console.print(f"{path}: valid")
