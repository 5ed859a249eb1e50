"""Runbooks: a kind's reconcile as a list of named steps, planned purely and run in order.

A step plans from a View (pure data, built alike from a ClusterWorkflow's state and from
current.yml) and runs from the same planned item. The ClusterWorkflow plans once per reconcile,
puts the plan in current.yml and runs exactly those steps, reporting each by its name; `orbiter
plan` prints the same plan offline. So what the plan says is what the workflow then does, in
the same words (k0sctl's phases, Cluster API's decision list).
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar, Generic, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.actions import ActionInput, ActionResult
    from orbiter.models.change import GateClass
    from orbiter.models.cluster import ClusterState
    from orbiter.models.kinds import PlannedStep, View

from .context import ClusterContext

R = TypeVar("R")


class Step(ABC, Generic[R]):
    """One kind of step: `plan` says whether and on what it runs (zero, one or several items),
    `run` does one planned item with the kind's reconcile object. `gate` and `disruptive` say what
    its items wait for under change control (an approval, a maintenance window)."""

    id: str
    gate: ClassVar[GateClass | None] = None
    disruptive: ClassVar[bool] = False

    @abstractmethod
    def plan(self, view: View) -> list[PlannedStep]: ...

    @abstractmethod
    async def run(self, r: R, item: PlannedStep) -> None: ...

    def item(self, name: str, description: str, changes: bool = True, machines: Sequence[str] = (),
             group: str | None = None, version: str | None = None, gate: "GateClass | None | bool" = True,
             disruptive: bool | None = None) -> PlannedStep:
        """`gate` and `disruptive` default to the step's; an item may differ (a roll that changes
        the version is an upgrade, the packages of an upgrade disrupt nothing)."""
        return PlannedStep(step=self.id, name=name, description=description, changes=changes,
                           machines=list(machines), group=group, version=version,
                           gate=self.gate if gate is True else gate or None,
                           disruptive=self.disruptive if disruptive is None else disruptive)


class Runbook(ABC, Generic[R]):
    """A kind's steps, in the order they run; the destroy steps when desired.yml says destroyed."""

    steps: Sequence[Step[R]]
    destroy_steps: Sequence[Step[R]]
    # A kind whose clusters change without orbiter (a Redis failover) re-observes a Ready cluster
    # every driftInterval, so current.yml follows it; `watch` observes only and changes nothing.
    watches: bool = False

    async def watch(self, ctx: ClusterContext) -> None:
        """Observe a Ready cluster again into ctx.state.status (kinds with `watches`)."""

    def plan(self, view: View) -> list[PlannedStep]:
        steps = self.destroy_steps if view.spec.destroyed else self.steps
        return [item for step in steps for item in step.plan(view)]

    @abstractmethod
    def start(self, ctx: ClusterContext) -> R:
        """The reconcile object the steps of one reconcile share."""

    async def run(self, ctx: ClusterContext, planned: list[PlannedStep]) -> None:
        steps = {s.id: s for s in [*self.steps, *self.destroy_steps]}
        r = self.start(ctx)
        ctx.state.status.done = []
        for item in planned:
            await ctx.gate(item)  # paused, an approval, a maintenance window: held here, between steps
            await ctx.step(item.name)
            await steps[item.step].run(r, item)
            ctx.state.status.done.append(item.name)

    def refuse_action(self, state: ClusterState, input: ActionInput) -> str | None:
        """Why the kind cannot take an operator's action (`orbiter backup`) now; kinds that offer
        actions override this and `act`."""
        return f"{state.status.kind} clusters take no action {input.action}"

    async def act(self, ctx: ClusterContext, input: ActionInput) -> ActionResult:
        """Do an action `refuse_action` let through; its answer goes back to the CLI."""
        raise NotImplementedError

    def next_chore(self, state: ClusterState) -> datetime | None:
        """When the kind's next periodic chore (a scheduled backup) is due for a Ready cluster;
        None: it has none. The idle wait (workflows/watch.py) sleeps until then."""
        return None

    async def chore(self, ctx: ClusterContext) -> None:
        """Do the chores that are due; failures are logged, and the next period tries again."""
