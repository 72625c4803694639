"""The `orpheus` command: global options, error handling, and the table of commands.

Every command lives in `orpheus/commands/<name>.py`. Nothing here imports TensorFlow, so
`orpheus --help` answers instantly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup, TyperOption

from orpheus import __version__
from orpheus.commands import config as config_cmd
from orpheus.commands import demo as demo_cmd
from orpheus.commands import init as init_cmd
from orpheus.commands import labels as labels_cmd
from orpheus.commands import predict as predict_cmd
from orpheus.commands import record as record_cmd
from orpheus.commands import scan as scan_cmd
from orpheus.commands import silence as silence_cmd
from orpheus.commands import status as status_cmd
from orpheus.commands import tags as tags_cmd
from orpheus.commands import test as test_cmd
from orpheus.commands import tfrecords as tfrecords_cmd
from orpheus.commands import train as train_cmd
from orpheus.commands import wrangle as wrangle_cmd
from orpheus.commands._common import (
    GlobalOptions,
    err_console,
    quiet_decoder_notes,
    quiet_tensorflow,
)
from orpheus.errors import OrpheusError

EXIT_INTERNAL = 3


def _flags_take_no_value() -> None:
    """Typer (0.29) prints `<bool>` beside every flag, `--help` included, as if it took a value.

    A flag takes none, so its type column is left empty; every other option keeps its type.
    """
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich


_flags_take_no_value()


class OrpheusGroup(TyperGroup):
    """Turns OrpheusError anywhere below into `error: ...` + exit code, never a traceback."""

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)  # pipeline order, not alphabetical

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OrpheusError as exc:
            report_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as exc:  # a bug: say so in one line unless -v asks for the traceback
            obj = ctx.find_root().obj
            if isinstance(obj, GlobalOptions) and obj.verbose:
                raise
            err_console.print(
                f"[red]internal error:[/red] {type(exc).__name__}: {escape(str(exc))}"
                " (a bug; run with -v for the traceback and please report it)",
                markup=True,
            )
            raise typer.Exit(EXIT_INTERNAL) from None


def report_error(exc: OrpheusError) -> None:
    """`error: ...` and `hint: ...`; the texts are escaped, since they quote paths and tag names."""
    err_console.print(f"[bold red]error:[/bold red] {escape(exc.message)}", soft_wrap=True)
    if exc.hint:
        err_console.print(f"[yellow]hint:[/yellow] {escape(exc.hint)}", soft_wrap=True)


app = typer.Typer(
    cls=OrpheusGroup,
    name="orpheus",
    help="Orpheus: a music auto-tagger trained on the Million Song Dataset and Last.fm tags.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orpheus {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "-w",
            "--workspace",
            help="Workspace folder (else $ORPHEUS_WORKSPACE, else the current folder).",
            envvar="ORPHEUS_WORKSPACE",
            show_envvar=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Show more detail.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only results and errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Orpheus: a music auto-tagger trained on the Million Song Dataset and Last.fm tags."""
    ctx.obj = GlobalOptions(workspace=workspace, verbose=verbose, quiet=quiet)
    if not verbose:
        quiet_tensorflow()
        quiet_decoder_notes()


# The commands in pipeline order, as `orpheus --help` lists them.
app.command("init")(init_cmd.command)
app.command("scan")(scan_cmd.command)
app.command("wrangle")(wrangle_cmd.command)
app.add_typer(labels_cmd.app, name="labels")
app.command("silence")(silence_cmd.command)
app.add_typer(tags_cmd.app, name="tags")
app.add_typer(tfrecords_cmd.app, name="tfrecords")
app.command("train")(train_cmd.command)
app.command("test")(test_cmd.command)
app.command("predict")(predict_cmd.command)
app.command("record")(record_cmd.command)
app.command("demo")(demo_cmd.command)
app.command("status")(status_cmd.command)
app.add_typer(config_cmd.app, name="config")


def main() -> None:
    """Console-script entry point (usage errors exit 2, like click)."""
    app()
