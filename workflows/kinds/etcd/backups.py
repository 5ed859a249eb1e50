"""etcd backups in the runbook: before disruptive steps, on `orbiter backup`, listed for `orbiter
backups`. The snapshot travels inside one activity; the workflow sees only its metadata."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.backups import list_backups
    from orbiter.activities.kinds.etcd import etcd_backup
    from orbiter.models.actions import ActionInput, ActionResult
    from orbiter.models.backups import BackupInfo, BackupListInput
    from orbiter.models.cluster import ClusterState
    from orbiter.models.errors import error_line
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.kinds.etcd.messages import EtcdBackupInput
    from orbiter.models.kinds.etcd.spec import EtcdCluster, PendingBackup

from ...context import Blocked, ClusterContext
from ...runbook import Step
from . import restore
from .reconcile import EtcdReconcile

BACKUP_TIMEOUT = timedelta(minutes=30)
BACKUP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30),
                           maximum_attempts=5)


def backup_item(step: Step, before: PlannedStep) -> PlannedStep:
    """The backup planned right before the first disruptive step: it waits for the same window and
    approval, so the snapshot is as fresh as it can be when the change starts."""
    return step.item("backup", f"a snapshot from a healthy follower into the backup store, before {before.name}",
                     disruptive=before.disruptive)


def with_backup(step: Step, view: View, planned: list[PlannedStep]) -> list[PlannedStep]:
    spec: EtcdCluster = view.spec
    if spec.backup is None or spec.destroyed or not any(n.joined for n in view.nodes):
        return planned
    first = next((i for i, p in enumerate(planned) if p.disruptive or p.gate == "restore"), None)
    if first is None:
        return planned
    return planned[:first] + [backup_item(step, planned[first])] + planned[first:]


async def take_backup(r: EtcdReconcile, reason: str) -> BackupInfo:
    """One backup with an id fixed in the state before the activity runs (the workflow's id
    prefix is the cluster; the time and the counter make it unique and replay the same)."""
    ctx, kind = r.ctx, r.kind
    store = ctx.desired.backup_store
    if store is None or r.spec.backup is None:
        raise Blocked(f"cluster {ctx.name} has no backups configured: set backup: in the cluster and"
                      " spec.backupStore in desired.yml")
    # One at a time; a backup cut short (Blocked, then retried) is finished under its own id first.
    await workflow.wait_condition(lambda: not kind.backup_running)
    if kind.pending_backup is None:
        kind.backups_taken += 1
        stamp = workflow.now().strftime("%Y%m%dT%H%M%SZ")
        kind.pending_backup = PendingBackup(id=f"{ctx.name}-{stamp}-{kind.backups_taken}", reason=reason)
    pending, kind.backup_running = kind.pending_backup, True
    try:
        info = await workflow.execute_activity(
            etcd_backup,
            EtcdBackupInput(target=r.target([m for m in r.members if m.joined]), store=store, orb=ctx.orb,
                            backup_id=pending.id, reason=pending.reason, keep=r.spec.backup.keep),
            start_to_close_timeout=BACKUP_TIMEOUT,
            retry_policy=BACKUP_RETRY,
            summary=f"backup {pending.id}",
        )
    finally:
        kind.backup_running = False
    kind.pending_backup = None
    kind.backup_clock = workflow.now().isoformat()
    kind.latest_backup = ctx.state.status.backup = info
    await ctx.report()
    return info


class Backup(Step[EtcdReconcile]):
    """Planned by the runbook before the first disruptive step (see `with_backup`)."""

    id = "backup"

    def plan(self, view: View) -> list[PlannedStep]:
        return []

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        reason = item.description.rsplit(", ", 1)[-1]  # "before roll meta-2"
        try:
            await take_backup(r, reason)
        except ActivityError as err:
            if not reason.startswith("before restore"):
                raise
            # A restore is what an operator does when the cluster is past saving (quorum lost), so a
            # backup of it that fails does not stop the restore.
            workflow.logger.warning("backup %s failed, the restore goes on: %s", reason, error_line(err))


def refuse(state: ClusterState, input: ActionInput) -> str | None:
    """Why an action cannot start now, in one line (the update's validator)."""
    desired = state.desired
    if input.action not in ("backup", "backups", "restore"):
        return f"etcd clusters take the actions backup, backups, restore, rotate-ca; not {input.action}"
    if desired is None or desired.spec.destroyed:
        return "the cluster has no desired state to act on"
    if desired.backup_store is None or desired.spec.backup_policy() is None:
        return "the cluster has no backups: set backup: in it and spec.backupStore in desired.yml, then push"
    if input.action == "restore":
        return restore.refuse(state, input.args.get("from", ""))
    if input.action == "backup" and not any(m.joined for m in (state.kind.members if state.kind else [])):
        return "the cluster has no members yet"
    return None


async def act(ctx: ClusterContext, r: EtcdReconcile, input: ActionInput) -> ActionResult:
    if input.action == "backups":
        assert ctx.desired.backup_store is not None
        listed = await workflow.execute_activity(
            list_backups, BackupListInput(store=ctx.desired.backup_store, orb=ctx.orb, cluster=ctx.name),
            start_to_close_timeout=timedelta(minutes=1), retry_policy=BACKUP_RETRY, summary="list backups")
        return ActionResult(message=f"{len(listed.backups)} backups",
                            data=[b.model_dump(mode="json", exclude_none=True) for b in listed.backups])
    if input.action == "restore":
        return await restore.request(ctx, input)
    info = await take_backup(r, f"orbiter backup{' by ' + input.by if input.by else ''}")
    return ActionResult(message=info.id, data=[info.model_dump(mode="json", exclude_none=True)])
