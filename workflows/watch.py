"""Between reconciles, a Ready cluster of a kind whose topology changes without orbiter (Sentinel
failing a Redis primary over) is observed again every driftInterval, so current.yml follows it.
Watching observes only: no step runs, the phase stays, no gate is asked."""

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import ClusterState
    from orbiter.models.errors import error_line

from .context import Blocked, ClusterContext
from .runbook import Runbook


async def wait_for_work(orb: str, cluster: str, state: ClusterState, runbooks: dict[str, Runbook],
                        work_pending: Callable[[], bool], report: Callable[[], Awaitable[None]]) -> bool:
    """Until a commit, a retry or a pause needs a reconcile (True); False when the history asks
    to continue as new first. A Ready cluster's kind may also have chores on a schedule (a
    backup every 6h): durable timers here, run between reconciles."""
    while True:
        desired = state.desired
        runbook = runbooks.get(desired.spec.kind) if desired else None
        chore_at = runbook.next_chore(state) if runbook and state.status.phase == "Ready" else None
        if desired is None or runbook is None or state.status.phase != "Ready" or (
                not runbook.watches and chore_at is None):
            await workflow.wait_condition(work_pending)
            return True
        waits = [timedelta(seconds=desired.drift_interval_seconds)] if runbook.watches else []
        if chore_at is not None:
            waits.append(max(chore_at - workflow.now(), timedelta(seconds=1)))
        try:
            await workflow.wait_condition(work_pending, timeout=min(waits))
            return True
        except TimeoutError:
            if chore_at is not None and workflow.now() >= chore_at:
                await _watch(orb, cluster, state, runbook, report, chore=True)
            else:
                await _watch(orb, cluster, state, runbook, report)
        if workflow.info().is_continue_as_new_suggested():
            return False


async def _watch(orb: str, cluster: str, state: ClusterState, runbook: Runbook,
                 report: Callable[[], Awaitable[None]], chore: bool = False) -> None:
    assert state.desired is not None
    before = state.status.model_dump_json()

    async def quiet(*_: object) -> None:
        return None

    ctx = ClusterContext(orb=orb, name=cluster, state=state, desired=state.desired, step=quiet, gate=quiet,
                         report=quiet)
    try:
        await (runbook.chore(ctx) if chore else runbook.watch(ctx))
    except (ActivityError, ApplicationError, Blocked) as err:
        workflow.logger.info("cluster %s: %s failed: %s", cluster, "a chore" if chore else "watching",
                             error_line(err))
    if state.status.model_dump_json() != before:
        await report()
