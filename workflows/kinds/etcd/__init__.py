"""The etcd cluster kind's runbook."""

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.actions import ActionInput, ActionResult
    from orbiter.models.cluster import ClusterState
    from orbiter.models.kinds import PlannedStep, View

from ...context import ClusterContext
from ...osupdates import OsUpdates
from ...runbook import Runbook
from . import backups, chores, rotation
from .backups import Backup
from .reconcile import EtcdReconcile
from .remediation import Remediate
from .renewal import RenewCertificates
from .restore import Restore
from .rotation import RotateCA
from .space import ClearSpace
from .steps import AddMember, Bootstrap, Destroy, Members, Observe, Packages, RemoveMember, Roll

BACKUP = Backup()


class EtcdRunbook(Runbook[EtcdReconcile]):
    steps = (Packages(), Remediate(), Bootstrap(), AddMember(), ClearSpace(), RenewCertificates(), RotateCA(), BACKUP,
             Restore(), RemoveMember(), Roll(), Members(), OsUpdates(), Observe())
    destroy_steps = (Destroy(),)

    def start(self, ctx: ClusterContext) -> EtcdReconcile:
        return EtcdReconcile(ctx)

    def plan(self, view: View) -> list[PlannedStep]:
        return backups.with_backup(BACKUP, view, super().plan(view))

    def refuse_action(self, state: ClusterState, input: ActionInput) -> str | None:
        if input.action == "rotate-ca":
            return rotation.refuse(state)
        return backups.refuse(state, input)

    async def act(self, ctx: ClusterContext, input: ActionInput) -> ActionResult:
        if input.action == "rotate-ca":
            return await rotation.request(ctx)
        return await backups.act(ctx, self.start(ctx), input)

    def next_chore(self, state: ClusterState) -> datetime | None:
        return chores.next_chore(state)

    async def chore(self, ctx: ClusterContext) -> None:
        await chores.chore(ctx)
