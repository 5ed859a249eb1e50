"""Messages and state of a ClusterWorkflow."""

from typing import Annotated

from pydantic import Field

from .base import Model
from .current import ClusterStatus, Phase
from .desired import Cluster, Provider
from .machines import Machine
from .node import NodeReport
from .nodespec import Change
from .refs import SecretsRef


class DesiredUpdate(Model):
    """A commit's desired state for one cluster, with what it needs from the rest of the orb."""

    commit: str
    gitops_workflow_id: str  # who to report to: the repo that sent this desired state
    spec: Cluster
    providers: dict[str, Annotated[Provider, Field()]] = {}
    secrets: SecretsRef
    drift_interval_seconds: float = 600.0
    max_parallel: int = 10


class MemberRecord(Model):
    """A machine's part in the cluster, durable so a resumed reconcile knows how far it got."""

    name: str  # also the machine id
    provider: str
    pool: str
    role: str
    joined: bool = False
    join: dict[str, str] = {}  # kind-specific facts fixed at join time (e.g. etcd's initial cluster)
    spec_digest: str | None = None  # of the NodeSpec last converged, so unchanged members are skipped


class ClusterState(Model):
    """Everything a ClusterWorkflow knows, passed whole across continue-as-new."""

    desired: DesiredUpdate | None = None
    status: ClusterStatus
    paused: bool = False
    retry_requested: bool = False
    attempted_commit: str | None = None
    machines: dict[str, Machine] = {}
    sealed_secrets: dict[str, str] = {}
    node_reports: dict[str, NodeReport] = {}
    node_generations: dict[str, int] = {}
    members: list[MemberRecord] = []
    drift: dict[str, list[Change]] = {}  # machine -> what its agent last put back by itself
    replace: list[str] = []  # machines `orbiter replace` asked for: a new one joins, then they leave
    reboot: list[str] = []  # machines `orbiter reboot` asked for: drained, rebooted, Ready, uncordoned


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
