"""The etcd cluster kind: bootstrap, scale one member at a time, roll changes, destroy.

Runbook (each step observes before it acts, so a resumed reconcile repeats nothing):
  packages -> machines -> certificates -> bootstrap (all members at once, state new)
  -> scale up (member add, start with state existing, health gate; one at a time)
  -> scale down (never the leader while another can go; member remove, stop, wipe, release)
  -> roll changed members (one at a time, health gate between) -> observe.
"""

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.etcd import (
        ensure_etcd_certs,
        etcd_member_add,
        etcd_member_remove,
        etcd_status,
        etcd_wait_listening,
    )
    from orbiter.models.cluster import DesiredUpdate, MemberRecord
    from orbiter.models.desired import EtcdCluster, StaticProvider, machine_name
    from orbiter.models.etcd import (
        CONFIG_FILE,
        DATA_DIR,
        PKI_DIR,
        EnsureCertsInput,
        EtcdStatusInput,
        EtcdStatusResult,
        EtcdTarget,
        MemberAddInput,
        MemberAddress,
        MemberRemoveInput,
        WaitListeningInput,
    )
    from orbiter.models.kinds import etcd as plan
    from orbiter.models.nodespec import NodeSpec

    from .blocked import Blocked
    from .fleet import spec_digest
    from .reconcile import KindReconcile

if TYPE_CHECKING:
    from .cluster import ClusterWorkflow

ROLE = "member"
# A member that is not healthy within this budget stops the step: the cluster goes Blocked.
HEALTH_TIMEOUT = timedelta(minutes=3)
# workflow.patched id: a bootstrap starts the member whose peer URL sorts first, then the rest.
PATCH_FIRST_MEMBER_FIRST = "etcd-bootstrap-first-member-first"
ETCD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=15), maximum_attempts=5
)


