"""`orbiter receiver`: the HTTP endpoint git servers send push hooks to (see worker/receiver.py)."""

import asyncio
import signal
from typing import Annotated

import typer
from temporalio.client import Client

from orbiter.models.secrets import SecretsError
from orbiter.worker.client import ConnectError, connect
from orbiter.worker.logs import setup_logging
from orbiter.worker.receiver import HookReceiver, serve_hooks

from .common import console, fail

ListenOpt = Annotated[str, typer.Option("--listen", help="HOST:PORT to listen on (put TLS in front of it when"
                                        " a git server outside this host sends the hooks)")]
DEFAULT_LISTEN = "127.0.0.1:8088"


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        fail(f"--listen {listen!r}: write HOST:PORT, e.g. 0.0.0.0:8088")
    return host or "0.0.0.0", int(port)  # noqa: S104 - the operator asked for every address


def start_receiver(client: Client, listen: str) -> HookReceiver:
    """OSError when it cannot listen there."""
    host, port = parse_listen(listen)
    return serve_hooks(client, asyncio.get_running_loop(), host, port)


def receiver(listen: ListenOpt = DEFAULT_LISTEN) -> None:
    """Receive push hooks from GitHub, GitLab or Gitea at POST /hooks/<orb>: a hook signed with the
    orb's receiver secret (desired.yml `receiver: {secret: NAME}`) pokes the orb at once. Ctrl-C stops."""
    setup_logging()

    async def main() -> None:
        client = await connect()
        try:
            server = start_receiver(client, listen)
        except OSError as err:
            fail(f"receiver cannot listen on {listen}: {err.strerror}; choose another with --listen")
        console.print(f"receiving push hooks at {server.url}/hooks/<orb>; Ctrl-C stops", highlight=False)
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
        finally:
            await asyncio.to_thread(server.shutdown)

    try:
        asyncio.run(main())
    except (ConnectError, SecretsError) as err:
        fail(str(err))
