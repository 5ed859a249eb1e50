"""desired.yml: the operator's description of an orb (providers and clusters).

Strict on purpose: the original Orbiter ignored unknown fields and its own examples drifted from
the code unnoticed. Unknown fields, wrong types and dangling references are all errors. The
providers and cluster kinds it accepts come from their registries (models/providers,
models/kinds); each checks its own fields, and the references between them are checked here.
"""

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr

from .backups import BackupStoreSpec
from .base import Spec
from .change import Approval, ChangeControl, Maintenance
from .duration import Duration
from .kinds import Cluster, KindSpec
from .names import NAME_PATTERN, Name
from .notify import Sink
from .providers import Provider, ProviderSpec
from .updates import OrbiterUpdates, OsUpdates

__all__ = ["NAME_PATTERN", "Metadata", "Orb", "OrbSpec", "Reference", "check_references"]


class Receiver(Spec):
    """`receiver: {secret: NAME}`: git servers' push hooks for this orb are checked against this
    secret (`orbiter receiver`); without it the receiver refuses them."""

    secret: StrictStr


class OrbSpec(Spec):
    poll_interval: Duration = Field("30s", alias="pollInterval")
    drift_interval: Duration = Field("10m", alias="driftInterval")
    max_parallel: Annotated[StrictInt, Field(ge=1, le=256)] = Field(10, alias="maxParallel")
    providers: dict[Name, Provider] = {}
    clusters: dict[Name, Cluster] = {}
    # Defaults for every cluster that does not say otherwise.
    approval: Approval | None = None
    maintenance: Maintenance | None = None
    notify: list[Sink] = []
    receiver: Receiver | None = None
    backup_store: BackupStoreSpec | None = Field(None, alias="backupStore")  # where clusters' backups go
    os_updates: OsUpdates | None = Field(None, alias="osUpdates")  # every cluster's unless it sets its own
    orbiter: OrbiterUpdates | None = None  # the versions of orbiter itself (`orbiter worker --self-update`)




class Metadata(Spec):
    name: Name


class Orb(Spec):
    api_version: Literal["orbiter.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["Orb"]
    metadata: Metadata
    spec: OrbSpec


def change_control(orb: Orb, cluster: KindSpec) -> ChangeControl:
    """A cluster's approval and maintenance settings: its own, else the orb's."""
    return ChangeControl(approval=cluster.approval or orb.spec.approval,
                         maintenance=cluster.maintenance or orb.spec.maintenance)


def os_updates(orb: Orb, cluster: KindSpec) -> OsUpdates | None:
    """A cluster's OS update policy: its own, else the orb's."""
    return cluster.os_updates or orb.spec.os_updates


class Reference(Exception):
    """A cross-reference error, located by its field path."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def cluster_providers(orb: Orb, cluster: KindSpec) -> dict[str, ProviderSpec]:
    """The providers a cluster takes machines from, by name."""
    return {ref.provider: orb.spec.providers[ref.provider] for _, ref in cluster.pools()
            if ref.provider in orb.spec.providers}


def check_references(orb: Orb) -> list[Reference]:
    """Errors a schema cannot see: unknown providers and pools, too few machines, clashes."""
    errors: list[Reference] = []
    spec = orb.spec
    earlier: dict[str, ProviderSpec] = {}
    for pname, provider in spec.providers.items():
        at = ("spec", "providers", pname)
        errors += [Reference(at + p.path, p.message) for p in provider.problems(pname, earlier)]
        earlier[pname] = provider
    claimed: dict[tuple[str, str], str] = {}
    for cname, cluster in spec.clusters.items():
        for sub, ref in cluster.pools():
            at = ("spec", "clusters", cname) + sub
            provider = spec.providers.get(ref.provider)
            if provider is None:
                known = ", ".join(sorted(spec.providers)) or "none"
                errors.append(Reference(at + ("provider",), f"unknown provider {ref.provider!r} (known: {known})"))
                continue
            key = (ref.provider, ref.pool)
            if key in claimed and claimed[key] != cname:
                errors.append(Reference(
                    at + ("pool",),
                    f"pool {ref.pool!r} of provider {ref.provider!r} is already used by cluster {claimed[key]}"))
            claimed[key] = cname
            if (problem := provider.pool_problem(ref.provider, ref.pool, ref.nodes)) is not None:
                errors.append(Reference(at + problem.path, problem.message))
        errors += [Reference(("spec", "clusters", cname) + p.path, p.message)
                   for p in cluster.problems(cluster_providers(orb, cluster))]
        if cluster.backup_policy() is not None and spec.backup_store is None:
            errors.append(Reference(("spec", "clusters", cname, "backup"),
                                    "backups need a store: add spec.backupStore"
                                    " (e.g. {kind: dir, path: /var/lib/orbiter/backups})"))
    return errors
