"""The static provider in desired.yml: machines that exist already, listed by pool, reached over SSH."""

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictStr, field_validator

from orbiter.models.base import Spec
from orbiter.models.names import Name, ipv4

from .base import Capability, ProviderProblem, ProviderSpec, default_secret_names


class StaticMachine(Spec):
    id: Name
    ip: StrictStr
    hostname: StrictStr | None = None

    _ip = field_validator("ip")(ipv4)


class StaticProvider(ProviderSpec):
    kind: Literal["static"]
    remote_user: Name = Field("root", alias="remoteUser")
    bootstrap_key_secret: StrictStr | None = Field(None, alias="bootstrapKeySecret")
    pools: dict[Name, Annotated[list[StaticMachine], Field()]] = {}

    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset({"vip", "kernel-modules"})
    RUNTIME: ClassVar[str] = "orbiter.activities.providers.static:StaticRuntime"

    def problems(self, name: str, earlier: dict[str, ProviderSpec]) -> list[ProviderProblem]:
        out: list[ProviderProblem] = []
        ids: set[str] = set()
        seen_ips = {m.ip for spec in earlier.values() if isinstance(spec, StaticProvider)
                    for machines in spec.pools.values() for m in machines}
        for pool, machines in self.pools.items():
            for i, machine in enumerate(machines):
                at = ("pools", pool, i)
                if machine.id in ids:
                    out.append(ProviderProblem(at + ("id",), f"duplicate machine id {machine.id!r} in provider {name}"))
                ids.add(machine.id)
                if machine.ip in seen_ips:
                    out.append(ProviderProblem(at + ("ip",), f"IP {machine.ip} is already used by another machine"))
                seen_ips.add(machine.ip)
        return out

    def pool_problem(self, name: str, pool: str, nodes: int) -> ProviderProblem | None:
        if pool not in self.pools:
            known = ", ".join(sorted(self.pools)) or "none"
            return ProviderProblem(("pool",), f"provider {name!r} has no pool {pool!r} (pools: {known})")
        if len(self.pools[pool]) < nodes:
            have = len(self.pools[pool])
            return ProviderProblem(("nodes",),
                                   f"wants {nodes} machines but pool {pool!r} of provider {name!r} lists {have}")
        return None

    def machine_ids(self, orb: str, cluster: str, pool: str, used: set[str], count: int) -> list[str]:
        return [m.id for m in self.pools.get(pool, []) if m.id not in used][:count]

    def machine(self, pool: str, machine_id: str) -> StaticMachine | None:
        return next((m for m in self.pools.get(pool, []) if m.id == machine_id), None)

    def vip_peers(self, pool: str, machine_id: str) -> list[str]:
        # A fixed list: adding a control plane changes no config, so keepalived restarts nowhere.
        return [m.ip for m in self.pools.get(pool, []) if m.id != machine_id]

    def bootstrap_key_secret_name(self, name: str) -> str | None:
        return self.bootstrap_key_secret or default_secret_names(name)["bootstrap"]


MODEL = StaticProvider
