"""ClusterWorkflow: one long-running entity workflow per cluster (id cluster/<orb>/<cluster>).

It holds the desired spec, the observed state and the phase. For each new commit it plans the
kind's runbook from a View of its state (the same plan `orbiter plan` prints from current.yml),
shows the plan in current.yml and runs its steps in order. A step that fails beyond its retry
policy puts the cluster in Blocked; it then waits for `retry` or a newer commit and never stops
silently. The kind's runbook is found in the registry (models/kinds): nothing here names a kind.
"""

import asyncio
from datetime import timedelta
from importlib import import_module
from typing import NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.machines import find_machines
    from orbiter.models.cluster import (
        ClusterInput,
        ClusterState,
        ControlInput,
        ControlResult,
        DesiredUpdate,
        MachineCommand,
        MachineCommandInput,
    )
    from orbiter.models.current import ClusterStatus, NodeStatus, Phase
    from orbiter.models.errors import error_line
    from orbiter.models.gitops import ClusterReport
    from orbiter.models.ids import GITOPS_MEMO, PHASE_KEY
    from orbiter.models.kinds import KINDS, PlannedStep, Refused, View
    from orbiter.models.node import NodeReport
    from orbiter.models.provision import FindMachinesInput

from .context import Blocked, ClusterContext
from .runbook import Runbook

RECONCILES_BEFORE_CONTINUE_AS_NEW = 100


def _runbook(path: str) -> Runbook:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)()


RUNBOOKS: dict[str, Runbook] = {name: _runbook(kind.runbook) for name, kind in KINDS.items()}


def view_of(orb: str, cluster: str, state: ClusterState, desired: DesiredUpdate) -> View:
    """What the runbook plans from: the same fields current.yml has (see `orbiter plan`)."""
    return View(orb=orb, cluster=cluster, spec=desired.spec, applied=state.applied, nodes=state.status.nodes,
                providers=desired.providers, commands=[str(c) for c in state.commands],
                max_parallel=desired.max_parallel)


