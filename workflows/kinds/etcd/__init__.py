"""The etcd cluster kind's runbook."""

from ...context import ClusterContext
from ...osupdates import OsUpdates
from ...runbook import Runbook
from .reconcile import EtcdReconcile
from .steps import AddMember, Bootstrap, Destroy, Members, Observe, Packages, RemoveMember, Roll


class EtcdRunbook(Runbook[EtcdReconcile]):
    steps = (Packages(), Bootstrap(), AddMember(), RemoveMember(), Roll(), Members(), OsUpdates(), Observe())
    destroy_steps = (Destroy(),)

    def start(self, ctx: ClusterContext) -> EtcdReconcile:
        return EtcdReconcile(ctx)
