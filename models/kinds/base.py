"""What every cluster kind is: its desired.yml model, its durable state, and the view its runbook
plans from.

A kind is a desired.yml model (pure data) with a typed state the ClusterWorkflow keeps for it,
a runbook of named steps in workflows/kinds/ and activities in activities/kinds/, tied together
by a `Kind` entry in the registry (models/kinds/__init__.py).
"""

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt

from orbiter.models.backups import BackupPolicy
from orbiter.models.base import Model, Spec
from orbiter.models.change import Approval, GateClass, Maintenance
from orbiter.models.current import NodeStatus
from orbiter.models.names import Name
from orbiter.models.providers import ProviderSpec
from orbiter.models.updates import OsUpdates, Updates, VersionChoice


def quorum(members: int) -> int:
    """A majority of `members` (etcd's, and the stacked etcd of Kubernetes control planes)."""
    return members // 2 + 1


class PoolRef(Spec):
    provider: Name
    pool: Name
    nodes: Annotated[StrictInt, Field(ge=0, le=100)]


class KindProblem(Exception):
    """A desired.yml error of one cluster, located by its field path below the cluster."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


class Refused(Exception):
    """A change the kind will not make (a downgrade, an endpoint kubeadm has fixed): the one line
    says why and what to write instead. Raised while planning, so `orbiter plan` shows it too."""


class PortRule(Model):
    """Traffic a kind's members send each other: a provider that filters traffic lets it through."""

    protocol: Literal["tcp", "udp", "ipip"] = "tcp"
    ports: list[str] = []  # "2379" or "2379-2380"; empty: every port of the protocol
    why: str = ""


class KindSpec(Spec):
    """Fields every kind has; a kind's model adds its own and `kind: Literal[...]`."""

    kind: str
    paused: StrictBool = False
    destroyed: StrictBool = False
    approval: Approval | None = None  # else the orb's
    maintenance: Maintenance | None = None  # else the orb's
    updates: Updates = Updates()  # version updates orbiter commits by itself (default: none, only reported)
    os_updates: OsUpdates | None = Field(None, alias="osUpdates")  # else the orb's

    def pools(self) -> list[tuple[tuple[str, ...], PoolRef]]:
        """Every pool the cluster takes machines from, with the field path that names it."""
        raise NotImplementedError

    def problems(self, providers: dict[str, ProviderSpec]) -> list[KindProblem]:
        """Errors a schema cannot see (the pool references are checked for every kind)."""
        return []

    def member_role(self, path: tuple[str, ...]) -> tuple[str, str | None]:
        """(role, group) of a member taken from the pool at `path` (one of pools())."""
        raise NotImplementedError

    def summary(self) -> str:
        """"etcd 3.4.23": what `orbiter plan` says is being created."""
        return self.kind

    def member_ports(self) -> list[PortRule]:
        """What members send each other; providers with firewalls (GCE) open exactly this."""
        return []

    def repo_files(self) -> list[str]:
        """Files of the orb's repository the cluster reads besides desired.yml and secrets.yml (a
        CNI manifest): a commit that changes one is a change to apply."""
        return []

    def warnings(self) -> list[str]:
        """What `orbiter plan` and status warn about in this spec (a version with a known bug)."""
        return []

    def backup_policy(self) -> BackupPolicy | None:
        """The cluster's `backup:` if its kind takes backups (they go to the orb's backupStore)."""
        return None

    # -- version updates (models/updates.py): a kind without them reports none --------------------
    def current_version(self) -> str | None:
        """The version desired.yml names ("3.4.23", "v1.31.2"), for kinds that have one."""
        return None

    def version_package(self) -> str | None:
        """The apt package whose offered versions are the kind's versions (etcd-server, kubeadm)."""
        return None

    def choose_versions(self, offered: list[str]) -> VersionChoice:
        """From every version the package source offers (apt versions), the newest newer patch and
        the newest version one minor up that the kind's upgrade rules allow, as desired.yml writes them."""
        return VersionChoice()


class MemberBase(Model):
    """A machine's part in a cluster, durable so a resumed reconcile knows how far it got."""

    name: str  # also the machine id
    provider: str
    pool: str
    role: str
    group: str | None = None  # a kind's grouping of its members (Kubernetes: controlPlane or a worker group)
    joined: bool = False
    spec_digest: str | None = None  # of the NodeSpec last converged, so unchanged members are skipped


class KindState(Model):
    """What a kind keeps in its ClusterWorkflow beyond machines and reports; one subclass per kind."""

    kind: str
    members: list[Any] = []


class PlannedStep(Model):
    """One step of a runbook as planned: the name the workflow reports while it runs and
    `orbiter plan` prints, a line on what it does, and what it acts on."""

    step: str  # the Step class's id, which runs it
    name: str
    description: str
    changes: bool = True  # False: bookkeeping that changes nothing when all is as desired
    gate: GateClass | None = None  # what `approval.for` must list for this step to wait for an approval
    disruptive: bool = False  # waits for a maintenance window (rolls, upgrades, reboots, scale-down)
    machines: list[str] = []
    group: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class View:
    """What a runbook plans from. Built alike from a ClusterWorkflow's state and from current.yml
    (with the desired.yml of the commit it names), so `orbiter plan` and the workflow agree."""

    orb: str
    cluster: str
    spec: Any  # the kind's KindSpec: the desired state
    applied: Any | None  # the spec of the last commit fully applied; None: never
    nodes: list[NodeStatus]
    providers: dict[str, ProviderSpec]
    commands: list[str] = field(default_factory=list)  # operator commands waiting: "reboot w1"
    max_parallel: int = 10
    os_updates: OsUpdates | None = None  # the cluster's, else the orb's osUpdates

    def new_machines(self, ref: "PoolRef", used: set[str], count: int) -> list[str]:
        """Ids of `count` machines a pool can still give (its provider names or lists them)."""
        if count <= 0:
            return []
        ids = self.providers[ref.provider].machine_ids(self.orb, self.cluster, ref.pool, used, count)
        if len(ids) < count:
            raise Refused(f"pool {ref.pool} of provider {ref.provider} has no free machine for cluster {self.cluster}"
                          f" (it needs {count} more): list more machines in the pool")
        return ids


@dataclass(frozen=True)
class Leftovers:
    """What a member puts on a machine, undone when a machine that orbiter did not create is
    released (the hostname stays)."""

    units: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()  # orbiter holds them; release removes them
    data_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kind:
    """A registry entry: everything the rest of orbiter needs to find a kind's parts."""

    name: str  # as desired.yml writes it
    spec: type[KindSpec]
    state: type[KindState]
    member: type[MemberBase]
    leaves: Leftovers
    runbook: str  # "module:Class" of its Runbook in workflows/kinds/
    activities: str  # "module:NAME" of its list of activities in activities/kinds/
    commands: frozenset[str] = frozenset()  # machine commands it takes: replace, reboot
