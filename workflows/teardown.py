"""The destroy step of kinds whose members all leave the same way: each member released in turn
(its provider stops and wipes it with the kind's leave actions), then the cluster's status
emptied. The secrets stay, so a cluster made again under the name finds its CA and passwords."""

from typing import Any, ClassVar, Protocol, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.kinds import PlannedStep, View

from .context import ClusterContext
from .runbook import Step


class Releasable(Protocol):
    """What a kind's reconcile object offers to let its members go."""

    ctx: ClusterContext
    kind: Any  # the kind's state: its `members` shrink as they are released, so a retry skips them

    @property
    def members(self) -> list[Any]: ...

    async def release(self, member: Any) -> None: ...


R = TypeVar("R", bound=Releasable)


class DestroyMembers(Step[R]):
    id = "destroy"
    gate = "destroy"
    stops: ClassVar[str] = "stop every member"  # what releasing a member means for the kind

    def plan(self, view: View) -> list[PlannedStep]:
        if not view.nodes:
            return []
        names = [n.machine for n in view.nodes]
        return [self.item("destroy", f"{self.stops} and release {', '.join(names)}; the secrets stay",
                          machines=names)]

    async def run(self, r: R, item: PlannedStep) -> None:
        for member in list(r.members):
            await r.release(member)
            r.kind.members = [m for m in r.members if m is not member]
        r.ctx.state.status.nodes = []
        r.ctx.state.status.endpoints = []
