"""A member unhealthy for longer than `remediation.unhealthyAfter` (not answering health, gone from
the member list, its machine gone) is replaced: a backup, the dead member removed (etcd refuses to
add any member, even a learner, while a voting member is unreachable), a new machine from the pool
added as a learner, promoted once it has caught up, health gate; the dead machine released.

MUST: never when the healthy members are not a quorum (the cluster goes Blocked and says to
restore), never two at once, never when more than `maxUnhealthy` are unhealthy.
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kinds.etcd import etcd_member_add, etcd_member_promote, etcd_member_remove
    from orbiter.models.duration import parse_duration
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.kinds.base import quorum
    from orbiter.models.kinds.etcd import config
    from orbiter.models.kinds.etcd.messages import (
        EtcdStatusResult,
        MemberAddInput,
        MemberPromoteInput,
        MemberRemoveInput,
    )
    from orbiter.models.kinds.etcd.spec import EtcdCluster, EtcdState

from ...context import Blocked
from ...runbook import Step
from .backups import take_backup
from .reconcile import ETCD_RETRY, HEALTH_TIMEOUT, ONCE, EtcdReconcile

PREFIX = "replace member "


def quorum_lost(cluster: str, healthy: int, members: int, latest: str | None) -> str:
    return (f"quorum lost ({healthy} of {members} members healthy): restore with orbiter restore {cluster}"
            f" --from {latest or '<latest backup id>'}")


def track(kind: EtcdState, spec: EtcdCluster, healthy: set[str], now: datetime) -> tuple[list[str], list[str]]:
    """Record since when each member is unhealthy; (unhealthy, overdue) member names."""
    members = [m.name for m in kind.members if m.joined]
    kind.unhealthy_since = {n: kind.unhealthy_since.get(n, now.isoformat()) for n in members if n not in healthy}
    assert spec.remediation is not None
    limit = parse_duration(spec.remediation.unhealthy_after)
    overdue = [n for n, since in sorted(kind.unhealthy_since.items())
               if now - datetime.fromisoformat(since) >= limit]
    return sorted(kind.unhealthy_since), overdue


def check_interval(spec: EtcdCluster, drift: timedelta) -> timedelta:
    """How often a resting cluster with remediation looks at its members' health."""
    assert spec.remediation is not None
    return min(drift, parse_duration(spec.remediation.unhealthy_after) / 4)


class Remediate(Step[EtcdReconcile]):
    id = "remediate"

    def plan(self, view: View) -> list[PlannedStep]:
        dead = [c.removeprefix(PREFIX) for c in view.commands if c.startswith(PREFIX)][:1]  # never two at once
        if not dead:
            return []
        spec: EtcdCluster = view.spec
        new = view.new_machines(spec.members, {n.machine for n in view.nodes}, 1)
        return [self.item(f"replace member {dead[0]}", f"backup, member remove {dead[0]}, machine {new[0]} added"
                          " as a learner, promoted once caught up, health gate, the dead machine released",
                          machines=[dead[0], new[0]])]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        dead_name, new_name = item.machines
        ctx = r.ctx
        dead = r.member(dead_name)
        if dead is not None:
            others = [m for m in r.members if m.joined and m is not dead]
            try:
                status = await r.status(members=others, retry=ONCE)
            except ActivityError:
                status = EtcdStatusResult(members=[], healthy=False)
            healthy = sum(1 for m in status.members if m.healthy and m.name != dead.name)
            if healthy < quorum(len([m for m in r.members if m.joined])):
                latest = r.kind.latest_backup.id if r.kind.latest_backup else None
                raise Blocked(quorum_lost(ctx.name, healthy, len(others) + 1, latest))
            assert r.spec.remediation is not None
            unhealthy = [m.name for m in status.members if not m.healthy]
            if len(unhealthy) > r.spec.remediation.max_unhealthy:
                raise Blocked(f"{len(unhealthy)} members unhealthy ({', '.join(unhealthy)}), more than"
                              f" remediation.maxUnhealthy {r.spec.remediation.max_unhealthy}: repair them by hand")
            if r.spec.backup is not None and ctx.desired.backup_store is not None:
                await take_backup(r, f"before replacing {dead.name}")
            await workflow.execute_activity(
                etcd_member_remove, MemberRemoveInput(target=r.target(others), name=dead.name,
                                                      peer_url=config.peer_url(r.ip(dead), r.spec.tls)),
                start_to_close_timeout=timedelta(minutes=2), retry_policy=ETCD_RETRY,
                summary=f"member remove {dead.name}")
            r.kind.members = [m for m in r.members if m is not dead]
            try:
                await r.release(dead)
            except Exception as err:  # noqa: BLE001 - a machine that is gone releases nothing; it is out of the cluster
                workflow.logger.warning("releasing %s failed: %s", dead.name, err)
        member = r.member(new_name)
        if member is None:
            r.members.append(member := r.new_member(new_name))
        joined = [m for m in r.members if m.joined]
        await r.fleet.acquire(r.provider, r.pool, [member.name])
        await r.certs()
        peer = config.peer_url(r.ip(member), r.spec.tls)
        if member.initial_cluster is None:
            added = await workflow.execute_activity(
                etcd_member_add, MemberAddInput(target=r.target(joined), name=member.name, peer_url=peer, learner=True),
                start_to_close_timeout=timedelta(minutes=2), retry_policy=ETCD_RETRY,
                summary=f"member add --learner {member.name}")
            member.initial_cluster, member.initial_state = added.initial_cluster, "existing"
        await r.converge([member])
        await workflow.execute_activity(
            etcd_member_promote, MemberPromoteInput(target=r.target(joined), name=member.name, peer_url=peer),
            start_to_close_timeout=HEALTH_TIMEOUT + timedelta(minutes=2),
            retry_policy=ETCD_RETRY, summary=f"member promote {member.name}")
        await r.status(wait=True, expect=len(joined) + 1, members=joined + [member])
        member.joined = True
        r.kind.unhealthy_since.pop(dead_name, None)
        ctx.state.requests = [c for c in ctx.state.requests if c != PREFIX + dead_name]
        assert r.fresh is not None
        await r.observe(r.fresh)
