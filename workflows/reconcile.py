"""What every cluster kind's reconcile shares: the cluster it works for, its fleet, its members."""

from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import DesiredUpdate, MemberRecord

    from .fleet import Fleet

if TYPE_CHECKING:
    from .cluster import ClusterWorkflow


class KindReconcile:
    def __init__(self, cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
        self.cluster = cluster
        self.state = cluster.state
        self.desired = desired
        self.name = cluster.input.cluster
        self.fleet = Fleet(cluster, desired)

    async def step(self, text: str | None) -> None:
        """Tell current.yml (and `orbiter status`) which step runs now."""
        await self.cluster.set_step(text)

    @property
    def members(self) -> list[MemberRecord]:
        return self.state.members

    def ip(self, member: MemberRecord) -> str:
        return self.state.machines[member.name].ip