@workflow.defn
class ClusterWorkflow:
    @workflow.init
    def __init__(self, input: ClusterInput) -> None:
        self.input = input
        self.state = input.state or ClusterState(status=ClusterStatus(kind="pending"))
        self.report_due = False
        self.reporting = False

    @workflow.run
    async def run(self, input: ClusterInput) -> None:
        reconciles = 0
        self.reporter = asyncio.create_task(self._reporter())
        await workflow.wait_condition(lambda: self.state.desired is not None)
        while True:
            if not await self._wait_for_work():
                await self._continue_as_new()
            desired = self.state.desired
            assert desired is not None
            if self.paused:
                await self._set_phase("Paused")
                continue
            self.state.attempted_commit = desired.commit
            self.state.retry_requested = False
            self.state.status.kind = desired.spec.kind
            self.state.status.desired_commit = desired.commit
            self.state.status.error = None
            await self._set_phase("Destroying" if desired.spec.destroyed else "Reconciling")
            try:
                await self._reconcile(desired)
            except (ActivityError, ChildWorkflowError, ApplicationError, Blocked, Refused) as err:
                self.state.status.error = error_line(err)
                self.state.status.step = None
                await self._set_phase("Blocked")
            else:
                self.state.applied = desired.spec
                self.state.status.commit = desired.commit
                self.state.status.step = None
                await self._set_phase("Destroyed" if desired.spec.destroyed else "Ready")
            reconciles += 1
            if reconciles >= RECONCILES_BEFORE_CONTINUE_AS_NEW or workflow.info().is_continue_as_new_suggested():
                await self._continue_as_new()

    async def _continue_as_new(self) -> NoReturn:
        await workflow.wait_condition(workflow.all_handlers_finished)
        await workflow.wait_condition(lambda: not self.report_due and not self.reporting)
        workflow.continue_as_new(
            ClusterInput(
                orb=self.input.orb,
                cluster=self.input.cluster,
                gitops_workflow_id=self.input.gitops_workflow_id,
                state=self.state,
            )
        )

    async def _wait_for_work(self) -> bool:
        """Until a commit, a retry or a pause needs a reconcile (True). Meanwhile a Ready cluster
        of a kind that watches is observed again every driftInterval; False when its history
        asks to continue as new first."""
        while True:
            desired = self.state.desired
            runbook = RUNBOOKS[desired.spec.kind] if desired else None
            if desired is None or runbook is None or not runbook.watches or self.state.status.phase != "Ready":
                await workflow.wait_condition(self._work_pending)
                return True
            try:
                await workflow.wait_condition(self._work_pending,
                                              timeout=timedelta(seconds=desired.drift_interval_seconds))
                return True
            except TimeoutError:
                await self._watch(runbook)
            if workflow.info().is_continue_as_new_suggested():
                return False

    async def _watch(self, runbook: Runbook) -> None:
        """Observation only: no step, no phase change; current.yml is written when it changed."""
        assert self.state.desired is not None
        before = self.state.status.model_dump_json()

        async def quiet(*_: object) -> None:
            return None

        ctx = ClusterContext(orb=self.input.orb, name=self.input.cluster, state=self.state,
                             desired=self.state.desired, step=quiet, checkpoint=quiet, report=quiet)
        try:
            await runbook.watch(ctx)
        except (ActivityError, ApplicationError) as err:
            workflow.logger.info("cluster %s: watching failed: %s", self.input.cluster, error_line(err))
        if self.state.status.model_dump_json() != before:
            await self.report()

    async def _reconcile(self, desired: DesiredUpdate) -> None:
        """Plan the kind's runbook for `desired`, show the plan, run it; idempotent, so running it
        again after a crash or a Blocked step repeats nothing already done."""
        kind = KINDS[desired.spec.kind]
        state = self.state
        if state.kind is None or (state.kind.kind != kind.name and not state.kind.members):
            state.kind = kind.state()
        elif state.kind.kind != kind.name:
            raise Blocked(f"cluster {self.input.cluster} is a {state.kind.kind} cluster with machines: changing its"
                          f" kind to {kind.name} is not supported; destroy it first (destroyed: true)")
        if not state.kind.members and not state.status.nodes:
            await self._find_machines(desired)
        self._sync_nodes()
        runbook = RUNBOOKS[kind.name]
        planned = runbook.plan(view_of(self.input.orb, self.input.cluster, state, desired))
        self.state.status.plan = [p.name for p in planned]
        ctx = ClusterContext(orb=self.input.orb, name=self.input.cluster, state=state, desired=desired,
                             step=self.set_step, checkpoint=self.checkpoint, report=self.report)
        await runbook.run(ctx, planned)

    async def _find_machines(self, desired: DesiredUpdate) -> None:
        """A workflow that starts afresh (an orb taken off again, orbiter upgraded) first asks the
        providers for machines they already hold for this cluster: they stay its members."""
        assert self.state.kind is not None
        kind = KINDS[desired.spec.kind]
        for path, ref in desired.spec.pools():
            if not desired.providers[ref.provider].can("creates-machines"):
                continue  # its machines are listed in desired.yml: nothing to find
            found = await workflow.execute_activity(
                find_machines,
                FindMachinesInput(orb=self.input.orb, cluster=self.input.cluster, kind=kind.name,
                                  provider_name=ref.provider, provider=desired.providers[ref.provider], pool=ref.pool,
                                  secrets=desired.secrets),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RetryPolicy(maximum_attempts=5),
                summary=f"machines of {self.input.cluster} in pool {ref.pool}",
            )
            role, group = desired.spec.member_role(path)
            for name in found.machine_ids:
                self.state.kind.members.append(
                    kind.member(name=name, provider=ref.provider, pool=ref.pool, role=role, group=group))

    def _sync_nodes(self) -> None:
        """status.nodes lists every member (also one whose step was cut short before it was
        observed), so current.yml and the plan see the members the workflow has."""
        members = self.state.kind.members if self.state.kind else []
        seen = {n.machine: n for n in self.state.status.nodes}
        nodes: list[NodeStatus] = []
        for m in members:
            node = seen.get(m.name)
            if node is None:
                machine = self.state.machines.get(m.name)
                node = NodeStatus(machine=m.name, ip=machine.ip if machine else "", role=m.role, group=m.group,
                                  pool=m.pool, provider=m.provider)
            node.joined = m.joined
            nodes.append(node)
        self.state.status.nodes = nodes

    def plan(self, desired: DesiredUpdate) -> list[PlannedStep]:
        return RUNBOOKS[desired.spec.kind].plan(view_of(self.input.orb, self.input.cluster, self.state, desired))

    def _work_pending(self) -> bool:
        desired = self.state.desired
        if desired is None:
            return False
        if self.paused:
            return self.state.status.phase != "Paused"
        return (
            desired.commit != self.state.attempted_commit
            or self.state.retry_requested
            or self.state.status.phase == "Paused"
        )

    @property
    def paused(self) -> bool:
        """Paused by an operator (`orbiter pause`) or by `paused: true` in desired.yml."""
        return self.state.paused or bool(self.state.desired and self.state.desired.spec.paused)

    async def _set_phase(self, phase: Phase) -> None:
        if self.state.status.phase != phase:
            self.state.status.phase = phase
            workflow.upsert_search_attributes([PHASE_KEY.value_set(phase)])
        await self.report()

    async def report(self) -> None:
        """Send the observed state to the GitOps workflow, the only writer to the repo. In the
        background: a step goes on at once, and reports due meanwhile go as one, the latest."""
        self.state.status.commands = [str(c) for c in self.state.commands]
        self.report_due = True

    async def _reporter(self) -> None:
        while True:
            await workflow.wait_condition(lambda: self.report_due)
            self.report_due, self.reporting = False, True
            try:
                await self._send_report()
            except Exception as err:  # noqa: BLE001 - the next report carries the state again
                workflow.logger.warning("report to the GitOps workflow failed: %s", err)
            finally:
                self.reporting = False

    async def _send_report(self) -> None:
        target = self.state.desired.gitops_workflow_id if self.state.desired else self.input.gitops_workflow_id
        handle = workflow.get_external_workflow_handle(target)
        await handle.signal(
            "report",
            ClusterReport(cluster=self.input.cluster, status=self.state.status,
                          sealed_secrets=self.state.sealed_secrets),
        )

    async def set_step(self, step: str | None) -> None:
        self.state.status.step = step
        await self.report()

    async def checkpoint(self) -> None:
        """Between steps: hold here while paused, so a pause never cuts a step in half."""
        if self.paused:
            await self._set_phase("Paused")
            await workflow.wait_condition(lambda: not self.paused)
            await self._set_phase(
                "Destroying" if self.state.desired and self.state.desired.spec.destroyed else "Reconciling"
            )

    # Messages. Each control exists as an update (the CLI waits for its answer) and as a signal
    # of the same name (the Web UI's "Send Signal" action).
    @workflow.signal(name="desired")
    def desired(self, update: DesiredUpdate) -> None:
        if self.state.desired is not None and update.gitops_workflow_id != self.state.desired.gitops_workflow_id:
            # The repository moved (signal_cluster refuses a second one that still runs).
            workflow.upsert_memo({GITOPS_MEMO: update.gitops_workflow_id})
        self.state.desired = update
        self.state.status.kind = update.spec.kind

    @workflow.signal(name="node_report")
    async def node_report(self, report: NodeReport) -> None:
        self.state.node_reports[report.machine_id] = report
        if report.drift:
            # Something was changed by hand and put back: current.yml shows what and where.
            self.state.drift[report.machine_id] = report.changes
            for node in self.state.status.nodes:
                if node.machine == report.machine_id:
                    node.drift = report.changes
            await self.report()

    def _control(self, action: str) -> ControlResult:
        if action == "pause":
            self.state.paused = True
            message = "paused: no step starts until resume"
        elif action == "resume":
            self.state.paused = False
            message = "resumed"
            if self.state.desired and self.state.desired.spec.paused:
                message = "still paused: desired.yml says paused: true; remove it and push"
        else:
            if self.state.status.phase != "Blocked":
                return ControlResult(
                    phase=self.state.status.phase, message=f"nothing to retry: the cluster is {self.state.status.phase}"
                )
            self.state.retry_requested = True
            message = "retrying the failed reconcile"
        return ControlResult(phase=self.state.status.phase, message=message)

    @workflow.update(name="pause")
    def pause_update(self, input: ControlInput) -> ControlResult:
        return self._control("pause")

    @workflow.update(name="resume")
    def resume_update(self, input: ControlInput) -> ControlResult:
        return self._control("resume")

    @workflow.update(name="retry")
    def retry_update(self, input: ControlInput) -> ControlResult:
        return self._control("retry")

    @workflow.signal(name="pause")
    def pause_signal(self) -> None:
        self._control("pause")

    @workflow.signal(name="resume")
    def resume_signal(self) -> None:
        self._control("resume")

    @workflow.signal(name="retry")
    def retry_signal(self) -> None:
        self._control("retry")

    def _machine_command_refused(self, action: str, machine: str) -> str | None:
        desired = self.state.desired
        if desired is None or action not in KINDS[desired.spec.kind].commands:
            takes = sorted(name for name, kind in KINDS.items() if action in kind.commands)
            return f"{action} works on {', '.join(takes)} clusters"
        if desired.spec.destroyed:
            return "the cluster is being destroyed"
        members = [m.name for m in self.state.kind.members] if self.state.kind else []
        if machine not in members:
            return f"{machine} is not a machine of this cluster (machines: {', '.join(members) or 'none'})"
        return None

    def _machine_command(self, action: str, machine: str) -> ControlResult:
        command = MachineCommand(action=action, machine=machine)  # type: ignore[arg-type]
        if command not in self.state.commands:
            self.state.commands.append(command)
        self.state.retry_requested = True  # a reconcile runs even if the cluster is Ready
        message = {
            "replace": f"replacing {machine}: a new machine joins, then {machine} leaves",
            "reboot": f"rebooting {machine}: drain, reboot, wait until Ready, uncordon",
        }[action]
        return ControlResult(phase=self.state.status.phase, message=message)

    @workflow.update(name="replace")
    def replace_update(self, input: MachineCommandInput) -> ControlResult:
        """A new machine joins in the same pool, then this one is drained, reset and released."""
        return self._machine_command("replace", input.machine)

    @replace_update.validator
    def _validate_replace(self, input: MachineCommandInput) -> None:
        if refused := self._machine_command_refused("replace", input.machine):
            raise ValueError(refused)

    @workflow.update(name="reboot")
    def reboot_update(self, input: MachineCommandInput) -> ControlResult:
        return self._machine_command("reboot", input.machine)

    @reboot_update.validator
    def _validate_reboot(self, input: MachineCommandInput) -> None:
        if refused := self._machine_command_refused("reboot", input.machine):
            raise ValueError(refused)

    @workflow.signal(name="replace")
    def replace_signal(self, input: MachineCommandInput) -> None:
        if refused := self._machine_command_refused("replace", input.machine):
            workflow.logger.warning("replace %s refused: %s", input.machine, refused)
            return
        self._machine_command("replace", input.machine)

    @workflow.signal(name="reboot")
    def reboot_signal(self, input: MachineCommandInput) -> None:
        if refused := self._machine_command_refused("reboot", input.machine):
            workflow.logger.warning("reboot %s refused: %s", input.machine, refused)
            return
        self._machine_command("reboot", input.machine)

    @workflow.query
    def status(self) -> ClusterStatus:
        return self.state.status
