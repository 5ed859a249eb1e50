"""Messages and state of a ClusterWorkflow."""

from typing import Annotated, Literal

from pydantic import Field

from .backups import BackupStoreSpec
from .base import Model
from .change import ChangeControl
from .current import ClusterStatus, Phase
from .kinds import AnyKindState, Cluster
from .machines import Machine
from .node import NodeReport
from .nodespec import Change
from .notify import Sink
from .providers import Provider
from .refs import SecretsRef
from .updates import OsUpdates


class DesiredUpdate(Model):
    """A commit's desired state for one cluster, with what it needs from the rest of the orb."""

    commit: str
    subject: str = ""  # the commit message's first line, for notifications and history
    gitops_workflow_id: str  # who to report to: the repo that sent this desired state
    spec: Cluster
    providers: dict[str, Annotated[Provider, Field()]] = {}
    secrets: SecretsRef
    drift_interval_seconds: float = 600.0
    max_parallel: int = 10
    control: ChangeControl = ChangeControl()  # approval and maintenance windows in force for the cluster
    notify: list[Sink] = []
    backup_store: BackupStoreSpec | None = None  # the orb's spec.backupStore
    os_updates: OsUpdates | None = None  # the cluster's osUpdates, else the orb's


MachineAction = Literal["replace", "reboot"]


class MachineCommand(Model):
    """An operator's command for one machine (`orbiter replace`, `orbiter reboot`), done by the
    kind's runbook at its next reconcile."""

    action: MachineAction
    machine: str

    def __str__(self) -> str:
        return f"{self.action} {self.machine}"


class ClusterState(Model):
    """Everything a ClusterWorkflow knows, passed whole across continue-as-new."""

    desired: DesiredUpdate | None = None
    applied: Cluster | None = None  # the spec of the last commit fully applied: what rolls compare to
    status: ClusterStatus
    paused: bool = False
    retry_requested: bool = False
    attempted_commit: str | None = None
    machines: dict[str, Machine] = {}
    sealed_secrets: dict[str, str] = {}
    node_reports: dict[str, NodeReport] = {}
    node_generations: dict[str, int] = {}
    drift: dict[str, list[Change]] = {}  # machine -> what its agent last put back by itself
    commands: list[MachineCommand] = []
    requests: list[str] = []  # a kind's actions waiting for the next reconcile ("restore ID"), planned like commands
    kind: AnyKindState | None = None
    notices: int = 0  # notifications made so far: the next one's number, part of its delivery id


class ClusterInput(Model):
    orb: str
    cluster: str
    gitops_workflow_id: str
    state: ClusterState | None = None


class ControlInput(Model):
    reason: str = ""


class MachineCommandInput(Model):
    """`orbiter replace` / `orbiter reboot`: one machine of the cluster."""

    machine: str
    reason: str = ""


class ControlResult(Model):
    phase: Phase
    message: str


class SignalClusterInput(Model):
    orb: str
    cluster: str
    gitops_workflow_id: str
    update: DesiredUpdate