class EtcdReconcile(KindReconcile):
    def __init__(self, cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
        super().__init__(cluster, desired)
        assert isinstance(desired.spec, EtcdCluster)
        self.spec: EtcdCluster = desired.spec
        self.provider = self.spec.members.provider
        self.pool = self.spec.members.pool
        self.versions: dict[str, str] = {}
        self.apt_source: str | None = None
        # The latest status of the whole member set; a health gate's answer serves as the
        # observation too, so a step costs no second etcdctl round trip.
        self.fresh: EtcdStatusResult | None = None

    # --- the runbook --------------------------------------------------------------------------
    async def run(self) -> None:
        if self.spec.destroyed:
            await self.destroy()
            return
        await self.step("packages")
        prepared = await self.fleet.packages(self.provider, {p: self.spec.version for p in plan.PACKAGES})
        self.versions, self.apt_source = prepared.versions, prepared.apt_source
        if not any(m.joined for m in self.members):
            await self.bootstrap()
        # A member whose add was cut short (Blocked, then retry or a new commit) is finished first:
        # it is already counted in self.members but has no etcd membership or machine to rely on.
        while len(self.members) < self.spec.members.nodes or any(not m.joined for m in self.members):
            await self.cluster.checkpoint()
            await self.add_member()
        while len(self.members) > self.spec.members.nodes:
            await self.cluster.checkpoint()
            await self.remove_member()
        await self.roll()
        if self.fresh is None:
            await self.step("observe")
            self.fresh = await self.status()
        await self.observe(self.fresh)

    # --- pieces -------------------------------------------------------------------------------
    def free_ids(self, count: int) -> list[str]:
        """Machine ids for new members: the lowest unused names (local) or listed machines (static)."""
        used = {m.name for m in self.members}
        provider = self.desired.providers[self.provider]
        if isinstance(provider, StaticProvider):
            candidates = [m.id for m in provider.pools.get(self.pool, [])]
        else:
            candidates = [machine_name(self.name, self.pool, i) for i in range(len(used) + count + 1)]
        free = [c for c in candidates if c not in used][:count]
        if len(free) < count:
            raise Blocked(f"pool {self.pool} of provider {self.provider} has no free machine for a new member")
        return free

    def endpoints(self, members: list[MemberRecord] | None = None) -> list[str]:
        return [plan.client_url(self.ip(m), self.spec.tls) for m in (members or self.members)]

    def target(self, members: list[MemberRecord] | None = None) -> EtcdTarget:
        members = [m for m in (members or self.members) if m.name in self.state.machines]
        return EtcdTarget(
            cluster=self.name,
            via=[self.state.machines[m.name] for m in members],
            endpoints=self.endpoints(members),
            tls=self.spec.tls,
            secrets=self.desired.secrets,
        )

    def node_spec(self, member: MemberRecord) -> NodeSpec:
        return plan.member_spec(
            self.name,
            self.spec,
            member.name,
            self.ip(member),
            member.join["initial_cluster"],
            member.join["state"],
            self.versions,
            self.apt_source,
        )

    async def certs(self) -> None:
        if not self.spec.tls:
            return
        result = await workflow.execute_activity(
            ensure_etcd_certs,
            EnsureCertsInput(
                cluster=self.name,
                members=[MemberAddress(name=m.name, ip=self.ip(m)) for m in self.members],
                endpoints=self.endpoints(),
                secrets=self.desired.secrets,
            ),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=ETCD_RETRY,
            summary="certificates",
        )
        if result.sealed_secrets:
            self.state.sealed_secrets.update(result.sealed_secrets)
            # Later activities read them from the overlay until the write-back commits them.
            self.desired.secrets.extra.update(result.sealed_secrets)
            await self.cluster.report()

    async def status(
        self, wait: bool = False, expect: int | None = None, members: list[MemberRecord] | None = None
    ) -> EtcdStatusResult:
        result = await workflow.execute_activity(
            etcd_status,
            EtcdStatusInput(
                target=self.target(members),
                wait_healthy=wait,
                expect_members=expect,
                timeout_seconds=HEALTH_TIMEOUT.total_seconds(),
            ),
            start_to_close_timeout=HEALTH_TIMEOUT + timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=ETCD_RETRY,
            summary="health gate" if wait else "etcd status",
        )
        self.fresh = result
        return result

    async def converge(self, members: list[MemberRecord], parallel: int | None = None) -> None:
        specs = {m.name: self.node_spec(m) for m in members}
        await self.fleet.converge(specs, parallel)
        for m in members:
            m.spec_digest = spec_digest(specs[m.name])

    async def bootstrap(self) -> None:
        """All members start together with state `new`: etcd needs a quorum before any is ready."""
        if not self.members:
            ids = self.free_ids(self.spec.members.nodes)
            self.state.members = [MemberRecord(name=i, provider=self.provider, pool=self.pool, role=ROLE) for i in ids]
        await self.step(f"bootstrap {len(self.members)} members")
        await self.fleet.acquire(self.provider, self.pool, [m.name for m in self.members])
        initial = plan.initial_cluster([(m.name, self.ip(m)) for m in self.members], self.spec.tls)
        for m in self.members:
            m.join = {"initial_cluster": initial, "state": "new"}
        await self.certs()
        if len(self.members) > 1 and workflow.patched(PATCH_FIRST_MEMBER_FIRST):
            await self.start_first_member_first()
        else:
            await self.converge(self.members, parallel=len(self.members))
        await self.status(wait=True, expect=len(self.members))
        for m in self.members:
            m.joined = True
        await self.observe(self.fresh)

    async def start_first_member_first(self) -> None:
        """etcd 3.4 asks its peers, in the sorted order of their peer URLs, whether it was already
        bootstrapped, waiting up to 1 s on each that listens but does not serve yet. Members all
        starting at once can stall each other for seconds that way. The first of that order starts
        alone and serves within moments; every other member asks it first and is answered."""
        first = min(self.members, key=lambda m: plan.peer_url(self.ip(m), self.spec.tls))
        rest = [m for m in self.members if m is not first]
        started = asyncio.create_task(self.converge([first]))
        await workflow.execute_activity(
            etcd_wait_listening,
            WaitListeningInput(ip=self.ip(first), port=plan.PEER_PORT),
            start_to_close_timeout=timedelta(seconds=30),
            summary=f"{first.name} listening",
        )
        await asyncio.gather(started, self.converge(rest, parallel=len(rest)))

    async def add_member(self) -> None:
        """member add, start with state `existing`, health gate: one member at a time."""
        pending = [m for m in self.members if not m.joined]
        if pending:
            member = pending[0]  # resumed after a crash: finish that one first
        else:
            member = MemberRecord(name=self.free_ids(1)[0], provider=self.provider, pool=self.pool, role=ROLE)
            self.members.append(member)
        joined = [m for m in self.members if m.joined]
        await self.step(f"add member {member.name}")
        await self.fleet.acquire(self.provider, self.pool, [member.name])
        await self.certs()
        if "initial_cluster" not in member.join:
            added = await workflow.execute_activity(
                etcd_member_add,
                MemberAddInput(
                    target=self.target(joined), name=member.name, peer_url=plan.peer_url(self.ip(member), self.spec.tls)
                ),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=ETCD_RETRY,
                summary=f"member add {member.name}",
            )
            member.join = {"initial_cluster": added.initial_cluster, "state": "existing"}
        await self.converge([member])
        await self.status(wait=True, expect=len(joined) + 1, members=joined + [member])
        member.joined = True
        await self.observe(self.fresh)

    async def remove_member(self) -> None:
        """Never below one member, never the leader while another can go, never below quorum."""
        status = await self.status()
        healthy = sum(1 for m in status.members if m.healthy)
        if len(self.members) <= 1:
            raise Blocked("an etcd cluster keeps at least one member")
        if healthy - 1 < plan.quorum(len(self.members) - 1):
            raise Blocked(f"removing a member now would lose quorum ({healthy} of {len(self.members)} healthy)")
        leaders = {m.name for m in status.members if m.leader}
        listed = {m.name for m in status.members}
        # A member already removed from etcd (a step cut short) goes first; then from the end, leader last.
        gone = [m for m in self.members if m.joined and m.name not in listed]
        candidates = (
            gone or [m for m in reversed(self.members) if m.name not in leaders] or list(reversed(self.members))
        )
        victim = candidates[0]
        await self.step(f"remove member {victim.name}")
        await workflow.execute_activity(
            etcd_member_remove,
            MemberRemoveInput(
                target=self.target([m for m in self.members if m is not victim]),
                name=victim.name,
                peer_url=plan.peer_url(self.ip(victim), self.spec.tls),
            ),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=ETCD_RETRY,
            summary=f"member remove {victim.name}",
        )
        await self.release(victim)
        self.state.members = [m for m in self.members if m is not victim]
        self.fresh = None  # the member set changed: the next observation asks etcd again
        await self.observe_quietly()

    async def roll(self) -> None:
        """Members whose spec changed (version, flags, certificates), one at a time, health-gated."""
        await self.certs()
        for member in list(self.members):
            if spec_digest(self.node_spec(member)) == member.spec_digest:
                continue
            await self.cluster.checkpoint()
            await self.step(f"roll {member.name}")
            await self.converge([member])
            await self.status(wait=True, expect=len(self.members))

    async def release(self, member: MemberRecord) -> None:
        await self.fleet.release(
            member, units=[plan.UNIT], files=[CONFIG_FILE, PKI_DIR], packages=list(plan.PACKAGES), data_dirs=[DATA_DIR]
        )

    async def destroy(self) -> None:
        await self.step("destroy")
        for member in list(self.members):
            await self.release(member)
            self.state.members = [m for m in self.members if m is not member]
        self.state.status.nodes = []
        self.state.status.endpoints = []

    async def observe_quietly(self) -> None:
        """Record the cluster as it is after a step; a failing observation must not fail the step."""
        try:
            await self.observe(await self.status())
        except Exception:  # noqa: BLE001 - the next health gate or observe reports problems
            workflow.logger.info("etcd status after a step failed; continuing")

    async def observe(self, status: EtcdStatusResult) -> None:
        by_name = {m.name: m for m in status.members}
        nodes = []
        for member in self.members:
            node = self.fleet.node_status(member, ROLE)
            info = by_name.get(member.name)
            if info is not None:
                node.healthy, node.leader, node.db_size = info.healthy, info.leader, info.db_size
                node.version = info.version
                node.ready = bool(info.healthy)
            nodes.append(node)
        self.state.status.nodes = nodes
        self.state.status.endpoints = self.endpoints() if self.members else []
        await self.cluster.report()


async def reconcile(cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
    await EtcdReconcile(cluster, desired).run()
