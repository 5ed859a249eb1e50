"""What a cluster does between reconciles, while it waits for a commit, a retry or a pause:

- update checks fall due (`updates.check`, workflows/updates.py);
- a Ready cluster of a kind whose topology changes without orbiter (Sentinel failing a Redis
  primary over) is observed again every driftInterval, so current.yml follows it. Watching
  observes only: no step runs, the phase stays, no gate is asked.
"""

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import ClusterState
    from orbiter.models.errors import error_line

from .context import ClusterContext
from .history import history_full
from .runbook import Runbook
from .updates import UpdateChecks


async def wait_for_work(orb: str, cluster: str, state: ClusterState, runbooks: dict[str, Runbook],
                        work_pending: Callable[[], bool], report: Callable[[], Awaitable[None]],
                        updates: UpdateChecks | None) -> bool:
    """Until a commit, a retry or a pause needs a reconcile (True); False when the history asks
    to continue as new first."""
    if updates is None:
        return await _watch_only(orb, cluster, state, runbooks, work_pending, report)
    next_watch: timedelta | None = None  # since the wait began, by workflow time
    began = workflow.now()
    while not work_pending():
        desired = state.desired
        runbook = runbooks.get(desired.spec.kind) if desired else None
        watching = desired is not None and runbook is not None and runbook.watches and state.status.phase == "Ready"
        if watching and next_watch is None:
            assert desired is not None
            next_watch = timedelta(seconds=desired.drift_interval_seconds)
        watch_in = next_watch - (workflow.now() - began) if watching and next_watch is not None else None
        check_in = updates.due_in() if updates is not None else None
        waits = [w for w in (watch_in, check_in) if w is not None]
        # Node reports and signals arrive while the cluster idles: a long idle spell rolls over too.
        if not waits:
            await workflow.wait_condition(lambda: work_pending() or history_full())
            return work_pending()
        if min(waits) > timedelta(0):
            try:
                await workflow.wait_condition(lambda: work_pending() or history_full(), timeout=min(waits))
                return work_pending()
            except TimeoutError:
                pass
        if updates is not None and check_in is not None and check_in <= min(waits):
            await updates.run_due()
            if updates.rollover:
                return False
        elif runbook is not None and desired is not None and next_watch is not None:
            await _watch(orb, cluster, state, runbook, report)
            next_watch = (workflow.now() - began) + timedelta(seconds=desired.drift_interval_seconds)
        if history_full():
            return False
    return True


async def _watch_only(orb: str, cluster: str, state: ClusterState, runbooks: dict[str, Runbook],
                      work_pending: Callable[[], bool], report: Callable[[], Awaitable[None]]) -> bool:
    """Histories from before the update-check patch: this exact sequence of awaits and timers
    (always one wait, also when work is pending already), or they would not replay."""
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
