"""A stand-in for the Google Compute Engine API: NOT GCE, only for orbiter's tests.

No emulator of the Compute API exists on any registry reachable here, so the tests run this
one: an HTTP server in the test process that speaks the Compute v1 REST API for the calls
orbiter's GCE provider makes (instances, zone/region/global operations, firewalls, addresses,
regional health checks and backend services, instance groups, forwarding rules), with GCE's
behaviour where correctness depends on it: operations RUNNING before DONE, a repeated requestId
answered with the first operation, 404/409/400/403/412 bodies the client library maps to its
exceptions, `resourceInUseByAnotherResource` when deleting what is still referenced, name and
label rules, list filters and pagination, and bearer tokens checked against a service-account
key it made (its /token endpoint is the key's token_uri).

Each inserted instance boots a real machine (machines.py: the local provider's systemd-nspawn
machines on a bridge of the test's subnet), gets its `ssh-keys` metadata applied the way GCE's
guest agent does, and reports the machine's address as networkIP; a forwarding rule forwards
TCP on an address of that bridge to the healthy members of its backend service (proxy.py).
Fault switches (state.Faults) fail inserts with GCE's quota error, keep operations RUNNING, and
drop an answer after the change was made. Product code knows nothing of it: it is reached only
through the provider's `endpoint` field.

Modules: names (name and label rules), filters, auth, state (resources, operations, faults),
resources (what each call does), rest (the HTTP server), machines, proxy.
"""

from __future__ import annotations

from .auth import Accounts
from .resources import Backend, NoMachines, Project
from .rest import Server
from .state import Faults, Store

__all__ = ["GceStandin", "Faults"]


class GceStandin:
    """The stand-in's server over one project: `endpoint` goes into desired.yml, `key_json()` into secrets."""

    def __init__(self, project: str = "orbiter-test", region: str = "europe-west6",
                 zones: tuple[str, ...] = ("europe-west6-a", "europe-west6-b"), backend: Backend | None = None) -> None:
        self.store = Store(project, region, list(zones))
        self.accounts = Accounts()
        self.backend = backend or NoMachines()
        self.project = Project(self.store, self.backend)
        if hasattr(self.backend, "attach"):
            self.backend.attach(self.store)
        self.server = Server(self.store, self.project, self.accounts)

    @property
    def endpoint(self) -> str:
        return self.server.url

    @property
    def faults(self) -> Faults:
        return self.store.faults

    def key_json(self) -> str:
        """A service-account key file the stand-in accepts (a fresh RSA key; its token_uri is ours)."""
        return self.accounts.new_key(self.store.project, self.endpoint + "/token")

    def snapshot(self) -> dict[str, list[str]]:
        self.store.settled()
        return self.store.snapshot()

    def stop(self) -> None:
        """The server stops; a backend with machines deletes them (also those a failed test left)."""
        self.server.stop()
        if hasattr(self.backend, "close"):
            self.backend.close()
