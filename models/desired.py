"""desired.yml: the operator's description of an orb (providers and clusters).

Strict on purpose: the original Orbiter ignored unknown fields and its own examples drifted from
the code unnoticed. Unknown fields, wrong types and dangling references are all errors.
"""

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from .base import Spec
from .duration import Duration as _Duration


def _needs_unit(value: object) -> object:
    # YAML reads `30` as a number; "must be a string" would not tell the operator what to write.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{value} has no unit: write a duration like {value}s"
                         " (units: ms, s, m, h)")
    return value


Duration = Annotated[_Duration, BeforeValidator(_needs_unit)]

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN)]
DEFAULT_LOCAL_SUBNET = "10.77.0.0/24"


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    return value


class StaticMachine(Spec):
    id: Name
    ip: StrictStr
    hostname: StrictStr | None = None

    _ip = field_validator("ip")(_ipv4)


class LocalProvider(Spec):
    kind: Literal["local"]
    subnet: StrictStr = DEFAULT_LOCAL_SUBNET
    image: Literal["debian-12"] = "debian-12"

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            raise ValueError(
                f"{value!r} is not an IPv4 network like 10.77.0.0/24 ({err})") from None
        if net.prefixlen > 28:
            raise ValueError(f"{value} is too small: use a /28 or larger")
        return value


class StaticProvider(Spec):
    kind: Literal["static"]
    remote_user: Name = Field("root", alias="remoteUser")
    bootstrap_key_secret: StrictStr | None = Field(None, alias="bootstrapKeySecret")
    pools: dict[Name, list[StaticMachine]] = {}


class GcePool(Spec):
    machine_type: StrictStr = Field("e2-standard-2", alias="machineType")
    disk_gb: Annotated[StrictInt, Field(ge=10, le=65536)] = Field(20, alias="diskGB")
    image: StrictStr = "debian-12"
    preemptible: StrictBool = False


class GceProvider(Spec):
    kind: Literal["gce"]
    project: StrictStr
    zone: StrictStr
    credentials_secret: StrictStr = Field(alias="credentialsSecret")
    pools: dict[Name, GcePool] = {}


Provider = Annotated[LocalProvider | StaticProvider | GceProvider, Field(discriminator="kind")]


class PoolRef(Spec):
    provider: Name
    pool: Name
    nodes: Annotated[StrictInt, Field(ge=0, le=100)]


class ClusterBase(Spec):
    paused: StrictBool = False
    destroyed: StrictBool = False


class EtcdMembers(PoolRef):
    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: int) -> int:
        if not 1 <= value <= 9:
            raise ValueError("must be between 1 and 9")
        return value


class ControlPlaneRef(PoolRef):
    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: int) -> int:
        if value not in (1, 3, 5):
            raise ValueError("must be 1, 3 or 5")
        return value


class EtcdFlags(Spec):
    """etcd settings orbiter rolls out one member at a time; unset ones keep etcd's defaults."""

    heartbeat_interval: Annotated[StrictInt, Field(ge=10, le=5000)] | None = Field(None, alias="heartbeatInterval")
    election_timeout: Annotated[StrictInt, Field(ge=50, le=50000)] | None = Field(None, alias="electionTimeout")
    snapshot_count: Annotated[StrictInt, Field(ge=1)] | None = Field(None, alias="snapshotCount")
    quota_backend_bytes: Annotated[StrictInt, Field(ge=0)] | None = Field(None, alias="quotaBackendBytes")
    auto_compaction_retention: StrictStr | None = Field(None, alias="autoCompactionRetention")


class EtcdCluster(ClusterBase):
    kind: Literal["etcd"]
    version: Annotated[StrictStr, Field(pattern=r"^\d+\.\d+\.\d+$")]
    members: EtcdMembers
    tls: StrictBool = True
    flags: EtcdFlags = EtcdFlags()


