"""The local provider in desired.yml: Debian machines booted on the worker's host (systemd-nspawn)."""

import ipaddress
from typing import ClassVar, Literal

from pydantic import StrictStr, field_validator

from .base import Capability, ProviderProblem, ProviderSpec

DEFAULT_LOCAL_SUBNET = "10.77.0.0/24"


class LocalProvider(ProviderSpec):
    kind: Literal["local"]
    subnet: StrictStr = DEFAULT_LOCAL_SUBNET
    image: Literal["debian-12"] = "debian-12"

    # Containers share the host's kernel: they cannot load modules (the host has to).
    CAPABILITIES: ClassVar[frozenset[Capability]] = frozenset({"creates-machines", "serves-packages", "vip"})
    RUNTIME: ClassVar[str] = "orbiter.activities.providers.local.runtime:LocalRuntime"

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            raise ValueError(f"{value!r} is not an IPv4 network like 10.77.0.0/24 ({err})") from None
        if net.prefixlen > 28:
            raise ValueError(f"{value} is too small: use a /28 or larger")
        return value

    def problems(self, name: str, earlier: dict[str, ProviderSpec]) -> list[ProviderProblem]:
        net = ipaddress.IPv4Network(self.subnet)
        return [
            ProviderProblem(("subnet",), f"overlaps the subnet of provider {other}")
            for other, spec in earlier.items()
            if isinstance(spec, LocalProvider) and net.overlaps(ipaddress.IPv4Network(spec.subnet))
        ]


MODEL = LocalProvider
