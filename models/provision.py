"""Messages of the provider activities: keys, machines, packages."""

from .base import Model
from .desired import Provider
from .machines import Machine
from .refs import SecretsRef


class EnsureKeysInput(Model):
    providers: dict[str, Provider]
    secrets: SecretsRef


class EnsureKeysResult(Model):
    sealed_secrets: dict[str, str] = {}  # newly generated maintenance keys, sealed


class AcquireMachinesInput(Model):
    provider_name: str
    provider: Provider
    pool: str
    machine_ids: list[str]
    secrets: SecretsRef
    host_keys: dict[str, str] = {}  # machine id -> pinned host key, from earlier contact


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


def remote_pins(wanted: dict[str, str]) -> dict[str, str]:
    """Static and GCE machines install from their own mirrors: each wanted version pinned as `<version>*`."""
    return {n: v if v.endswith("*") else f"{v}*" for n, v in wanted.items()}


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
