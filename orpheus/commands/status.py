"""`orpheus status`: what exists in the workspace, what is stale, and what to run next."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from orpheus.commands._common import console, print_json, workspace
from orpheus.workspace import MISSING, OK, STALE

STATE_STYLE = {OK: "green", STALE: "yellow", MISSING: "red"}


def command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every artifact (ok / stale / missing) and the next command to run."""
    ws = workspace(ctx)
    artifacts = ws.manifest()["artifacts"]
    states = ws.states()
    rows = []
    for name, entry in artifacts.items():
        state, reason = states[name]
        rows.append(
            {
                "name": name,
                "state": state,
                "reason": reason,
                "path": entry["path"],
                "created": entry["created"],
                "command": entry["command"],
                "summary": entry.get("summary", {}),
            }
        )
    for pattern, how in ws.pipeline():  # stages of the label source never run: missing
        if not pattern.endswith("/*") and pattern not in artifacts:
            rows.append(
                {
                    "name": pattern,
                    "state": MISSING,
                    "reason": "never made",
                    "path": None,
                    "created": None,
                    "command": how,
                    "summary": {},
                }
            )
    nxt = ws.next_command()
    if as_json:
        print_json({"workspace": str(ws.root), "artifacts": rows, "next": nxt})
        return
    table = Table(title=f"workspace {ws.root}", title_justify="left")
    for col in ("artifact", "state", "created", "size / rows", "produced by"):
        table.add_column(col, overflow="fold")
    for row in rows:
        style = STATE_STYLE[row["state"]]
        state = f"[{style}]{row['state']}[/{style}]"
        if row["reason"] and row["state"] != OK:
            state += f" [dim]({row['reason']})[/dim]"
        created = (row["created"] or "-").replace("T", " ").replace("+00:00", "Z")
        summary = ", ".join(f"{k} {v}" for k, v in row["summary"].items()) or "-"
        table.add_row(row["name"], state, created, summary, row["command"])
    console.print(table)
    console.print(f"next: [bold]{nxt}[/bold]" if nxt else "everything is up to date")
