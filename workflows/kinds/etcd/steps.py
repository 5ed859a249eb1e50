"""The etcd cluster kind's runbook: bootstrap, scale one member at a time, roll changes, destroy.

Every step observes before it acts, so a resumed reconcile repeats nothing:
  packages -> bootstrap (all members at once, state new) -> add member (member add, start with
  state existing, health gate; one at a time) -> remove member (never below quorum; member
  remove, stop, wipe, release) -> roll (one member at a time, health gate between) -> members
  (any member whose spec changed otherwise, the same way) -> observe.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kinds.etcd import (
        etcd_member_add,
        etcd_member_remove,
        etcd_wait_listening,
    )
    from orbiter.models.kinds import PlannedStep, Refused, View
    from orbiter.models.kinds.base import quorum
    from orbiter.models.kinds.etcd import config, versions
    from orbiter.models.kinds.etcd.messages import (
        MemberAddInput,
        MemberRemoveInput,
        WaitListeningInput,
    )
    from orbiter.models.kinds.etcd.spec import EtcdCluster

from ...context import Blocked
from ...runbook import Step
from ...teardown import DestroyMembers
from .reconcile import ETCD_RETRY, EtcdReconcile, rolled_fields


def _joined(view: View) -> list[str]:
    return [n.machine for n in view.nodes if n.joined]


def _range(names: list[str]) -> str:
    return ", ".join(names)


class Packages(Step[EtcdReconcile]):
    id = "packages"

    def plan(self, view: View) -> list[PlannedStep]:
        spec: EtcdCluster = view.spec
        warn = versions.warning(spec.version)
        return [self.item("packages", f"etcd-server and etcd-client {spec.version} for provider"
                          f" {spec.members.provider}" + (f" (warning: {warn})" if warn else ""), changes=False)]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        prepared = await r.fleet.packages(r.provider, {p: r.spec.version for p in config.PACKAGES})
        r.versions, r.apt_source = prepared.versions, prepared.apt_source


class Bootstrap(Step[EtcdReconcile]):
    """All members start together with state `new`: etcd needs a quorum before any is ready."""

    id = "bootstrap"

    def plan(self, view: View) -> list[PlannedStep]:
        if _joined(view):
            return []
        spec: EtcdCluster = view.spec
        names = [n.machine for n in view.nodes]  # a bootstrap cut short, or machines found again
        names += view.new_machines(spec.members, set(names), spec.members.nodes - len(names))
        return [self.item(f"bootstrap {len(names)} members",
                          f"machines {_range(names)}, certificates, every member started at once (state new),"
                          " health gate", machines=names)]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        for name in item.machines:
            if r.member(name) is None:
                r.members.append(r.new_member(name))
        await r.fleet.acquire(r.provider, r.pool, [m.name for m in r.members])
        initial = config.initial_cluster([(m.name, r.ip(m)) for m in r.members], r.spec.tls)
        for m in r.members:
            m.initial_cluster, m.initial_state = initial, "new"
        await r.certs()
        if len(r.members) > 1:
            await self.first_member_first(r)
        else:
            await r.converge(r.members)
        await r.status(wait=True, expect=len(r.members))
        for m in r.members:
            m.joined = True
        assert r.fresh is not None
        await r.observe(r.fresh)

    async def first_member_first(self, r: EtcdReconcile) -> None:
        """etcd 3.4 asks its peers, in the sorted order of their peer URLs, whether it was already
        bootstrapped, waiting up to 1 s on each that listens but does not serve yet. Members all
        starting at once can stall each other for seconds that way. The first of that order starts
        alone and serves within moments; every other member asks it first and is answered."""
        first = min(r.members, key=lambda m: config.peer_url(r.ip(m), r.spec.tls))
        rest = [m for m in r.members if m is not first]
        started = asyncio.create_task(r.converge([first]))
        await workflow.execute_activity(
            etcd_wait_listening,
            WaitListeningInput(ip=r.ip(first), port=config.PEER_PORT),
            start_to_close_timeout=timedelta(seconds=30),
            summary=f"{first.name} listening",
        )
        await asyncio.gather(started, r.converge(rest, parallel=len(rest)))


class AddMember(Step[EtcdReconcile]):
    """member add, start with state `existing`, health gate: one member at a time."""

    id = "add-member"

    def plan(self, view: View) -> list[PlannedStep]:
        joined = _joined(view)
        if not joined:
            return []  # the bootstrap makes them all
        spec: EtcdCluster = view.spec
        # A member whose add was cut short (Blocked, then retry or a new commit) is finished first.
        pending = [n.machine for n in view.nodes if not n.joined]
        missing = spec.members.nodes - len(joined) - len(pending)
        used = {n.machine for n in view.nodes}
        new = view.new_machines(spec.members, used, missing)
        return [self.item(f"add member {name}", f"machine {name}, member add, start with state existing, health gate",
                          machines=[name]) for name in pending + new]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        name = item.machines[0]
        member = r.member(name)
        if member is None:
            r.members.append(member := r.new_member(name))
        joined = [m for m in r.members if m.joined]
        await r.fleet.acquire(r.provider, r.pool, [member.name])
        await r.certs()
        if member.initial_cluster is None:
            added = await workflow.execute_activity(
                etcd_member_add,
                MemberAddInput(target=r.target(joined), name=member.name,
                               peer_url=config.peer_url(r.ip(member), r.spec.tls)),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=ETCD_RETRY,
                summary=f"member add {member.name}",
            )
            member.initial_cluster, member.initial_state = added.initial_cluster, "existing"
        await r.converge([member])
        await r.status(wait=True, expect=len(joined) + 1, members=joined + [member])
        member.joined = True
        assert r.fresh is not None
        await r.observe(r.fresh)


class RemoveMember(Step[EtcdReconcile]):
    """One member at a time from the end of the pool, the leader last; never below quorum."""

    id = "remove-member"
    gate = "scaleDown"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        spec: EtcdCluster = view.spec
        # More members than wanted: also machines found again (a workflow started afresh adopts
        # every machine its provider holds for it), which the bootstrap before starts as they were.
        surplus = len(view.nodes) - spec.members.nodes
        if surplus <= 0:
            return []
        order = [n for n in reversed(view.nodes) if not n.leader] + [n for n in reversed(view.nodes) if n.leader]
        return [self.item(f"remove member {n.machine}", "member remove, stop, wipe its data, release the machine",
                          machines=[n.machine]) for n in order[:surplus]]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        victim = r.member(item.machines[0])
        if victim is None:
            return  # removed already: a step cut short after its release
        if len(r.members) <= 1:
            raise Blocked("an etcd cluster keeps at least one member")
        status = await r.status()
        listed = {m.name for m in status.members}
        healthy = sum(1 for m in status.members if m.healthy and m.name != victim.name)
        if victim.name in listed and healthy < quorum(len(r.members) - 1):
            raise Blocked(f"removing {victim.name} now would lose quorum"
                          f" ({healthy} of the {len(r.members) - 1} members that stay are healthy)")
        await workflow.execute_activity(
            etcd_member_remove,
            MemberRemoveInput(target=r.target([m for m in r.members if m is not victim]), name=victim.name,
                              peer_url=config.peer_url(r.ip(victim), r.spec.tls)),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=ETCD_RETRY,
            summary=f"member remove {victim.name}",
        )
        await r.release(victim)
        r.kind.members = [m for m in r.members if m is not victim]
        r.fresh = None  # the member set changed: the next observation asks etcd again
        await r.observe_quietly()


class Roll(Step[EtcdReconcile]):
    """A change of version, TLS or flags: every member that stays, one at a time, health-gated."""

    id = "roll"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        spec: EtcdCluster = view.spec
        running = [n.version for n in view.nodes if n.joined and n.version]
        if refused := versions.refusal(view.cluster, running + ([view.applied.version] if view.applied else []),
                                       spec.version):
            raise Refused(refused)
        # What the last applied commit asked for, and (also without it) what the members run.
        changed = view.applied is not None and rolled_fields(view.applied) != rolled_fields(spec)
        if not changed and all(n.version in (None, spec.version) for n in view.nodes if n.joined):
            return []
        staying = [n.machine for n in view.nodes if n.joined][: spec.members.nodes]
        upgrade = (view.applied is not None and view.applied.version != spec.version) or any(
            n.version not in (None, spec.version) for n in view.nodes if n.joined)
        return [self.item(f"roll {name}", f"{name} to etcd {spec.version} with the new settings, then a health gate",
                          machines=[name], gate="upgrade" if upgrade else None) for name in staying]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        await r.certs()
        if (member := r.member(item.machines[0])) is not None:
            await r.roll(member)


class Members(Step[EtcdReconcile]):
    """Any other member whose spec changed (new certificates, a new package build): rolled the
    same way. Normally finds nothing to do."""

    id = "members"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("members", "keep every member at its spec, one at a time", changes=False)]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        await r.certs()
        for member in list(r.members):
            await r.roll(member)


class Observe(Step[EtcdReconcile]):
    id = "observe"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("observe", "members, leader, health and database size into current.yml", changes=False)]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        await r.observe(r.fresh or await r.status())


class Destroy(DestroyMembers[EtcdReconcile]):
    stops = "stop every member"
