"""What a Ready etcd cluster does on its own schedule: a backup every `backup.every`, a
defragmentation every `defrag.every` when a database is more than half free, certificates renewed
`renewBefore` their expiry, and a look for
alarms every driftInterval (a NOSPACE alarm asks for a reconcile, whose `clear space` step clears
it). The clocks are the workflow's, so the schedules survive restarts and replay the same."""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import ClusterState
    from orbiter.models.duration import parse_duration
    from orbiter.models.kinds.etcd.messages import EtcdStatusResult
    from orbiter.models.kinds.etcd.spec import EtcdCluster, EtcdState

from ...context import ClusterContext
from .backups import take_backup
from .reconcile import ONCE, EtcdReconcile
from .remediation import PREFIX as REPLACE
from .remediation import check_interval, track
from .renewal import REQUEST as RENEW
from .renewal import renewal_due
from .space import REQUEST as CLEAR
from .space import alarmed, free_space, mostly_free

# Histories recorded before 0.2's etcd day two rest without a timer; new runs look for alarms.
SPACE_WATCH = "etcd-space-watch"


def _clock(value: str | None) -> datetime:
    return datetime.fromisoformat(value) if value else workflow.now()


def schedule(state: ClusterState) -> dict[str, datetime]:
    """Each chore of the cluster with when it is next due."""
    desired = state.desired
    kind: EtcdState | None = state.kind  # type: ignore[assignment]
    spec: EtcdCluster | None = desired.spec if desired else None  # type: ignore[assignment]
    if spec is None or desired is None or spec.destroyed or kind is None or not any(m.joined for m in kind.members):
        return {}
    now = workflow.now().isoformat()
    due: dict[str, datetime] = {}
    if spec.backup is not None and spec.backup.every is not None and desired.backup_store is not None:
        kind.backup_clock = kind.backup_clock or now  # the first one a period after the cluster first rests
        due["backup"] = _clock(kind.backup_clock) + parse_duration(spec.backup.every)
    if spec.defrag is not None:
        kind.defrag_clock = kind.defrag_clock or now
        due["defrag"] = _clock(kind.defrag_clock) + parse_duration(spec.defrag.every)
    if (renew_at := renewal_due(spec, kind)) is not None:
        due["certs"] = renew_at
    if workflow.patched(SPACE_WATCH):
        kind.space_clock = kind.space_clock or now
        every = timedelta(seconds=desired.drift_interval_seconds)
        due["space"] = _clock(kind.space_clock) + (check_interval(spec, every) if spec.remediation else every)
    return due


def next_chore(state: ClusterState) -> datetime | None:
    return min(schedule(state).values(), default=None)


def _request(ctx: ClusterContext, request: str) -> None:
    """A step for the next reconcile, which starts at once (the runbook plans it from the request)."""
    if request not in ctx.state.requests:
        ctx.state.requests.append(request)
    ctx.state.retry_requested = True


async def chore(ctx: ClusterContext) -> None:
    now = workflow.now()
    due = {name for name, at in schedule(ctx.state).items() if now >= at}
    if not due:
        return
    r = EtcdReconcile(ctx)
    if "certs" in due:
        _request(ctx, RENEW)
        return
    if due & {"space", "defrag"}:
        r.kind.space_clock = now.isoformat()
        try:
            status = await r.status(retry=ONCE)
        except ActivityError:
            if r.spec.remediation is None:
                raise
            status = EtcdStatusResult(members=[], healthy=False)  # nothing answers: every member is unhealthy
        if spec_remediation := r.spec.remediation:
            unhealthy, overdue = track(r.kind, r.spec, {m.name for m in status.members if m.healthy}, now)
            if overdue and spec_remediation:
                _request(ctx, REPLACE + overdue[0])  # one at a time; the step checks quorum and maxUnhealthy
                return
        if alarmed(status):
            # A reconcile, so the cluster leaves Ready while it cannot take writes, and says why.
            _request(ctx, CLEAR)
            return
        if "defrag" in due:
            r.kind.defrag_clock = now.isoformat()  # a failure waits for the next period, never loops
            if mostly_free(status):
                r.fresh = status
                await free_space(r)
    if "backup" in due:
        assert r.spec.backup is not None
        r.kind.backup_clock = now.isoformat()
        await take_backup(r, f"every {r.spec.backup.every}")
