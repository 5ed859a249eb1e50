"""What a planned step waits for before it runs: a pause, an approval, a maintenance window.

Every wait is a durable condition in the ClusterWorkflow: it costs nothing, survives any restart,
and ends on an operator's update (approve, reject, apply-now, resume), a window opening (a
timer), or a newer commit, which voids the plan and has it planned afresh.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.change import (
        ApplyNowInput,
        ApprovalStatus,
        DecisionInput,
        Override,
        local_time,
        plan_hash,
        window_state,
    )
    from orbiter.models.cluster import ClusterState, DesiredUpdate
    from orbiter.models.current import Phase
    from orbiter.models.kinds import PlannedStep


class Superseded(Exception):
    """A newer commit arrived while the plan waited: that commit is planned instead."""


class PlanRejected(Exception):
    """`orbiter reject`: the cluster stays at its last applied commit until a newer one."""


def now_iso() -> str:
    return workflow.now().isoformat(timespec="milliseconds")


@dataclass
class GateHooks:
    set_phase: Callable[[Phase], Awaitable[None]]
    set_step: Callable[[str | None], Awaitable[None]]
    paused: Callable[[], bool]
    working_phase: Callable[[], Phase]  # Reconciling or Destroying


class ChangeGates:
    def __init__(self, cluster: str, state: ClusterState, hooks: GateHooks) -> None:
        self.cluster, self.state, self.hooks = cluster, state, hooks
        self.desired: DesiredUpdate | None = None
        self.planned: list[PlannedStep] = []
        self.needs: list[str] = []

    def start(self, desired: DesiredUpdate, planned: list[PlannedStep]) -> None:
        """A new reconcile: which of its steps ask for an approval under the cluster's settings."""
        self.desired, self.planned = desired, planned
        approval = desired.control.approval
        self.needs = [f"{p.name} ({p.gate})" for p in planned
                      if approval is not None and p.gate is not None and p.gate in approval.for_]

    @property
    def commit(self) -> str:
        assert self.desired is not None
        return self.desired.commit

    def _newer(self) -> bool:
        return self.state.desired is not None and self.state.desired.commit != self.commit

    async def before(self, item: PlannedStep) -> None:
        await self._unpaused()
        if item.changes and self.needs and not self._approved():
            await self._approval()
        if item.disruptive and self.desired is not None and self.desired.control.maintenance is not None:
            await self._window()

    # -- pause ------------------------------------------------------------------------------------
    async def _unpaused(self) -> None:
        """Held while paused, so a pause never cuts a step in half."""
        if self.hooks.paused():
            await self.hooks.set_phase("Paused")
            await workflow.wait_condition(lambda: not self.hooks.paused())
            await self.hooks.set_phase(self.hooks.working_phase())

    # -- approval ---------------------------------------------------------------------------------
    def _approved(self) -> bool:
        """Approved for this commit, and no step asks for it that the approval did not cover (a
        retry after Blocked plans again, and needs no second approval for the same steps)."""
        a = self.state.status.approval
        return a is not None and a.commit == self.commit and a.state == "approved" and set(self.needs) <= set(a.needs)

    async def _approval(self) -> None:
        """Before the plan's first change: the whole plan is approved or rejected at once, so a
        rejected commit leaves the cluster as its last applied commit left it."""
        digest = plan_hash(self.commit, [p.model_dump(include={"name", "description", "machines"})
                                         for p in self.planned])
        status = self.state.status
        status.approval = ApprovalStatus(state="awaiting", commit=self.commit, plan=digest,
                                         steps=[p.name for p in self.planned], needs=self.needs)
        status.step = None
        await self.hooks.set_phase("AwaitingApproval")
        approval = status.approval
        await workflow.wait_condition(lambda: approval.state != "awaiting" or self._newer())
        if approval.state == "awaiting":
            status.approval = None  # voided: the newer commit brings its own plan
            raise Superseded()
        if approval.state == "rejected":
            raise PlanRejected()
        await self.hooks.set_phase(self.hooks.working_phase())

    def refuse_decision(self, input: DecisionInput) -> str | None:
        a = self.state.status.approval
        if a is None or a.state != "awaiting":
            return f"nothing awaits approval: cluster {self.cluster} is {self.state.status.phase}"
        if input.plan != a.plan:
            return (f"plan {input.plan} is not the plan awaiting approval: that is {a.plan} (commit {a.commit[:12]});"
                    f" see it with orbiter status {self.cluster}")
        return None

    def decide(self, input: DecisionInput, approve: bool) -> str:
        a = self.state.status.approval
        assert a is not None
        a.state, a.by, a.at = ("approved" if approve else "rejected"), input.by, now_iso()
        if approve:
            return f"plan {a.plan} approved by {a.by}: {', '.join(a.needs)} go ahead"
        return f"plan {a.plan} rejected by {a.by}: the cluster stays at its last applied commit"

    # -- maintenance windows ----------------------------------------------------------------------
    def _overridden(self) -> bool:
        o = self.state.status.override
        return o is not None and o.commit == self.commit

    async def _window(self) -> None:
        assert self.desired is not None and self.desired.control.maintenance is not None
        maintenance = self.desired.control.maintenance
        waited = False
        while not self._overridden():
            state = window_state(maintenance, workflow.now())
            if state.open:
                break
            waited = True
            await self.hooks.set_step(f"Waiting for maintenance window (opens {local_time(maintenance, state.until)})")
            await self.hooks.set_phase("AwaitingWindow")
            try:
                await workflow.wait_condition(lambda: self._newer() or self._overridden(),
                                              timeout=state.until - workflow.now())
            except TimeoutError:
                continue
            if self._newer():
                raise Superseded()
        if waited:
            await self.hooks.set_phase(self.hooks.working_phase())

    def refuse_apply_now(self) -> str | None:
        desired = self.state.desired
        if desired is None:
            return f"cluster {self.cluster} has no desired state yet"
        if desired.control.maintenance is None:
            return f"cluster {self.cluster} has no maintenance windows: its steps run at once"
        status = self.state.status
        if status.phase in ("Ready", "Destroyed") and status.commit == desired.commit and not self.state.commands:
            return f"nothing to apply: cluster {self.cluster} is {status.phase} at {desired.commit[:12]}"
        return None

    def apply_now(self, input: ApplyNowInput) -> str:
        assert self.state.desired is not None
        commit = self.state.desired.commit
        self.state.status.override = Override(commit=commit, by=input.by, at=now_iso())
        return f"commit {commit[:12]} applies now, outside its maintenance windows (by {input.by})"
