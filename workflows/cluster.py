"""ClusterWorkflow: one long-running entity workflow per cluster (id cluster/<orb>/<cluster>).

It holds the desired spec, the observed state and the phase. For each new commit it plans the
kind's runbook from a View of its state (the same plan `orbiter plan` prints from current.yml),
shows the plan in current.yml and runs its steps in order. A step that fails beyond its retry
policy puts the cluster in Blocked; it then waits for `retry` or a newer commit and never stops
silently. The kind's runbook is found in the registry (models/kinds): nothing here names a kind.
"""

import asyncio
from typing import NoReturn

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from orbiter.models.change import ApplyNowInput, ChangeRecord, DecisionInput
    from orbiter.models.cluster import (
        ClusterInput,
        ClusterState,
        ControlInput,
        ControlResult,
        DesiredUpdate,
        MachineCommandInput,
    )
    from orbiter.models.current import ClusterStatus, Phase
    from orbiter.models.errors import error_line
    from orbiter.models.gitops import ClusterReport
    from orbiter.models.ids import GITOPS_MEMO, PHASE_KEY
    from orbiter.models.kinds import KINDS, Refused, View
    from orbiter.models.node import NodeReport

from .actions import ActionInput, ActionResult, check_action, run_action
from .context import Blocked, ClusterContext
from .details import current_details, notice_for
from .gates import ChangeGates, GateHooks, PlanRejected, Superseded, now_iso
from .history import bound, history_full
from .members import add_command, command_refused, find_members, sync_nodes
from .notify import Notifier
from .runbooks import RUNBOOKS
from .updates import UpdateChecks, UpdateHooks, note_os_facts
from .watch import wait_for_work

RECONCILES_BEFORE_CONTINUE_AS_NEW = 100
UPDATE_CHECK_PATCH = "update-check"  # the idle wait runs update checks (workflows/patches.py)
HISTORY_KEPT = 10  # reconciles in current.yml; its git history holds every one


def view_of(orb: str, cluster: str, state: ClusterState, desired: DesiredUpdate) -> View:
    """What the runbook plans from: the same fields current.yml has (see `orbiter plan`)."""
    return View(orb=orb, cluster=cluster, spec=desired.spec, applied=state.applied, nodes=state.status.nodes,
                providers=desired.providers, commands=[str(c) for c in state.commands] + state.requests,
                max_parallel=desired.max_parallel, os_updates=desired.os_updates)


