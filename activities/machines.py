"""Provider activities: a workflow asks for machines and never knows which provider made them.

Each activity finds the provider's runtime from its desired.yml model and calls it; failures leave
as one-line ApplicationErrors whose type tells the workflow's retry policy what to do.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.models.machines import Machine
from orbiter.models.provision import (
    AcquireMachinesInput,
    AcquireMachinesResult,
    BootIdInput,
    BootIdResult,
    EnsureKeysInput,
    EnsureKeysResult,
    FindMachinesInput,
    FindMachinesResult,
    PreparePackagesInput,
    PreparePackagesResult,
    RebootMachineInput,
    ReleaseMachineInput,
)
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretsError, parse_secrets_file, seal
from orbiter.worker.masterkey import load_master_key

from .progress import heartbeat, heartbeating
from .providers import ProviderError, runtime_for
from .providers.base import Claim
from .repo import read_file
from .secretstore import resolve_secret
from .ssh import SshError, Unreachable, connect, forget, generate_ed25519

BOOT_ID = "cat /proc/sys/kernel/random/boot_id"
REBOOT_TIMEOUT = 600.0


@contextmanager
def _as_application_errors() -> Iterator[None]:
    """One mapping of provider failures to Temporal errors for every provider activity: auth and
    host key problems need an operator; an unreachable machine or a busy host is retried."""
    try:
        yield
    except SshError as err:
        raise ApplicationError(str(err).splitlines()[0], type=type(err).__name__,
                               non_retryable=not isinstance(err, Unreachable)) from None
    except ProviderError as err:
        raise ApplicationError(str(err).splitlines()[0], type=type(err).__name__,
                               non_retryable=not err.retryable) from None
    except SecretsError as err:
        raise ApplicationError(str(err), type="SecretsError", non_retryable=True) from None


def _has_secret(ref: SecretsRef, name: str, text: str | None) -> bool:
    existing = parse_secrets_file(text)
    return name in ref.extra or (existing is not None and name in existing.secrets)


@activity.defn
def ensure_provider_keys(input: EnsureKeysInput) -> EnsureKeysResult:
    """Generate each provider's maintenance key once; idempotent through the secrets it checks."""
    text = read_file(input.secrets.repo, input.secrets.commit, "secrets.yml")
    sealed: dict[str, str] = {}
    master = load_master_key()
    for name, provider in sorted(input.providers.items()):
        private_name, public_name = provider.maintenance_key_secret(name), provider.maintenance_pub_secret(name)
        if _has_secret(input.secrets, private_name, text):
            continue
        private, public = generate_ed25519()
        sealed[private_name] = seal(master, private_name, private.encode())
        sealed[public_name] = seal(master, public_name, public.encode())
    return EnsureKeysResult(sealed_secrets=sealed)


@activity.defn
def acquire_machines(input: AcquireMachinesInput) -> AcquireMachinesResult:
    """Machines for a pool: created or taken into use by the provider. Idempotent by machine id."""
    with _as_application_errors(), heartbeating() as progress:
        runtime = runtime_for(input.provider_name, input.provider, input.secrets)
        return AcquireMachinesResult(machines=runtime.acquire(input, progress))


@activity.defn
def find_machines(input: FindMachinesInput) -> FindMachinesResult:
    """A cluster's machines its provider already holds, claimed for the cluster as they are found."""
    with _as_application_errors():
        runtime = runtime_for(input.provider_name, input.provider, input.secrets)
        claim = Claim(input.orb, input.cluster, input.kind)
        return FindMachinesResult(machine_ids=runtime.find(claim, input.pool))


@activity.defn
def release_machine(input: ReleaseMachineInput) -> None:
    """Take a machine out of use: deleted, or what orbiter put on it undone (the provider knows)."""
    with _as_application_errors():
        runtime_for(input.provider_name, input.provider, input.secrets).release(input)


@activity.defn
def prepare_packages(input: PreparePackagesInput) -> PreparePackagesResult:
    """Exact apt versions for the wanted upstream versions; a provider that serves packages serves them."""
    try:
        with _as_application_errors(), heartbeating() as progress:
            return runtime_for(input.provider_name, input.provider).prepare_packages(input.packages, progress)
    except ApplicationError:
        raise
    except Exception as err:  # noqa: BLE001 - one line for the cluster's status
        raise ApplicationError(f"provider {input.provider_name}: packages: {str(err).splitlines()[0]}",
                               type="PackagesError") from None


def _boot_id(machine: Machine, key: str) -> str | None:
    """The machine's current boot id, or None while it does not answer."""
    try:
        with connect(machine, key, timeout=5) as session:
            return session.run(BOOT_ID, check=True).stdout.strip()
    except Unreachable:
        return None


@activity.defn
def machine_boot_id(input: BootIdInput) -> BootIdResult:
    with _as_application_errors():
        key = resolve_secret(input.secrets, input.machine.key_secret).decode()
        boot = _boot_id(input.machine, key)
        if boot is None:
            raise Unreachable(f"machine {input.machine.id} ({input.machine.ip}) does not answer on SSH")
        return BootIdResult(boot_id=boot)


@activity.defn
def reboot_machine(input: RebootMachineInput) -> None:
    """Reboot through the provider and wait until SSH answers from a new boot.

    Idempotent: the reboot only happens while the machine still runs the boot the caller saw.
    """
    machine = input.machine
    with _as_application_errors():
        key = resolve_secret(input.secrets, machine.key_secret).decode()
        if _boot_id(machine, key) == input.boot_id:
            forget(machine)
            runtime_for(input.provider_name, input.provider, input.secrets).reboot(machine, key)
        deadline = time.monotonic() + REBOOT_TIMEOUT
        while True:
            heartbeat(f"waiting for {machine.id} to boot")
            boot = _boot_id(machine, key)
            if boot is not None and boot != input.boot_id:
                return
            if time.monotonic() > deadline:
                raise Unreachable(f"machine {machine.id} did not come back within {REBOOT_TIMEOUT:.0f}s of a reboot")
            time.sleep(1)


ACTIVITIES = [ensure_provider_keys, acquire_machines, find_machines, release_machine, prepare_packages,
              machine_boot_id, reboot_machine]
