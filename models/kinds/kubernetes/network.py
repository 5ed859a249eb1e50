"""Messages of the network activities (activities/network.py): what a machine's network looks like."""

from pydantic import Field

from orbiter.models.base import Model
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef


class NetworkFactsInput(Model):
    cluster: str  # named in errors only
    machines: list[Machine]
    secrets: SecretsRef


class InterfaceFact(Model):
    """The interface that carries a machine's IP, e.g. where keepalived puts a VIP beside it."""

    interface: str  # e.g. "eth0", "ens4", "host0" (local machines)
    prefix: int = Field(ge=0, le=128)  # the prefix length of the machine's IP on that interface


class NetworkFactsResult(Model):
    interfaces: dict[str, InterfaceFact]  # machine id -> its interface
