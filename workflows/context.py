"""What a kind's runbook may use of the ClusterWorkflow that runs it.

Steps get this small context, never the workflow object: the cluster's names and durable state,
and the hooks that make progress visible (step, report) and hold it between steps (gate). It imports no
workflow module, so kinds and the ClusterWorkflow never import each other.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import ClusterState, DesiredUpdate
    from orbiter.models.kinds import PlannedStep
    from orbiter.models.providers import ProviderSpec


class Blocked(Exception):
    """A reconcile cannot go on without an operator: the message says why and what to do."""


@dataclass
class ClusterContext:
    orb: str
    name: str
    state: ClusterState
    desired: DesiredUpdate
    step: Callable[[str | None], Awaitable[None]]  # the runbook step that runs now, for current.yml
    gate: Callable[[PlannedStep], Awaitable[None]]  # before a step: pause, approval, maintenance window
    report: Callable[[], Awaitable[None]]  # send the status to the GitOps workflow

    @property
    def workflow_id(self) -> str:
        return workflow.info().workflow_id

    def provider(self, name: str) -> ProviderSpec:
        return self.desired.providers[name]

    def add_secrets(self, sealed: dict[str, str]) -> None:
        """Secrets an activity created, sealed: committed by the GitOps workflow, and read by later
        activities from the overlay until then."""
        if sealed:
            self.state.sealed_secrets.update(sealed)
            self.desired.secrets.extra.update(sealed)
