"""The GCE provider in desired.yml: instances in a Google Compute Engine project (creation to come)."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from orbiter.models.base import Spec
from orbiter.models.names import Name

from .base import Capability, ProviderProblem, ProviderSpec


class GcePool(Spec):
    machine_type: StrictStr = Field("e2-standard-2", alias="machineType")
    disk_gb: Annotated[StrictInt, Field(ge=10, le=65536)] = Field(20, alias="diskGB")
    image: StrictStr = "debian-12"
    preemptible: StrictBool = False


class GceProvider(ProviderSpec):
    kind: Literal["gce"]
    project: StrictStr
    zone: StrictStr
    credentials_secret: StrictStr = Field(alias="credentialsSecret")
    pools: dict[Name, GcePool] = {}

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset({"creates-machines", "kernel-modules"})
    RUNTIME: ClassVar[str] = "orbiter.activities.providers.gce:GceRuntime"

    def pool_problem(self, name: str, pool: str, nodes: int) -> ProviderProblem | None:
        if pool not in self.pools:
            known = ", ".join(sorted(self.pools)) or "none"
            return ProviderProblem(("pool",), f"provider {name!r} has no pool {pool!r} (pools: {known})")
        return None


MODEL = GceProvider
