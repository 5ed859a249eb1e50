"""The Redis cluster kind's runbook."""

from ...context import ClusterContext
from ...runbook import Runbook
from .reconcile import RedisReconcile
from .steps import (
    FAILOVER,
    AddMember,
    Bootstrap,
    Destroy,
    Members,
    Observe,
    Packages,
    RemoveMember,
    Roll,
    Sentinels,
)


class RedisRunbook(Runbook[RedisReconcile]):
    steps = (Packages(), Bootstrap(), AddMember(), FAILOVER, RemoveMember(), Roll(), Members(), Sentinels(),
             Observe())
    destroy_steps = (Destroy(),)
    # Sentinel moves the primary without orbiter: a Ready cluster is observed again every
    # driftInterval, so current.yml names the primary Sentinel names.
    watches = True

    def start(self, ctx: ClusterContext) -> RedisReconcile:
        return RedisReconcile(ctx)

    async def watch(self, ctx: ClusterContext) -> None:
        r = self.start(ctx)
        if r.members:
            await r.observe(await r.status())
