"""Messages of the node agent: its activities, its workflow, and its reports to the cluster."""

from .base import Model
from .machines import Machine
from .nodespec import Change, NodeObserved, NodeSpec, UnitState
from .refs import SecretsRef


class ConvergeNodeInput(Model):
    machine: Machine
    spec: NodeSpec
    secrets: SecretsRef


class ConvergeNodeResult(Model):
    """What the round saw and the changes it planned from that and applied (all or nothing)."""

    observed: NodeObserved
    changes: list[Change]
    host_key: str


class NodeAgentInput(Model):
    orb: str
    cluster: str
    machine: Machine
    spec: NodeSpec | None = None  # None: wait for the first `apply` signal
    generation: int = 0
    secrets: SecretsRef
    drift_interval_seconds: float = 300
    parent_workflow_id: str
    rounds_done: int = 0
    # Attempts for an activity while the machine is unreachable (backoff 1s..30s).
    max_attempts: int = 8
    # Carried across continue-as-new so a pending spec is not lost.
    pending: bool = False


class NodeAgentUpdate(Model):
    spec: NodeSpec
    generation: int
    secrets: SecretsRef
    machine: Machine | None = None  # e.g. with a newly pinned host key


class NodeReport(Model):
    """Sent to the parent after each round (signal `node_report`)."""

    machine_id: str
    generation: int
    ok: bool
    error: str | None = None
    changes: list[Change] = []
    drift: bool = False
    versions: dict[str, str] = {}  # package -> installed version (after this round)
    units: dict[str, UnitState] = {}
    host_key: str | None = None
    upgradable: list[str] | None = None  # OS updates the machine's apt offers (None: not observed)
    reboot_required: bool | None = None


class NodeAgentStatus(Model):
    machine_id: str
    generation: int  # of the spec being converged or last converged
    converged_generation: int | None = None  # last generation applied without error
    rounds_done: int
    busy: bool
    last_error: str | None = None
    last_changes: list[Change] = []
    host_key: str | None = None
    shutting_down: bool = False
