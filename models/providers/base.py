"""What every provider is in desired.yml, and what workflows may ask of one.

A provider is a desired.yml model (pure data, safe in workflows) paired with a runtime class in
activities/providers/ that does its side effects. Workflows ask a provider's capabilities and
its pure answers (which machine ids a pool hands out, which apt versions to pin), never its type.
"""

import hashlib
import re
from typing import ClassVar, Literal

from orbiter.models.base import Spec

Capability = Literal[
    "creates-machines",  # machines are made on demand and deleted on release (else: listed, taken over)
    "serves-packages",  # orbiter serves the packages its machines install (an activity prepares them)
    "vip",  # machines on one network can carry a keepalived VIP
    "kernel-modules",  # machines run their own kernel and can load modules
    "load-balancer",  # puts a TCP load balancer in front of a cluster's machines (e.g. API servers)
]


class ProviderProblem(Exception):
    """A desired.yml error of one provider, located by its field path below the provider."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


MAX_NAME = 63  # a hostname label; GCE instance names have the same limit


def machine_name(orb: str, cluster: str, pool: str, index: int) -> str:
    """Names of machines orbiter creates: stable, so creating again finds the same machine, and
    unique across the orbs on one host or project. Readable ("lab-meta-etcd-0") unless too long
    for a hostname; then the orb, and if need be the cluster and pool, become short hashes."""

    def short(text: str) -> str:
        return "h" + hashlib.sha256(text.encode()).hexdigest()[:7]

    for parts in ((orb, cluster, pool), (short(orb), cluster, pool), (short(orb), short(f"{cluster}/{pool}"))):
        name = re.sub(r"[^a-z0-9-]", "-", "-".join([*parts, str(index)]))
        if len(name) <= MAX_NAME:
            return name
    raise ValueError(f"machine index {index} is too large")


def remote_pins(wanted: dict[str, str]) -> dict[str, str]:
    """Machines that install from their own mirrors: each wanted version pinned as `<version>*`."""
    return {n: v if v.endswith("*") else f"{v}*" for n, v in wanted.items()}


def default_secret_names(provider: str) -> dict[str, str]:
    """The secrets of a provider's keys, by role (bootstrap: unless bootstrapKeySecret names another)."""
    return {
        "bootstrap": f"{provider}_bootstrapkey",
        "maintenance": f"{provider}_maintenancekey",
        "maintenance_pub": f"{provider}_maintenancekey_pub",
    }


class ProviderSpec(Spec):
    kind: str

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset()
    # "module:Class" of the runtime in activities/providers/, imported only by activities.
    RUNTIME: ClassVar[str]

    def can(self, capability: Capability) -> bool:
        return capability in self.CAPABILITIES

    # -- desired.yml checks -----------------------------------------------------------------------
    def problems(self, name: str, earlier: dict[str, "ProviderSpec"]) -> list[ProviderProblem]:
        """Errors a schema cannot see; `earlier` are the providers written before this one."""
        return []

    def pool_problem(self, name: str, pool: str, nodes: int) -> ProviderProblem | None:
        """Why a cluster cannot take `nodes` machines from `pool` (path relative to the pool ref)."""
        return None

    # -- machines ---------------------------------------------------------------------------------
    def machine_ids(self, orb: str, cluster: str, pool: str, used: set[str], count: int) -> list[str]:
        """The next `count` machine ids of a pool not in `used`, in pool order (fewer if the pool
        runs out). Providers that create machines name them; the others hand out listed machines."""
        out: list[str] = []
        index = 0
        while len(out) < count:
            name = machine_name(orb, cluster, pool, index)
            if name not in used:
                out.append(name)
            index += 1
        return out

    def vip_peers(self, pool: str, machine_id: str) -> list[str]:
        """Addresses keepalived sends VRRP to (unicast); empty: multicast on a shared network."""
        return []

    # -- packages ---------------------------------------------------------------------------------
    def package_pins(self, wanted: dict[str, str]) -> dict[str, str]:
        """Apt versions for providers that do not serve packages: the agent pins `<version>*`."""
        return remote_pins(wanted)

    # -- keys -------------------------------------------------------------------------------------
    @staticmethod
    def maintenance_key_secret(name: str) -> str:
        return default_secret_names(name)["maintenance"]

    @staticmethod
    def maintenance_pub_secret(name: str) -> str:
        return default_secret_names(name)["maintenance_pub"]

    def bootstrap_key_secret_name(self, name: str) -> str | None:
        """The secret holding the key orbiter first logs in with; None if it needs none."""
        return None
