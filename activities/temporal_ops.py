"""Activities that talk to Temporal itself (workflows cannot signal-with-start from inside)."""

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from orbiter.models.cluster import ClusterInput, SignalClusterInput
from orbiter.models.ids import (
    CLUSTER_KEY,
    CLUSTER_WORKFLOW,
    GITOPS_MEMO,
    ORB_KEY,
    PHASE_KEY,
    TASK_QUEUE,
    cluster_workflow_id,
)


class TemporalOps:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def _managed_elsewhere(self, input: SignalClusterInput) -> str | None:
        """The running GitOps workflow (another repository) that already manages this orb's
        cluster, if any: two repositories naming one orb would otherwise steer the same cluster."""
        try:
            desc = await self.client.get_workflow_handle(cluster_workflow_id(input.orb, input.cluster)).describe()
        except RPCError:
            return None  # no such cluster yet
        owner = (await desc.memo()).get(GITOPS_MEMO)
        if desc.status != WorkflowExecutionStatus.RUNNING or not owner or owner == input.gitops_workflow_id:
            return None
        try:
            other = await self.client.get_workflow_handle(owner).describe()
        except RPCError:
            return None
        return owner if other.status == WorkflowExecutionStatus.RUNNING else None

    @activity.defn(name="signal_cluster")
    async def signal_cluster(self, input: SignalClusterInput) -> None:
        """Signal-with-start: the first commit creates the cluster workflow, later ones update it."""
        if (owner := await self._managed_elsewhere(input)) is not None:
            raise ApplicationError(
                f"orb {input.orb} is managed from another repository (workflow {owner}): two repositories cannot"
                " share an orb; give this one its own metadata.name", type="OrbTaken", non_retryable=True)
        await self.client.start_workflow(
            CLUSTER_WORKFLOW,
            ClusterInput(orb=input.orb, cluster=input.cluster, gitops_workflow_id=input.gitops_workflow_id),
            id=cluster_workflow_id(input.orb, input.cluster),
            task_queue=TASK_QUEUE,
            start_signal="desired",
            start_signal_args=[input.update],
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(ORB_KEY, input.orb),
                SearchAttributePair(CLUSTER_KEY, input.cluster),
                SearchAttributePair(PHASE_KEY, "Pending"),
            ]),
            memo={GITOPS_MEMO: input.gitops_workflow_id},
            static_summary=f"{input.update.spec.kind} cluster {input.cluster} of orb {input.orb}",
        )
