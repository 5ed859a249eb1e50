"""What a Ready etcd cluster does on its own schedule: a backup every `backup.every`. The clock
is the workflow's, so the schedule survives restarts and replays the same."""

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import ClusterState
    from orbiter.models.duration import parse_duration
    from orbiter.models.kinds.etcd.spec import EtcdCluster, EtcdState

from ...context import ClusterContext
from .backups import take_backup
from .reconcile import EtcdReconcile


def next_chore(state: ClusterState) -> datetime | None:
    desired = state.desired
    kind: EtcdState | None = state.kind  # type: ignore[assignment]
    spec: EtcdCluster | None = desired.spec if desired else None  # type: ignore[assignment]
    if (spec is None or desired is None or spec.backup is None or spec.backup.every is None
            or desired.backup_store is None or kind is None or not any(m.joined for m in kind.members)):
        return None
    if kind.backup_clock is None:  # the schedule starts when the cluster first rests with backups set
        kind.backup_clock = workflow.now().isoformat()
    return datetime.fromisoformat(kind.backup_clock) + parse_duration(spec.backup.every)


async def chore(ctx: ClusterContext) -> None:
    due = next_chore(ctx.state)
    if due is None or workflow.now() < due:
        return
    r = EtcdReconcile(ctx)
    assert r.spec.backup is not None
    r.kind.backup_clock = workflow.now().isoformat()  # a failed backup waits for the next period, never loops
    await take_backup(r, f"every {r.spec.backup.every}")