class Networking(Spec):
    network: Literal["calico", "cilium"] = "calico"
    pod_cidr: StrictStr = Field("10.244.0.0/16", alias="podCidr")
    service_cidr: StrictStr = Field("10.96.0.0/12", alias="serviceCidr")
    dns_domain: StrictStr = Field("cluster.local", alias="dnsDomain")

    @field_validator("pod_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            raise ValueError(f"{value!r} is not a network like 10.96.0.0/12 ({err})") from None
        return value


class Upgrade(Spec):
    max_unavailable: Annotated[StrictInt, Field(ge=1)] = Field(1, alias="maxUnavailable")
    drain_timeout: Duration = Field("5m", alias="drainTimeout")


class ControlPlaneEndpoint(Spec):
    vip: StrictStr | None = None
    host: StrictStr | None = None
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 6443

    @model_validator(mode="after")
    def _one_of(self) -> "ControlPlaneEndpoint":
        if (self.vip is None) == (self.host is None):
            raise ValueError(
                "give either vip (keepalived on the control planes) or host (a load balancer)")
        if self.vip is not None:
            _ipv4(self.vip)
        return self


class Packages(Spec):
    repository: StrictStr | None = None  # default: pkgs.k8s.io for the version's minor
    container_runtime: Literal["containerd"] = Field("containerd", alias="containerRuntime")


class Cni(Spec):
    manifest: StrictStr | None = None


class KubernetesCluster(ClusterBase):
    kind: Literal["kubernetes"]
    version: Annotated[StrictStr, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    control_plane: ControlPlaneRef = Field(alias="controlPlane")
    workers: dict[Name, PoolRef] = {}
    networking: Networking = Networking()
    upgrade: Upgrade = Upgrade()
    control_plane_endpoint: ControlPlaneEndpoint | None = Field(None, alias="controlPlaneEndpoint")
    packages: Packages = Packages()
    cni: Cni = Cni()

    @model_validator(mode="after")
    def _endpoint(self) -> "KubernetesCluster":
        if self.control_plane.nodes > 1 and self.control_plane_endpoint is None:
            # "field: message" lets load.py name the missing field instead of the whole cluster.
            raise ValueError(
                f"controlPlaneEndpoint: required with {self.control_plane.nodes} control planes:"
                " add {vip: IP} (keepalived) or {host: NAME, port: 6443} (a load balancer)"
            )
        return self


Cluster = Annotated[EtcdCluster | KubernetesCluster, Field(discriminator="kind")]


class OrbSpec(Spec):
    poll_interval: Duration = Field("30s", alias="pollInterval")
    drift_interval: Duration = Field("10m", alias="driftInterval")
    max_parallel: Annotated[StrictInt, Field(ge=1, le=256)] = Field(10, alias="maxParallel")
    providers: dict[Name, Provider] = {}
    clusters: dict[Name, Cluster] = {}


class Metadata(Spec):
    name: Name


class Orb(Spec):
    api_version: Literal["orbiter.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["Orb"]
    metadata: Metadata
    spec: OrbSpec


class Reference(Exception):
    """A cross-reference error, located by its field path."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def pool_refs(cluster: EtcdCluster | KubernetesCluster) -> list[tuple[tuple[str, ...], PoolRef]]:
    if isinstance(cluster, EtcdCluster):
        return [(("members",), cluster.members)]
    refs = [(("controlPlane",), cluster.control_plane)]
    refs += [(("workers", group), ref) for group, ref in cluster.workers.items()]
    return refs


def check_references(orb: Orb) -> list[Reference]:
    """Errors a schema cannot see: unknown providers and pools, too few static machines, clashes."""
    errors: list[Reference] = []
    spec = orb.spec
    subnets: dict[str, str] = {}
    seen_ips: dict[str, tuple[str | int, ...]] = {}
    for pname, provider in spec.providers.items():
        base: tuple[str | int, ...] = ("spec", "providers", pname)
        if isinstance(provider, LocalProvider):
            net = ipaddress.IPv4Network(provider.subnet)
            for other, other_net in subnets.items():
                if net.overlaps(ipaddress.IPv4Network(other_net)):
                    errors.append(Reference(base + ("subnet",),
                                            f"overlaps the subnet of provider {other}"))
            subnets[pname] = provider.subnet
        if isinstance(provider, StaticProvider):
            ids: set[str] = set()
            for pool, machines in provider.pools.items():
                for i, machine in enumerate(machines):
                    at = base + ("pools", pool, i)
                    if machine.id in ids:
                        errors.append(Reference(
                            at + ("id",),
                            f"duplicate machine id {machine.id!r} in provider {pname}"))
                    ids.add(machine.id)
                    if machine.ip in seen_ips:
                        errors.append(Reference(
                            at + ("ip",), f"IP {machine.ip} is already used by another machine"))
                    seen_ips[machine.ip] = at
    claimed: dict[tuple[str, str], str] = {}
    for cname, cluster in spec.clusters.items():
        for sub, ref in pool_refs(cluster):
            at = ("spec", "clusters", cname) + sub
            provider = spec.providers.get(ref.provider)
            if provider is None:
                known = ", ".join(sorted(spec.providers)) or "none"
                errors.append(Reference(
                    at + ("provider",), f"unknown provider {ref.provider!r} (known: {known})"))
                continue
            key = (ref.provider, ref.pool)
            if key in claimed and claimed[key] != cname:
                errors.append(Reference(
                    at + ("pool",),
                    f"pool {ref.pool!r} of provider {ref.provider!r} is already used by cluster"
                    f" {claimed[key]}"))
            claimed[key] = cname
            pooled = isinstance(provider, (StaticProvider, GceProvider))
            if pooled and ref.pool not in provider.pools:
                known = ", ".join(sorted(provider.pools)) or "none"
                errors.append(Reference(
                    at + ("pool",),
                    f"provider {ref.provider!r} has no pool {ref.pool!r} (pools: {known})"))
            elif isinstance(provider, StaticProvider) and len(provider.pools[ref.pool]) < ref.nodes:
                have = len(provider.pools[ref.pool])
                errors.append(Reference(
                    at + ("nodes",),
                    f"wants {ref.nodes} machines but pool {ref.pool!r} of provider"
                    f" {ref.provider!r} lists {have}"))
        endpoint = getattr(cluster, "control_plane_endpoint", None)
        if isinstance(cluster, KubernetesCluster) and endpoint and endpoint.vip:
            provider = spec.providers.get(cluster.control_plane.provider)
            if isinstance(provider, GceProvider):
                errors.append(Reference(
                    ("spec", "clusters", cname, "controlPlaneEndpoint", "vip"),
                    "a keepalived VIP works on static and local providers only;"
                    " use host for a GCE load balancer"))
    return errors


def default_secret_names(provider_name: str) -> dict[str, str]:
    return {
        "bootstrap": f"{provider_name}_bootstrapkey",
        "maintenance": f"{provider_name}_maintenancekey",
        "maintenance_pub": f"{provider_name}_maintenancekey_pub",
    }


def machine_name(cluster: str, pool: str, index: int) -> str:
    """Names of machines orbiter creates; stable, so creating again finds the same machine."""
    return re.sub(r"[^a-z0-9-]", "-", f"{cluster}-{pool}-{index}")
