"""The local provider at run time: machines created on this host, packages served to them."""

import contextlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orbiter.activities.secretstore import resolve_secret
from orbiter.activities.ssh import pooled
from orbiter.models.machines import Machine
from orbiter.models.providers.local import LocalProvider
from orbiter.models.provision import AcquireMachinesInput, PreparePackagesResult, ReleaseMachineInput
from orbiter.models.updatecheck import OfferedVersions

from ..base import Claim, Progress, ProviderRuntime, claim_machine
from .aptrepo import AptRepo
from .machines import LocalMachines, LocalProviderError
from .packages import resolve_host_versions, served_versions, version_key
from .paths import state_dir


class LocalRuntime(ProviderRuntime):
    spec: LocalProvider

    @property
    def machines(self) -> LocalMachines:
        return LocalMachines(self.name, subnet=self.spec.subnet, image=self.spec.image)

    def acquire(self, input: AcquireMachinesInput, progress: Progress) -> list[Machine]:
        public = resolve_secret(input.secrets, self.spec.maintenance_pub_secret(self.name)).decode()
        key_secret = self.spec.maintenance_key_secret(self.name)
        maintenance = resolve_secret(input.secrets, key_secret).decode()
        claim = Claim(input.orb, input.cluster, input.kind)
        created = self.machines.create(input.pool, input.machine_ids, public, key_secret, progress, claim=claim)

        def pin(machine: Machine) -> Machine:
            # A machine seen before keeps its pinned host key; a new one is pinned on first contact.
            machine = machine.model_copy(update={"host_key": input.host_keys.get(machine.id)})
            with pooled(machine, maintenance) as session:
                claim_machine(session, machine, claim)  # also on a machine from before claims
                return machine.model_copy(update={"host_key": session.host_key})

        with ThreadPoolExecutor(max_workers=min(16, len(created) or 1)) as pool:
            return list(pool.map(pin, created))

    def find(self, claim: Claim, pool: str) -> list[str]:
        return self.machines.find(claim, pool)

    def release(self, input: ReleaseMachineInput) -> None:
        self.machines.delete(input.machine.id)

    def reboot(self, machine: Machine, key: str) -> None:
        # The container stops and boots again on the same disk and address.
        self.machines.reboot(machine.id)

    def prepare_packages(self, wanted: dict[str, str], progress: Progress) -> PreparePackagesResult:
        """Local machines have no internet: the host downloads the packages and serves them."""
        repo = AptRepo(self.machines)
        # Packages the repo already serves at the wanted version (e.g. built locally and added to it)
        # are taken as they are; the rest come from the host's apt.
        versions = served_versions(repo.served_versions(), wanted)
        versions |= resolve_host_versions({n: v for n, v in wanted.items() if n not in versions})
        repo.ensure_packages(sorted(versions.items()), progress)
        repo.ensure_served()
        return PreparePackagesResult(versions=versions, apt_source=repo.source_line())

    def offered_versions(self, package: str, machines: list[Machine], key: Callable[[Machine], str]) -> OfferedVersions:
        """What the served repository holds: local machines install only from it, no SSH needed."""
        repo = AptRepo(self.machines)
        versions = sorted(repo.served_versions().get(package, set()), key=version_key, reverse=True)
        return OfferedVersions(versions=versions, source=f"provider {self.name}'s package repository")

    @classmethod
    def host_machines(cls) -> list[dict[str, str]]:
        return list_all_local_machines()

    @classmethod
    def delete_host_machine(cls, provider: str, machine_id: str) -> None:
        for machines in all_providers():
            if machines.name == provider:
                machines.delete(machine_id)
                return
        raise LocalProviderError(f"no local provider {provider} on this host")

    @classmethod
    def clean_host(cls) -> None:
        for machines in all_providers():
            with contextlib.suppress(LocalProviderError):
                machines.destroy_network()


# -- every local machine on this host (`orbiter machines`, no repository needed) --------------------


def all_providers(state: Path | None = None) -> list[LocalMachines]:
    """Every local provider that has state under state_dir()/local."""
    root = (state or state_dir()) / "local"
    out = []
    for cfg in sorted(root.glob("*/provider.json")):
        data = json.loads(cfg.read_text())
        out.append(LocalMachines(data["name"], data["subnet"], data["image"], state=state))
    return out


def list_all_local_machines(state: Path | None = None) -> list[dict[str, Any]]:
    """For `orbiter machines ls`: provider, id, pool, ip, state of every local machine."""
    return [
        {"provider": p.name, **row} for p in all_providers(state) for row in p.list_status()
    ]


def gc(owned: set[tuple[str, str]], state: Path | None = None) -> list[str]:
    """Delete local machines whose (provider, id) is not owned; return "provider/id" removed."""
    removed = []
    for p in all_providers(state):
        for mid in p._ids():
            if (p.name, mid) not in owned:
                p.delete(mid)
                removed.append(f"{p.name}/{mid}")
    return removed
