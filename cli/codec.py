"""`orbiter codec-server`: decrypts payloads for the Temporal Web UI and CLI on this machine."""

from typing import Annotated

import typer

from orbiter.models.secrets import SecretsError
from orbiter.worker.codec_server import run
from orbiter.worker.masterkey import load_master_key, masterkey_path

from .common import console, fail


def codec_server(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8234,
    host: Annotated[
        str, typer.Option(help="address to bind; keep loopback, anyone reaching it can decrypt")
    ] = "127.0.0.1",
    ui_origin: Annotated[
        str,
        typer.Option(help="Web UI origin allowed by CORS (comma-separated for several)"),
    ] = "http://localhost:8233",
) -> None:
    """Serve Temporal's remote codec protocol so the Web UI shows decrypted workflow data.

    Point the UI at it with `--ui-codec-endpoint http://HOST:PORT`. Uses ORBITER_MASTERKEY_FILE.
    """
    try:
        master_key = load_master_key()
    except SecretsError as err:
        fail(str(err))
    console.print(
        f"codec server on http://{host}:{port} for UI {ui_origin}"
        f" (master key {masterkey_path()}); Ctrl-C stops",
        highlight=False,
    )
    try:
        run(master_key, host=host, port=port, ui_origin=ui_origin)
    except OSError as err:
        fail(f"cannot listen on {host}:{port}: {err.strerror or err}")
