"""The `orbiter` command."""

import logging
import os
import sys
from importlib.metadata import version
from typing import Annotated

import typer

from . import actions, clusters, gitops, history, machines, receiver, repo, secret, server
from .codec import codec_server

app = typer.Typer(
    help="orbiter: GitOps cluster manager on Temporal. Describe clusters in desired.yml, push, and"
    " orbiter reconciles them and writes current.yml back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(show: bool) -> None:
    if show:
        print(f"orbiter {version('orbiter')}")
        raise typer.Exit()


@app.callback()
def _main(
    _version_flag: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print orbiter's version and exit")] = False,
) -> None:
    """orbiter: GitOps cluster manager on Temporal."""


app.command()(server.server)
app.command()(server.worker)
app.command()(server.up)
app.command()(gitops.takeoff)
app.command()(gitops.poke)
app.command()(gitops.status)
app.command()(clusters.pause)
app.command()(clusters.resume)
app.command()(clusters.retry)
app.command()(clusters.replace)
app.command()(clusters.reboot)
app.command()(clusters.approve)
app.command()(clusters.reject)
app.command(name="apply-now")(clusters.apply_now)
app.command()(history.history)
app.command()(actions.backup)
app.command()(actions.backups)
app.command()(actions.restore)
app.command(name="rotate-ca")(actions.rotate_ca)
app.command()(receiver.receiver)
app.command()(repo.init)
app.command()(repo.plan)
app.command(name="codec-server")(codec_server)
app.add_typer(secret.app, name="secret")
app.add_typer(machines.app, name="machines")


def main() -> None:
    """The `orbiter` command. Once the command is done, the process ends without finalizing the
    interpreter: the Temporal client's native threads could still call into a finalizing Python
    and abort the process ("PyGILState_Release ... finalizing"), turning a command that printed
    its answer into a crash with exit 134 (seen once in `orbiter status` of the demo)."""
    code: int | str | None = 0
    try:
        app()
    except SystemExit as done:
        code = done.code
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    os._exit(code or 0)
