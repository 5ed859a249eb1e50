"""The Temporal client every orbiter process uses: address, namespace, encrypted payloads."""

import asyncio
import os
import socket

from temporalio.client import Client
from temporalio.service import RPCError

from orbiter.models.secrets import SecretsError
from orbiter.worker.codec import data_converter

from .masterkey import load_master_key

DEFAULT_ADDRESS = "localhost:7233"


def temporal_address() -> str:
    return os.environ.get("TEMPORAL_ADDRESS", DEFAULT_ADDRESS)


def temporal_namespace() -> str:
    return os.environ.get("TEMPORAL_NAMESPACE", "default")


class ConnectError(Exception):
    """Temporal cannot be reached; the message says where orbiter looked."""


def _answers(address: str) -> bool:
    """Something accepts TCP connections at address (then a failed connect is not "nobody there")."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.3):
            return True
    except (OSError, ValueError):
        return False


STARTING_ATTEMPTS = 30  # x 0.5 s: how long a just-started server may take to become healthy


async def connect(address: str | None = None, namespace: str | None = None) -> Client:
    address = address or temporal_address()
    namespace = namespace or temporal_namespace()
    try:
        converter = data_converter(load_master_key())
    except SecretsError:
        raise
    for attempt in range(STARTING_ATTEMPTS):
        try:
            return await Client.connect(address, namespace=namespace, data_converter=converter)
        except (RuntimeError, RPCError) as err:
            # A server that has just started answers "not healthy yet" for a moment: wait for it.
            if "not healthy yet" in str(err) and attempt + 1 < STARTING_ATTEMPTS:
                await asyncio.sleep(0.5)
                continue
            text = str(err).splitlines()[0]
            if _answers(address):
                raise ConnectError(
                    f"{address} answers, but not as a Temporal server (some other program listens there):"
                    " stop it, or run orbiter's server on another port and set TEMPORAL_ADDRESS"
                ) from None
            raise ConnectError(
                f"cannot reach Temporal at {address} ({text}): start it with `orbiter server` or set TEMPORAL_ADDRESS"
            ) from None
    raise AssertionError("unreachable")
