"""What every provider does at run time (in activities); its desired.yml model says what it can.

A runtime is made per activity call from the provider's name and model; it keeps nothing between
calls, so any call can be retried after a crash at any line and gives the same machines.
"""

import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from orbiter.activities.ssh import SshSession, Unreachable, connect
from orbiter.models.claims import CLAIM_FILE, claim_conflict, claim_text
from orbiter.models.loadbalancers import LoadBalancerInput, LoadBalancerMembersInput, LoadBalancerMembersResult
from orbiter.models.machines import Machine
from orbiter.models.providers import ProviderSpec
from orbiter.models.provision import AcquireMachinesInput, PreparePackagesResult, ReleaseMachineInput
from orbiter.models.refs import SecretsRef
from orbiter.models.updatecheck import OfferedVersions

Progress = Callable[[str], None]
SecretReader = Callable[[str], bytes]  # a secret's value by name (activities: from the repo at a commit)


class ProviderError(Exception):
    """A provider operation failed; the message is one clear line. `retryable`: a later attempt
    may succeed (a busy host), else an operator must act (no root, a bad pool)."""

    retryable = True


class MachineClaimed(ProviderError):
    retryable = False


@dataclass(frozen=True)
class Claim:
    orb: str
    cluster: str
    kind: str

    @property
    def text(self) -> str:
        return claim_text(self.orb, self.cluster, self.kind)


def claim_machine(session: SshSession, machine: Machine, claim: Claim | None) -> None:
    """Refuse a machine another orb claimed; claim it for this orb and cluster if no orb has (the
    node agent then finds its claim as it wants it). One command, on a session already open."""
    if claim is None:
        return
    path = shlex.quote(CLAIM_FILE)
    found = session.run(
        f"if [ -f {path} ]; then cat {path}; else umask 077 && mkdir -p {shlex.quote(CLAIM_FILE.rsplit('/', 1)[0])}"
        f" && printf %s {shlex.quote(claim.text)} > {path}; fi", check=True).stdout
    if conflict := claim_conflict(machine.id, machine.provider, claim.orb, claim.cluster, found):
        raise MachineClaimed(conflict)
    if found and found != claim.text:
        session.run(f"umask 077 && printf %s {shlex.quote(claim.text)} > {path}", check=True)


class NoLoadBalancer(ProviderError):
    retryable = False


class ProviderRuntime(ABC):
    def __init__(self, name: str, spec: ProviderSpec, secrets: SecretsRef | None = None) -> None:
        self.name = name
        self.spec = spec
        # Where calls without a secrets field of their own (find, reboot) read credentials.
        self.secrets = secrets

    @abstractmethod
    def acquire(self, input: AcquireMachinesInput, progress: Progress) -> list[Machine]:
        """Machines for a pool by id: created, or taken into use; the same ones on a retry.
        Each comes back reachable with the maintenance key and its host key pinned."""

    @abstractmethod
    def release(self, input: ReleaseMachineInput) -> None:
        """Take a machine out of use: deleted, or what orbiter put on it undone. Idempotent."""

    def find(self, claim: Claim, pool: str) -> list[str]:
        """Ids of machines this provider already holds for a cluster (for a workflow that starts
        afresh, e.g. after an upgrade of orbiter); providers that list their machines find none."""
        return []

    def reboot(self, machine: Machine, key: str) -> None:
        """Start a reboot; the caller waits for the new boot. Detached, so the command returns
        before the machine goes down."""
        with connect(machine, key) as session:
            session.run("systemd-run --on-active=1 --timer-property=AccuracySec=100ms systemctl reboot", check=True)

    def prepare_packages(self, wanted: dict[str, str], progress: Progress) -> PreparePackagesResult:
        """Exact apt versions for wanted upstream versions; machines install from their own mirrors."""
        return PreparePackagesResult(versions=self.spec.package_pins(wanted))

    # -- load balancers (capability "load-balancer"): found again by the names they derive -------
    def ensure_load_balancer(self, input: LoadBalancerInput, progress: Progress) -> str:
        """Create what is missing of a TCP load balancer, in dependency order; its address."""
        raise NoLoadBalancer(f"provider {self.name} creates no load balancer")

    def set_load_balancer_members(self, input: LoadBalancerMembersInput, progress: Progress
                                  ) -> LoadBalancerMembersResult:
        """Forward to exactly these machines: add the missing, remove the others."""
        raise NoLoadBalancer(f"provider {self.name} creates no load balancer")

    def remove_load_balancer(self, input: LoadBalancerInput, progress: Progress) -> None:
        """Delete it in reverse dependency order; what is gone already counts as removed."""
        raise NoLoadBalancer(f"provider {self.name} creates no load balancer")

    # -- machines an orb's providers hold elsewhere (`orbiter machines ls --repo-dir`) ------------
    def orb_machines(self, orb: str, secret: SecretReader) -> list[dict[str, str]]:
        """Machines this provider holds for an orb outside this host: provider, id, zone, ip, state,
        orb, cluster, pool. Providers that keep machines on the host list them in host_machines."""
        return []

    def offered_versions(self, package: str, machines: list[Machine], key: Callable[[Machine], str]) -> OfferedVersions:
        """The versions of `package` the machines' own apt offers (the update check): one SSH round
        trip to the first machine that answers, its package lists fetched first as unattended-upgrades
        would. Providers that serve packages answer from what they serve."""
        for machine in machines:
            command = f"apt-get update -qq >/dev/null 2>&1 || true; apt-cache madison {shlex.quote(package)}"
            try:
                with connect(machine, key(machine)) as session:
                    out = session.run(command, timeout=300)
            except Unreachable:
                continue
            versions = [line.split("|")[1].strip() for line in out.stdout.splitlines() if line.count("|") >= 2]
            return OfferedVersions(versions=versions, source=f"apt on {machine.id}")
        raise ProviderError(f"provider {self.name}: no machine answered to list the versions of {package}"
                            f" ({', '.join(m.id for m in machines) or 'the cluster has none yet'})")

    # -- machines kept on this host (`orbiter machines`): providers that keep none list none ------
    @classmethod
    def host_machines(cls) -> list[dict[str, str]]:
        """Machines this provider keeps on the worker's host: provider, id, pool, ip, state."""
        return []

    @classmethod
    def delete_host_machine(cls, provider: str, machine_id: str) -> None:
        """Delete one of host_machines() now, whoever uses it."""
        raise ProviderError(f"provider {provider} keeps no machines on this host")

    @classmethod
    def clean_host(cls) -> None:
        """Remove what the provider set up on the host for machines (networks) once none is left."""
        return None
