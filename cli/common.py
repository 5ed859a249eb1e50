"""What every command shares: one-line user errors, output formats, the repo directory."""

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)  # a line of output stays one line, also in a narrow or piped terminal
err_console = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[Output, typer.Option("--output", "-o",
                                           help="table for people, json for scripts")]
RepoDirOpt = Annotated[Path, typer.Option("--repo-dir", help="checkout of the orbiter repository")]


class UserError(Exception):
    """An error the user can fix: printed as one line, exit status 1, no traceback."""


def fail(message: str, code: int = 1) -> NoReturn:
    # escape: messages quote user input ("[0]", "[30s") that rich would read as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
