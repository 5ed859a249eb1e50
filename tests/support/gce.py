"""Helpers for GCE tests: the Compute API stand-in (tests/standins/gce) over real machines, its
service-account key added as a secret the way a user adds one, and the project's contents."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..standins.gce import GceStandin
from ..standins.gce.machines import LocalBackend
from ..workflows.test_cli import ainvoke

PROJECT = "orbiter-test"
REGION = "europe-west6"
ZONES = ("europe-west6-a", "europe-west6-b")
CREDENTIALS = "cloud_credentials"


@contextlib.contextmanager
def gce_standin(subnet: str, packages: list[str], standins: list[str] = (), like_a_vm: bool = False,
                name: str = "gce-standin", project: str = PROJECT) -> Iterator[GceStandin]:
    """The stand-in whose instances boot machines on `subnet`, their mirror serving `packages`; every
    machine, address, proxy, the bridge and the server are gone afterwards, also on failure."""
    backend = LocalBackend(subnet, name=name, like_a_vm=like_a_vm)
    standin = GceStandin(project, REGION, ZONES, backend=backend)
    try:
        backend.serve_mirror(packages, list(standins))
        yield standin
    finally:
        standin.stop()


async def add_credentials(clone, standin: GceStandin, name: str = CREDENTIALS) -> str:
    """`orbiter secret add NAME < key.json` in the operator's checkout; the key's JSON."""
    key = standin.key_json()
    added = await ainvoke("secret", "add", name, "--repo-dir", str(clone), input=key)
    assert added.exit_code == 0, added.output
    return key


def project(standin: GceStandin) -> dict[str, list[str]]:
    """Collection -> names of everything in the project, once no operation runs."""
    return standin.snapshot()


def instances(standin: GceStandin) -> dict[str, dict]:
    standin.store.settled()
    return {i["name"]: i for i in standin.store.all("instances")}
