"""NodeAgentWorkflow: keeps one machine converged to its NodeSpec, for as long as a cluster uses it.

Each round is one converge_node activity: observe, plan (pure) and apply over one SSH session,
with the changes in its result, so the history shows what was done. A new spec (signal `apply`)
starts a round at once; otherwise a drift round runs every `drift_interval_seconds` and undoes
hand edits. Every round ends with a `node_report` signal to the parent. Failures are reported,
never fatal: the agent waits for the next spec or drift round. The workflow id is
`node/<orb>/<cluster>/<machine>` (ids.node_workflow_id).
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.node import converge_node
    from orbiter.models.errors import error_line
    from orbiter.models.machines import Machine
    from orbiter.models.node import (
        ConvergeNodeInput,
        NodeAgentInput,
        NodeAgentStatus,
        NodeAgentUpdate,
        NodeReport,
    )
    from orbiter.models.nodespec import Change, NodeObserved, NodeSpec, UnitState

from .history import bound, history_full

MAX_ROUNDS_PER_RUN = 200
# A drift round that changed nothing and saw what the last report said sends no report: a
# converged cluster's history then stays flat instead of taking a signal per member per round
# (workflows/patches.py).
QUIET_DRIFT_PATCH = "quiet-drift"
NON_RETRYABLE = ["AuthFailed", "HostKeyChanged", "SecretsError", "ApplyError", "ObserveError", "MachineClaimed"]


@workflow.defn
class NodeAgentWorkflow:
    @workflow.init
    def __init__(self, input: NodeAgentInput) -> None:
        # State lives in plain attributes so signals that arrive before `run` starts land safely.
        self.input = input
        self.machine: Machine = input.machine
        self.spec: NodeSpec | None = input.spec
        self.generation = input.generation
        self.secrets = input.secrets
        self.rounds_done = input.rounds_done
        self.pending = input.pending or (input.spec is not None and input.rounds_done == 0)
        self.shutdown_requested = False
        self.busy = False
        self.last_error: str | None = None
        self.last_changes: list[Change] = []
        self.converged_generation: int | None = None
        self.last_sent: NodeReport | None = None  # not carried over continue-as-new: one report then

    @workflow.signal
    def apply(self, update: NodeAgentUpdate) -> None:
        """A new desired spec; older generations arriving late are ignored."""
        if self.spec is not None and update.generation < self.generation:
            return
        self.spec, self.generation, self.secrets = update.spec, update.generation, update.secrets
        if update.machine is not None:
            pinned = self.machine.host_key
            self.machine = update.machine
            if self.machine.host_key is None and pinned is not None:
                # Keep the key pinned on first contact; the parent may not have recorded it yet.
                self.machine = self.machine.model_copy(update={"host_key": pinned})
        self.pending = True

    @workflow.signal
    def shutdown(self) -> None:
        """Finish the current round and return: the cluster is releasing the machine."""
        self.shutdown_requested = True

    @workflow.query
    def status(self) -> NodeAgentStatus:
        return NodeAgentStatus(
            machine_id=self.machine.id,
            generation=self.generation,
            converged_generation=self.converged_generation,
            rounds_done=self.rounds_done,
            busy=self.busy,
            last_error=self.last_error,
            last_changes=self.last_changes,
            host_key=self.machine.host_key,
            shutting_down=self.shutdown_requested,
        )

    def _retry(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=30),
            maximum_attempts=self.input.max_attempts,
            non_retryable_error_types=NON_RETRYABLE,
        )

    def _should_continue_as_new(self) -> bool:
        return (
            self.rounds_done - self.input.rounds_done >= MAX_ROUNDS_PER_RUN
            or history_full()
        )

    @workflow.run
    async def run(self, input: NodeAgentInput) -> None:
        bound()  # first: whether this run bounds its history (workflows/history.py)
        drift_due = False
        while True:
            if self.spec is not None and (self.pending or drift_due):
                await self._round(drift=not self.pending)
            if self.shutdown_requested:
                break
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry())
            try:
                await workflow.wait_condition(
                    lambda: self.pending or self.shutdown_requested,
                    timeout=(
                        timedelta(seconds=input.drift_interval_seconds)
                        if self.spec is not None
                        else None
                    ),
                )
                drift_due = False
            except TimeoutError:
                drift_due = True
        await workflow.wait_condition(workflow.all_handlers_finished)

    def _carry(self) -> NodeAgentInput:
        return self.input.model_copy(
            update={
                "machine": self.machine,
                "spec": self.spec,
                "generation": self.generation,
                "secrets": self.secrets,
                "rounds_done": self.rounds_done,
                "pending": self.pending,
            }
        )

    async def _round(self, *, drift: bool) -> None:
        """Observe, plan, apply, report; a failure is reported and kept for `status`."""
        assert self.spec is not None
        self.pending = False
        self.busy = True
        spec, generation, secrets = self.spec, self.generation, self.secrets
        machine = self.machine
        changes: list[Change] = []
        observed: NodeObserved | None = None
        error: str | None = None
        try:
            converged = await workflow.execute_activity(
                converge_node,
                ConvergeNodeInput(machine=machine, spec=spec, secrets=secrets),
                start_to_close_timeout=timedelta(minutes=40),
                retry_policy=self._retry(),
                summary=f"converge {machine.id}",
            )
            observed, changes = converged.observed, converged.changes
            if self.machine.host_key is None and converged.host_key:
                self.machine = self.machine.model_copy(update={"host_key": converged.host_key})
        except (ActivityError, ApplicationError) as err:
            error = error_line(err)
            workflow.logger.warning("node %s round failed: %s", machine.id, error)
        self.rounds_done += 1
        self.busy = False
        self.last_error = error
        self.last_changes = changes
        if error is None:
            self.converged_generation = generation
        await self._report(spec, generation, observed, changes, error, drift)

    async def _report(
        self,
        spec: NodeSpec,
        generation: int,
        observed: NodeObserved | None,
        changes: list[Change],
        error: str | None,
        drift: bool,
    ) -> None:
        """Tell the parent; versions and units are as observed, updated by what was applied."""
        versions = dict(observed.packages) if observed else {}
        units = dict(observed.units) if observed else {}
        if error is None:
            for p in spec.packages:
                versions[p.name] = p.version
            for u in spec.units:
                units[u.name] = UnitState(name=u.name, enabled=u.enabled, active=u.active)
        report = NodeReport(
            machine_id=self.machine.id,
            generation=generation,
            ok=error is None,
            error=error,
            changes=changes,
            drift=drift and bool(changes),
            versions=versions,
            units=units,
            host_key=self.machine.host_key,
            upgradable=observed.upgradable if observed else None,
            reboot_required=observed.reboot_required if observed else None,
        )
        if drift and report == self.last_sent and workflow.patched(QUIET_DRIFT_PATCH):
            return  # the parent knows all of it already
        try:
            await workflow.get_external_workflow_handle(self.input.parent_workflow_id).signal(
                "node_report", report
            )
            self.last_sent = report
        except Exception as err:  # noqa: BLE001 - a missing parent must not kill the agent
            workflow.logger.warning("node %s cannot report to parent: %s", self.machine.id, err)
