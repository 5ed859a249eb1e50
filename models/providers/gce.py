"""The GCE provider in desired.yml: instances orbiter creates in a Google Compute Engine project.

Machines are created on demand in the pool's zones (spread over them by slot), labelled with the
orb, cluster and pool so they are found again after any crash, and deleted on release. The
provider can also put a regional TCP load balancer in front of a cluster's API servers.
"""

import ipaddress
import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from orbiter.models.base import Spec
from orbiter.models.names import Name

from .base import Capability, ProviderProblem, ProviderSpec, machine_name

GCE_NAME = r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"  # GCE resource names (zones, regions, networks)
ZONE = r"^[a-z]+-[a-z]+[0-9]+-[a-z]$"  # europe-west6-a
REGION = r"^[a-z]+-[a-z]+[0-9]+$"  # europe-west6
USER = "orbiter"  # the account the ssh-keys metadata creates, with passwordless sudo (GCE's guest agent)
# Where orbiter's SSH may come from unless sshSourceRanges says: a worker inside the VPC or a peered one.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
IMAGES = {  # short names desired.yml may use, as GCE's public image families
    "debian-12": "projects/debian-cloud/global/images/family/debian-12",
    "debian-11": "projects/debian-cloud/global/images/family/debian-11",
    "ubuntu-2204": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts",
    "ubuntu-2404": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
}
ZoneName = Annotated[StrictStr, Field(pattern=ZONE)]


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def instance_name(orb: str, cluster: str, pool: str, index: int) -> str:
    """orbiter's machine name, which GCE takes as an instance name once it starts with a letter."""
    name = machine_name(orb, cluster, pool, index)
    return name if name[0].isalpha() else machine_name("o" + orb, cluster, pool, index)


class GcePool(Spec):
    machine_type: Annotated[StrictStr, Field(pattern=r"^[a-z0-9][-a-z0-9]*$")] = Field(
        "e2-standard-2", alias="machineType")
    disk_gb: Annotated[StrictInt, Field(ge=10, le=65536)] = Field(20, alias="diskGB")
    image: StrictStr = "debian-12"
    preemptible: StrictBool = False
    external_ip: StrictBool = Field(False, alias="externalIP")  # orbiter then reaches the machine there
    zones: list[ZoneName] | None = None  # default: the provider's

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if value not in IMAGES and not value.startswith(("projects/", "https://", "global/")):
            raise ValueError(f"{value!r} is not an image: use {', '.join(IMAGES)} or projects/P/global/images/NAME"
                             " (or .../images/family/FAMILY)")
        return value

    def source_image(self) -> str:
        return IMAGES.get(self.image, self.image)


class GceProvider(ProviderSpec):
    kind: Literal["gce"]
    project: Annotated[StrictStr, Field(pattern=r"^[a-z][-a-z0-9.:]{4,62}[a-z0-9]$")]
    region: Annotated[StrictStr, Field(pattern=REGION)] | None = None  # default: the zones'
    zone: ZoneName | None = None  # one zone, or
    zones: list[ZoneName] | None = None  # several: a pool's machines spread over them
    # A service-account key (JSON) as an encrypted secret; without it, Application Default Credentials.
    credentials_secret: StrictStr | None = Field(None, alias="credentialsSecret")
    network: Annotated[StrictStr, Field(pattern=GCE_NAME)] = "default"
    subnetwork: Annotated[StrictStr, Field(pattern=GCE_NAME)] | None = None
    endpoint: Annotated[StrictStr, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")] | None = None  # Compute API
    ssh_source_ranges: list[StrictStr] = Field(list(PRIVATE_RANGES), alias="sshSourceRanges")
    pools: dict[Name, GcePool] = {}

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset({"creates-machines", "kernel-modules", "load-balancer"})
    RUNTIME: ClassVar[str] = "orbiter.activities.providers.gce:GceRuntime"

    @field_validator("ssh_source_ranges")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.IPv4Network(cidr, strict=True)
            except ValueError as err:
                raise ValueError(f"{cidr!r} is not an IPv4 network like 10.0.0.0/8 ({err})") from None
        return value

    @model_validator(mode="after")
    def _zones(self) -> "GceProvider":
        if (self.zone is None) == (self.zones is None):
            raise ValueError("zones: give zone (one) or zones (a list), not both")
        if self.zones is not None and (not self.zones or len(set(self.zones)) != len(self.zones)):
            raise ValueError("zones: list one zone or more, each once")
        return self

    def all_zones(self) -> list[str]:
        return [self.zone] if self.zone else list(self.zones or [])

    def pool_zones(self, pool: str) -> list[str]:
        spec = self.pools.get(pool)
        return list(spec.zones) if spec is not None and spec.zones else self.all_zones()

    def zone_of(self, pool: str, machine_id: str) -> str:
        """The zone a new machine of a pool goes to: its slot (the name's last number) round the zones."""
        zones = self.pool_zones(pool)
        match = re.search(r"-(\d+)$", machine_id)
        return zones[int(match.group(1)) % len(zones) if match else 0]

    def region_name(self) -> str:
        return self.region or region_of(self.all_zones()[0])

    def problems(self, name: str, earlier: dict[str, ProviderSpec]) -> list[ProviderProblem]:
        out = []
        region = self.region_name()
        for at, zones in [(("zones",), self.all_zones())] + [
                (("pools", p, "zones"), s.zones or []) for p, s in self.pools.items()]:
            for zone in zones:
                if region_of(zone) != region:
                    out.append(ProviderProblem(at, f"zone {zone} is not in region {region}: the load balancer"
                                               " and addresses of a provider live in one region"))
        return out

    def machine_ids(self, orb: str, cluster: str, pool: str, used: set[str], count: int) -> list[str]:
        out: list[str] = []
        index = 0
        while len(out) < count:
            if (name := instance_name(orb, cluster, pool, index)) not in used:
                out.append(name)
            index += 1
        return out

    def pool_problem(self, name: str, pool: str, nodes: int) -> ProviderProblem | None:
        if pool not in self.pools:
            known = ", ".join(sorted(self.pools)) or "none"
            return ProviderProblem(("pool",), f"provider {name!r} has no pool {pool!r} (pools: {known})")
        return None


MODEL = GceProvider
