"""Activities that talk to Temporal itself (workflows cannot signal-with-start from inside)."""

from temporalio import activity
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from orbiter.models.cluster import ClusterInput, SignalClusterInput
from orbiter.models.ids import CLUSTER_KEY, CLUSTER_WORKFLOW, ORB_KEY, PHASE_KEY, TASK_QUEUE, cluster_workflow_id


class TemporalOps:
    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="signal_cluster")
    async def signal_cluster(self, input: SignalClusterInput) -> None:
        """Signal-with-start: the first commit creates the cluster workflow, later ones update it."""
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
            static_summary=f"{input.update.spec.kind} cluster {input.cluster} of orb {input.orb}",
        )
