"""The Redis cluster kind's runbook: bootstrap, scale, roll, keep Sentinel right, destroy.

Every step observes before it acts, so a resumed reconcile repeats nothing:
  packages -> bootstrap (every member at once; the first is primary, the others replicate it,
  every Sentinel monitors it; health gate) -> add member (a replica and a Sentinel; one at a
  time) -> remove member (from the end of the pool, replicas first; the primary only after a
  `failover from` step moved it to a member that stays) -> roll (replicas one at a time, a
  failover, then the old primary; health-gated) -> members (any other changed spec, the same
  way) -> sentinels (quorum and settings; SENTINEL RESET, one at a time, where one remembers
  removed members) -> observe.

Which member is primary is Sentinel's: the plan reads it from current.yml (the leader), a step
checks it again before it acts, and no step ever moves it back.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.current import NodeStatus
    from orbiter.models.kinds import PlannedStep, Refused, View
    from orbiter.models.kinds.redis import config
    from orbiter.models.kinds.redis.spec import RedisCluster

from ...context import Blocked
from ...runbook import Step
from ...teardown import DestroyMembers
from .reconcile import RedisReconcile, rolled_fields


def _joined(view: View) -> list[NodeStatus]:
    return [n for n in view.nodes if n.joined]


def _replicas_first(nodes: list[NodeStatus]) -> list[NodeStatus]:
    return [n for n in nodes if not n.leader] + [n for n in nodes if n.leader]


class Packages(Step[RedisReconcile]):
    id = "packages"

    def plan(self, view: View) -> list[PlannedStep]:
        spec: RedisCluster = view.spec
        return [self.item("packages", f"redis-server, redis-sentinel and redis-tools {spec.version} for provider"
                          f" {spec.members.provider}", changes=False)]

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        prepared = await r.fleet.packages(r.provider, {p: r.spec.version for p in config.PACKAGES})
        r.versions, r.apt_source = config.apt_versions(prepared.versions), prepared.apt_source


class Bootstrap(Step[RedisReconcile]):
    """Every member starts at once; the first is primary, the others replicate it, every Sentinel
    monitors it; Ready when every replica is in sync and every Sentinel sees the others."""

    id = "bootstrap"

    def plan(self, view: View) -> list[PlannedStep]:
        if _joined(view):
            return []
        spec: RedisCluster = view.spec
        names = [n.machine for n in view.nodes]  # a bootstrap cut short, or machines found again
        names += view.new_machines(spec.members, set(names), spec.members.nodes - len(names))
        return [self.item(f"bootstrap {len(names)} members",
                          f"machines {', '.join(names)}, password and certificates, Redis and Sentinel on each;"
                          f" {names[0]} primary, the others its replicas, health gate", machines=names)]

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        for name in item.machines:
            if r.member(name) is None:
                r.members.append(r.new_member(name))
        await r.fleet.acquire(r.provider, r.pool, [m.name for m in r.members])
        await r.secrets()
        await r.converge(r.members, parallel=len(r.members))
        await r.attach([m.name for m in r.members], first=item.machines[0])
        await r.status(wait=True)
        for m in r.members:
            m.joined = True
        assert r.fresh is not None
        await r.observe(r.fresh)


class AddMember(Step[RedisReconcile]):
    """A new replica and its Sentinel: the other Sentinels find both through the primary."""

    id = "add-member"

    def plan(self, view: View) -> list[PlannedStep]:
        if not _joined(view):
            return []  # the bootstrap makes them all
        spec: RedisCluster = view.spec
        pending = [n.machine for n in view.nodes if not n.joined]  # an add cut short is finished first
        missing = spec.members.nodes - len(_joined(view)) - len(pending)
        new = view.new_machines(spec.members, {n.machine for n in view.nodes}, missing)
        return [self.item(f"add member {name}", f"machine {name}, Redis replicating the primary and a Sentinel"
                          " watching it, health gate", machines=[name]) for name in pending + new]

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        name = item.machines[0]
        member = r.member(name)
        if member is None:
            r.members.append(member := r.new_member(name))
        await r.fleet.acquire(r.provider, r.pool, [name])
        await r.secrets()
        await r.converge([member])
        joined = [m for m in r.members if m.joined]
        await r.attach([name], first=(joined or [member])[0].name, members=joined + [member])
        await r.status(wait=True, member=name, members=joined + [member])
        member.joined = True
        await r.observe_quietly()


def _leaving(view: View) -> list[NodeStatus]:
    """The members a scale-down removes: from the end of the pool, the last added first."""
    spec: RedisCluster = view.spec
    surplus = len(view.nodes) - spec.members.nodes
    return list(reversed(view.nodes[-surplus:])) if surplus > 0 and _joined(view) else []


class FailoverFrom(Step[RedisReconcile]):
    """Before the primary's machine goes (a scale-down) or restarts (a roll): Sentinel promotes a
    replica. It asks who is primary first, so a retried or replayed step never fails over twice."""

    id = "failover"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        return []  # planned by RemoveMember and Roll, where the primary is to go

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        if r.member(item.machines[0]) is not None and len(r.members) > 1:
            await r.failover(item.machines[0])


class RemoveMember(Step[RedisReconcile]):
    """Replicas first; the primary after a failover to a member that stays. Stop, wipe, release."""

    id = "remove-member"
    gate = "scaleDown"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        out = []
        for n in _replicas_first(_leaving(view)):
            if n.leader:
                out.append(FAILOVER.item(f"failover from {n.machine}", f"Sentinel promotes a replica that stays;"
                                         f" {n.machine} leaves as a replica", machines=[n.machine],
                                         gate="scaleDown"))
            out.append(self.item(f"remove member {n.machine}", "stop Redis and Sentinel, wipe the data, release"
                                 " the machine", machines=[n.machine]))
        return out

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        victim = r.member(item.machines[0])
        if victim is None:
            return  # removed already: a step cut short after its release
        if len(r.members) <= 1:
            raise Blocked("a redis cluster keeps at least one member")
        if (await r.status()).primary == victim.name:  # it became primary after the plan
            await r.failover(victim.name)
        await r.release(victim)
        r.kind.members = [m for m in r.members if m is not victim]
        r.fresh = None  # the member set changed: the next observation asks again
        await r.observe_quietly()


class Roll(Step[RedisReconcile]):
    """A change of version, flags, maxmemory or persistence: replicas one at a time, then a
    failover, then the old primary; each health-gated."""

    id = "roll"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        spec: RedisCluster = view.spec
        if view.applied is not None and view.applied.tls != spec.tls and _joined(view):
            raise Refused(f"cluster {view.cluster}: tls cannot change on a running redis cluster (Sentinel and the"
                          f" replicas would stop understanding each other): keep tls: {str(view.applied.tls).lower()},"
                          " or destroy the cluster and create it again")
        changed = view.applied is not None and rolled_fields(view.applied) != rolled_fields(spec)
        if not changed and all(n.version in (None, spec.version) for n in _joined(view)):
            return []
        staying = [n for n in _joined(view) if n not in _leaving(view)]
        upgrade = (view.applied is not None and view.applied.version != spec.version) or any(
            n.version not in (None, spec.version) for n in staying)
        gate = "upgrade" if upgrade else None
        out = []
        for n in _replicas_first(staying):
            if n.leader and len(staying) > 1:
                out.append(FAILOVER.item(f"failover from {n.machine}", "Sentinel promotes a rolled replica, so"
                                         f" {n.machine} restarts as a replica", machines=[n.machine], gate=gate))
            out.append(self.item(f"roll {n.machine}", f"{n.machine} to redis {spec.version} with the new settings,"
                                 " then a health gate", machines=[n.machine], gate=gate))
        return out

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        await r.secrets()
        if (member := r.member(item.machines[0])) is not None:
            await r.roll(member)


class Members(Step[RedisReconcile]):
    """Any other member whose spec changed (renewed certificates, a new package build): rolled the
    same way, replicas first. Normally finds nothing to do."""

    id = "members"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("members", "keep every member at its spec, replicas first, one at a time", changes=False)]

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        await r.secrets()
        outdated = [m for m in r.members if r.outdated(m)]
        if not outdated:
            return
        primary = (await r.status()).primary
        for member in sorted(outdated, key=lambda m: m.name == primary):
            await r.roll(member)


class Sentinels(Step[RedisReconcile]):
    id = "sentinels"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("sentinels", "every Sentinel monitors the primary with a majority quorum and forgets"
                          " removed members (SENTINEL RESET, one at a time), health gate", changes=False)]

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        for action in await r.sentinels():
            workflow.logger.info("cluster %s: %s", r.ctx.name, action)
        await r.status(wait=True)


class Observe(Step[RedisReconcile]):
    id = "observe"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("observe", "roles, the primary as Sentinel names it, replication and versions into"
                          " current.yml", changes=False)]

    async def run(self, r: RedisReconcile, item: PlannedStep) -> None:
        await r.observe(r.fresh or await r.status())


class Destroy(DestroyMembers[RedisReconcile]):
    stops = "stop Redis and Sentinel, wipe the data"


FAILOVER = FailoverFrom()
