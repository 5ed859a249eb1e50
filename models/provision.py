"""Messages of the provider activities: keys, machines, packages."""

from .base import Model
from .kinds.base import PortRule
from .machines import Machine
from .providers import Provider
from .refs import SecretsRef


class EnsureKeysInput(Model):
    providers: dict[str, Provider]
    secrets: SecretsRef


class EnsureKeysResult(Model):
    sealed_secrets: dict[str, str] = {}  # newly generated maintenance keys, sealed


class AcquireMachinesInput(Model):
    orb: str  # who claims the machines
    cluster: str
    kind: str
    provider_name: str
    provider: Provider
    pool: str
    machine_ids: list[str]
    secrets: SecretsRef
    host_keys: dict[str, str] = {}  # machine id -> pinned host key, from earlier contact
    ports: list[PortRule] = []  # what the cluster's members send each other (providers with firewalls)


class AcquireMachinesResult(Model):
    machines: list[Machine]


class ReleaseMachineInput(Model):
    provider_name: str
    provider: Provider
    machine: Machine
    secrets: SecretsRef
    # What orbiter put on the machine, undone on static machines (which are not ours to delete).
    units: list[str] = []
    files: list[str] = []
    packages: list[str] = []
    data_dirs: list[str] = []


class PreparePackagesInput(Model):
    provider_name: str
    provider: Provider
    packages: dict[str, str]  # name -> wanted version (upstream, e.g. "3.4.23")


class PreparePackagesResult(Model):
    versions: dict[str, str]  # name -> exact apt version to install
    apt_source: str | None = None  # the line machines of this provider install from


class RebootMachineInput(Model):
    provider_name: str
    provider: Provider
    machine: Machine
    secrets: SecretsRef
    boot_id: str  # the boot the reboot ends: a retry that finds another boot id is done already


class BootIdInput(Model):
    machine: Machine
    secrets: SecretsRef


class BootIdResult(Model):
    boot_id: str


class FindMachinesInput(Model):
    """A cluster's machines a provider already has (a workflow that starts afresh finds them)."""

    orb: str
    cluster: str
    kind: str
    provider_name: str
    provider: Provider
    pool: str
    secrets: SecretsRef | None = None  # for providers that ask an API (credentials)


class FindMachinesResult(Model):
    machine_ids: list[str]
