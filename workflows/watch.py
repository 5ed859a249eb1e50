"""What a cluster does between reconciles, while it waits for a commit, a retry or a pause:

- update checks fall due (`updates.check`, workflows/updates.py);
- a kind's chores run on their schedule (an etcd backup every `backup.every`, a look for alarms);
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

from .context import Blocked, ClusterContext
from .history import history_full, idle_history_full
from .runbook import Runbook
from .updates import UpdateChecks


async def wait_for_work(orb: str, cluster: str, state: ClusterState, runbooks: dict[str, Runbook],
                        work_pending: Callable[[], bool], report: Callable[[], Awaitable[None]],
                        updates: UpdateChecks | None) -> bool:
    """Until a commit, a retry or a pause needs a reconcile (True); False when the history asks
    to continue as new first. Meanwhile, by durable timers: update checks fall due, a watching kind
    observes a Ready cluster every driftInterval, and a kind's chores run on their schedule (a
    backup every 6h)."""
    if updates is None:
        return await _watch_only(orb, cluster, state, runbooks, work_pending, report)
    next_watch: timedelta | None = None  # since the wait began, by workflow time
    began = workflow.now()
    while not work_pending():
        desired = state.desired
        runbook = runbooks.get(desired.spec.kind) if desired else None
        ready = desired is not None and runbook is not None and state.status.phase == "Ready"
        watching = ready and runbook is not None and runbook.watches
        if watching and next_watch is None:
            assert desired is not None
            next_watch = timedelta(seconds=desired.drift_interval_seconds)
        watch_in = next_watch - (workflow.now() - began) if watching and next_watch is not None else None
        chore_at = runbook.next_chore(state) if ready and runbook is not None else None
        # at least a second: a chore that failed is tried again, not in a busy loop
        chore_in = max(chore_at - workflow.now(), timedelta(seconds=1)) if chore_at is not None else None
        check_in = updates.due_in()
        waits = [w for w in (watch_in, chore_in, check_in) if w is not None]
        # Node reports and signals arrive while the cluster idles: a long idle spell rolls over too.
        if not waits:
            await workflow.wait_condition(lambda: work_pending() or idle_history_full())
            return work_pending()
        if min(waits) > timedelta(0):
            try:
                await workflow.wait_condition(lambda: work_pending() or idle_history_full(), timeout=min(waits))
                return work_pending()
            except TimeoutError:
                pass
        if check_in is not None and check_in <= min(waits):
            await updates.run_due()
            if updates.rollover:
                return False
        elif runbook is not None and chore_in is not None and chore_in <= min(waits):
            await _watch(orb, cluster, state, runbook, report, chore=True)
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
