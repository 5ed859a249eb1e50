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

from .context import ClusterContext
from .runbook import Runbook


async def wait_for_work(orb: str, cluster: str, state: ClusterState, runbooks: dict[str, Runbook],
                        work_pending: Callable[[], bool], report: Callable[[], Awaitable[None]]) -> bool:
    """Until a commit, a retry or a pause needs a reconcile (True); False when the history asks
    to continue as new first."""
    while True:
        desired = state.desired
        runbook = runbooks.get(desired.spec.kind) if desired else None
        if desired is None or runbook is None or not runbook.watches or state.status.phase != "Ready":
            await workflow.wait_condition(work_pending)
            return True
        try:
            await workflow.wait_condition(work_pending, timeout=timedelta(seconds=desired.drift_interval_seconds))
            return True
        except TimeoutError:
            await _watch(orb, cluster, state, runbook, report)
        if workflow.info().is_continue_as_new_suggested():
            return False


async def _watch(orb: str, cluster: str, state: ClusterState, runbook: Runbook,
                 report: Callable[[], Awaitable[None]]) -> None:
    assert state.desired is not None
    before = state.status.model_dump_json()

    async def quiet(*_: object) -> None:
        return None

    ctx = ClusterContext(orb=orb, name=cluster, state=state, desired=state.desired, step=quiet, gate=quiet,
                         report=quiet)
    try:
        await runbook.watch(ctx)
    except (ActivityError, ApplicationError) as err:
        workflow.logger.info("cluster %s: watching failed: %s", cluster, error_line(err))
    if state.status.model_dump_json() != before:
        await report()
