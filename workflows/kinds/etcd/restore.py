"""`orbiter restore CLUSTER --from ID`: every member stopped, restored from the backup (the same
names and peer URLs, a new cluster token), started together, health-gated; recorded in current.yml.

The request is checked by the update's validator (a paused cluster, another cluster's backup, a
restore already waiting) and against the store (an unknown id), then waits in the state as a
request the next reconcile plans (`restore ID`, gate `restore`). The restore's id is fixed in the
kind state before any member is touched, and each restored data directory carries it, so a worker
killed in the middle finishes the restore and restores no member twice.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.backups import list_backups
    from orbiter.activities.kinds.etcd import etcd_restore_member, etcd_unit
    from orbiter.models.actions import ActionInput, ActionResult
    from orbiter.models.backups import BackupListInput, RestoreRecord
    from orbiter.models.cluster import ClusterState
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.kinds.etcd import config
    from orbiter.models.kinds.etcd.messages import EtcdRestoreMemberInput, EtcdUnitInput
    from orbiter.models.kinds.etcd.spec import EtcdState, PendingRestore

from ...context import ClusterContext
from ...gates import now_iso
from ...runbook import Step
from .reconcile import ETCD_RETRY, EtcdReconcile

PREFIX = "restore "
UNIT_TIMEOUT = timedelta(seconds=30)  # a systemctl on each member; short, so a lost worker costs little


def refuse(state: ClusterState, backup_id: str) -> str | None:
    kind = state.kind
    if state.paused or (state.desired is not None and state.desired.spec.paused):
        return "the cluster is paused: resume it first (orbiter resume, or remove paused: true)"
    owner = backup_id.rsplit("-", 2)[0] if backup_id.count("-") >= 2 else None
    name = workflow.info().workflow_id.rsplit("/", 1)[-1]
    if owner != name:
        return f"backup {backup_id} is not a backup of cluster {name} (see orbiter backups {name})"
    if isinstance(kind, EtcdState) and kind.restore is not None and kind.restore.ended is None:
        return f"a restore from {kind.restore.id} is already under way"
    if not any(m.joined for m in (kind.members if kind else [])):
        return "the cluster has no members to restore"
    return None


async def request(ctx: ClusterContext, input: ActionInput) -> ActionResult:
    """Check the id against the store, record the request, wait until the restore is done."""
    backup_id = input.args["from"]
    assert ctx.desired.backup_store is not None
    listed = await workflow.execute_activity(
        list_backups, BackupListInput(store=ctx.desired.backup_store, orb=ctx.orb, cluster=ctx.name),
        start_to_close_timeout=timedelta(minutes=1), retry_policy=ETCD_RETRY, summary="list backups")
    backup = next((b for b in listed.backups if b.id == backup_id), None)
    if backup is None:
        raise ApplicationError(f"no backup {backup_id} of cluster {ctx.name} in the store (see orbiter backups"
                               f" {ctx.name})", non_retryable=True)
    kind: EtcdState = ctx.state.kind  # type: ignore[assignment]
    kind.restores += 1
    kind.restore = PendingRestore(id=f"r{kind.restores}-{backup.id}", backup=backup, by=input.by)
    pending = kind.restore
    ctx.state.requests = [r for r in ctx.state.requests if not r.startswith(PREFIX)] + [PREFIX + backup.id]
    ctx.state.retry_requested = True  # a reconcile runs even if the cluster is Ready or Blocked
    await workflow.wait_condition(lambda: pending.ended is not None or (
        pending.attempted and ctx.state.status.phase == "Blocked"))
    if pending.ended is None:
        raise ApplicationError(f"restore from {backup.id} stopped: {ctx.state.status.error}; fix it and run"
                               f" orbiter retry {ctx.name}", non_retryable=True)
    return ActionResult(message=f"restored {ctx.name} from {backup.id} (revision {backup.revision})")


class Restore(Step[EtcdReconcile]):
    id = "restore"
    gate = "restore"

    def plan(self, view: View) -> list[PlannedStep]:
        wanted = [c.removeprefix(PREFIX) for c in view.commands if c.startswith(PREFIX)]
        members = [n.machine for n in view.nodes if n.joined]
        return [self.item(f"restore {wanted[-1]}", f"stop every member, restore each from backup {wanted[-1]}"
                          " (same names and URLs, a new cluster token), start them, health gate",
                          machines=members)] if wanted and members else []

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        kind, ctx = r.kind, r.ctx
        pending = kind.restore
        if pending is None or pending.ended is not None:
            return
        pending.attempted = True
        assert ctx.desired.backup_store is not None
        members = [m for m in r.members if m.joined]
        machines = [ctx.state.machines[m.name] for m in members]
        ctx.state.status.restore = RestoreRecord(id=pending.backup.id, revision=pending.backup.revision,
                                                 by=pending.by, started=pending.started or now_iso())
        pending.started = ctx.state.status.restore.started
        await ctx.report()
        await workflow.execute_activity(etcd_unit, EtcdUnitInput(cluster=ctx.name, machines=machines,
                                        secrets=ctx.desired.secrets, start=False),
                                        start_to_close_timeout=UNIT_TIMEOUT, retry_policy=ETCD_RETRY,
                                        summary="stop every member")
        initial = config.initial_cluster([(m.name, r.ip(m)) for m in members], r.spec.tls)
        await asyncio.gather(*(workflow.execute_activity(
            etcd_restore_member,
            EtcdRestoreMemberInput(cluster=ctx.name, orb=ctx.orb, machine=ctx.state.machines[m.name],
                                   secrets=ctx.desired.secrets, store=ctx.desired.backup_store,
                                   backup=pending.backup, restore_id=pending.id, name=m.name,
                                   peer_url=config.peer_url(r.ip(m), r.spec.tls), initial_cluster=initial,
                                   token=f"{ctx.name}-{pending.id}", version=r.spec.version),
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=ETCD_RETRY, summary=f"restore {m.name}") for m in members))
        await workflow.execute_activity(etcd_unit, EtcdUnitInput(cluster=ctx.name, machines=machines,
                                        secrets=ctx.desired.secrets, start=True),
                                        start_to_close_timeout=UNIT_TIMEOUT, retry_policy=ETCD_RETRY,
                                        summary="start every member")
        await r.status(wait=True, expect=len(members), members=members)
        pending.ended = ctx.state.status.restore.ended = now_iso()
        ctx.state.requests = [c for c in ctx.state.requests if not c.startswith(PREFIX)]
        assert r.fresh is not None
        await r.observe(r.fresh)