@workflow.defn
class ClusterWorkflow:
    @workflow.init
    def __init__(self, input: ClusterInput) -> None:
        self.input = input
        self.state = input.state or ClusterState(status=ClusterStatus(kind="pending"))
        self.report_due = False
        self.reporting = False
        self.notifier = Notifier()
        self.gates = ChangeGates(input.cluster, self.state, GateHooks(
            set_phase=self._set_phase, set_step=self.set_step, paused=lambda: self.paused,
            working_phase=self._working_phase))
        self.updates = UpdateChecks(input.cluster, self.state, UpdateHooks(paused=lambda: self.paused,
                                                                          report=self.report))

    @workflow.run
    async def run(self, input: ClusterInput) -> None:
        bound()  # first: whether this run bounds its history (workflows/history.py)
        reconciles = 0
        self.reporter = asyncio.create_task(self._reporter())
        await workflow.wait_condition(lambda: self.state.desired is not None)
        while True:
            # Idle: update checks (behind their patch) and a watching kind's observations fall due.
            updates = self.updates if workflow.patched(UPDATE_CHECK_PATCH) else None
            if not await wait_for_work(self.input.orb, self.input.cluster, self.state, RUNBOOKS, self._work_pending,
                                       self.report, updates):
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
            self.state.status.warnings = desired.spec.warnings()
            self.state.status.error = None
            record = self._record(ChangeRecord(commit=desired.commit, subject=desired.subject, started=now_iso()))
            await self._set_phase(self._working_phase())
            try:
                await self._reconcile(desired)
            except Superseded:
                record.result = "Superseded"
            except PlanRejected:
                record.result = "Rejected"
                self.state.status.step = None
                await self._set_phase(self._resting_phase())
            except (ActivityError, ChildWorkflowError, ApplicationError, Blocked, Refused) as err:
                self.state.status.error = record.error = error_line(err)
                self.state.status.step = None
                record.result = "Blocked"
                await self._set_phase("Blocked")
            else:
                self.state.applied = desired.spec
                self.state.status.commit = desired.commit
                self.state.status.step = None
                record.result = "Destroyed" if desired.spec.destroyed else "Ready"
                await self._set_phase(record.result)
            self._close(record)
            reconciles += 1
            if reconciles >= RECONCILES_BEFORE_CONTINUE_AS_NEW or history_full():
                await self._continue_as_new()

    async def _continue_as_new(self) -> NoReturn:
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self.notifier.drain()
        await workflow.wait_condition(lambda: not self.report_due and not self.reporting)
        workflow.continue_as_new(ClusterInput(orb=self.input.orb, cluster=self.input.cluster,
                                              gitops_workflow_id=self.input.gitops_workflow_id, state=self.state))

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
            await find_members(self.input.orb, self.input.cluster, state, desired)
        sync_nodes(state)
        runbook = RUNBOOKS[kind.name]
        planned = runbook.plan(view_of(self.input.orb, self.input.cluster, state, desired))
        self.state.status.plan = [p.name for p in planned]
        self.gates.start(desired, planned)
        ctx = ClusterContext(orb=self.input.orb, name=self.input.cluster, state=state, desired=desired,
                             step=self.set_step, gate=self.gates.before, report=self.report)
        await runbook.run(ctx, planned)

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

    def _working_phase(self) -> Phase:
        return "Destroying" if self.state.desired and self.state.desired.spec.destroyed else "Reconciling"

    def _resting_phase(self) -> Phase:
        """Where a rejected plan leaves the cluster: as its last applied commit did."""
        applied = self.state.applied
        return "Pending" if applied is None else "Destroyed" if applied.destroyed else "Ready"

    def _record(self, record: ChangeRecord) -> ChangeRecord:
        history = self.state.status.history
        history.append(record)
        del history[:-HISTORY_KEPT]
        return record

    def _close(self, record: ChangeRecord) -> None:
        record.ended, record.steps = now_iso(), list(self.state.status.done)
        approval = self.state.status.approval
        if approval is not None and approval.commit == record.commit and approval.state != "awaiting":
            record.approved_by = approval.by if approval.state == "approved" else None

    async def _set_phase(self, phase: Phase) -> None:
        if self.state.status.phase != phase:
            self.state.status.phase = phase
            workflow.upsert_search_attributes([PHASE_KEY.value_set(phase)])
            self._notify_phase()
        workflow.set_current_details(current_details(self.input.cluster, self.state))
        await self.report()

    def _notify_phase(self) -> None:
        desired = self.state.desired
        notice = notice_for(self.input.cluster, self.state, [p.name for p in self.gates.planned if p.changes])
        if desired is None or notice is None or not desired.notify:
            return
        self.state.notices += 1
        self.notifier.send(self.state.notices, desired.notify, desired.secrets, notice[0], self.input.orb, notice[1],
                           cluster=self.input.cluster, phase=self.state.status.phase, commit=desired.commit)

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
        workflow.set_current_details(current_details(self.input.cluster, self.state))
        await self.report()

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
        note_os_facts(self.state, report)
        if report.drift:
            # Something was changed by hand and put back: current.yml shows what and where.
            self.state.drift[report.machine_id] = report.changes
            for node in self.state.status.nodes:
                if node.machine == report.machine_id:
                    node.drift = report.changes
            desired = self.state.desired
            if desired is not None and desired.notify:
                self.state.notices += 1
                what = ", ".join(f"{c.kind} {c.target}" for c in report.changes)
                self.notifier.send(self.state.notices, desired.notify, desired.secrets, "Drift", self.input.orb,
                                   f"{report.machine_id}: changed by hand and put back ({what})",
                                   cluster=self.input.cluster, phase=self.state.status.phase, commit=desired.commit)
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

    # Change control: an approval names the plan it approves; apply-now skips the windows once.
    @workflow.update(name="approve")
    def approve_update(self, input: DecisionInput) -> ControlResult:
        return ControlResult(phase=self.state.status.phase, message=self.gates.decide(input, approve=True))

    @approve_update.validator
    def _validate_approve(self, input: DecisionInput) -> None:
        if refused := self.gates.refuse_decision(input):
            raise ValueError(refused)

    @workflow.update(name="reject")
    def reject_update(self, input: DecisionInput) -> ControlResult:
        return ControlResult(phase=self.state.status.phase, message=self.gates.decide(input, approve=False))

    @reject_update.validator
    def _validate_reject(self, input: DecisionInput) -> None:
        if refused := self.gates.refuse_decision(input):
            raise ValueError(refused)

    @workflow.update(name="apply_now")
    def apply_now_update(self, input: ApplyNowInput) -> ControlResult:
        return ControlResult(phase=self.state.status.phase, message=self.gates.apply_now(input))

    @apply_now_update.validator
    def _validate_apply_now(self, input: ApplyNowInput) -> None:
        if refused := self.gates.refuse_apply_now():
            raise ValueError(refused)

    @workflow.signal(name="approve")
    def approve_signal(self, input: DecisionInput) -> None:
        self._decision_signal(input, approve=True)

    @workflow.signal(name="reject")
    def reject_signal(self, input: DecisionInput) -> None:
        self._decision_signal(input, approve=False)

    def _decision_signal(self, input: DecisionInput, approve: bool) -> None:
        if refused := self.gates.refuse_decision(input):
            workflow.logger.warning("%s refused: %s", "approve" if approve else "reject", refused)
            return
        self.gates.decide(input, approve)

    @workflow.signal(name="apply_now")
    def apply_now_signal(self, input: ApplyNowInput) -> None:
        if refused := self.gates.refuse_apply_now():
            workflow.logger.warning("apply-now refused: %s", refused)
            return
        self.gates.apply_now(input)

    @workflow.update(name="replace")
    def replace_update(self, input: MachineCommandInput) -> ControlResult:
        """A new machine joins in the same pool, then this one is drained, reset and released."""
        return ControlResult(phase=self.state.status.phase, message=add_command(self.state, "replace", input.machine))

    @replace_update.validator
    def _validate_replace(self, input: MachineCommandInput) -> None:
        if refused := command_refused(self.state, "replace", input.machine):
            raise ValueError(refused)

    @workflow.update(name="reboot")
    def reboot_update(self, input: MachineCommandInput) -> ControlResult:
        return ControlResult(phase=self.state.status.phase, message=add_command(self.state, "reboot", input.machine))

    @reboot_update.validator
    def _validate_reboot(self, input: MachineCommandInput) -> None:
        if refused := command_refused(self.state, "reboot", input.machine):
            raise ValueError(refused)

    @workflow.signal(name="replace")
    def replace_signal(self, input: MachineCommandInput) -> None:
        self._machine_command("replace", input)

    @workflow.signal(name="reboot")
    def reboot_signal(self, input: MachineCommandInput) -> None:
        self._machine_command("reboot", input)

    def _machine_command(self, action: str, input: MachineCommandInput) -> None:
        """A signal has no answer: a refusal is logged (the update says it in one line)."""
        if refused := command_refused(self.state, action, input.machine):
            workflow.logger.warning("%s %s refused: %s", action, input.machine, refused)
        else:
            add_command(self.state, action, input.machine)

    @workflow.query
    def status(self) -> ClusterStatus:
        return self.state.status

    @workflow.update(name="action")
    async def action_update(self, input: ActionInput) -> ActionResult:
        return await run_action(self.input.orb, self.input.cluster, self.state, RUNBOOKS, self.report, input)

    @action_update.validator
    def _validate_action(self, input: ActionInput) -> None:
        check_action(self.state, RUNBOOKS, input)  # a kind's own action (`orbiter backup`), or one line why not
