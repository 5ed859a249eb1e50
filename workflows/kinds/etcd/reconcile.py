"""What the etcd runbook's steps share: the cluster's members and the etcdctl and node-agent calls."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kinds.etcd import (
        ensure_etcd_certs,
        etcd_status,
    )
    from orbiter.models.duration import parse_duration
    from orbiter.models.kinds.etcd import KIND, config
    from orbiter.models.kinds.etcd.messages import (
        CaStep,
        EnsureCertsInput,
        EtcdStatusInput,
        EtcdStatusResult,
        EtcdTarget,
        MemberAddress,
    )
    from orbiter.models.kinds.etcd.spec import ROLE, EtcdCluster, EtcdMember, EtcdState
    from orbiter.models.nodespec import NodeSpec

from ...context import ClusterContext
from ...fleet import Fleet, spec_digest

# A member that is not healthy within this budget stops the step: the cluster goes Blocked.
HEALTH_TIMEOUT = timedelta(minutes=3)
ETCD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=15), maximum_attempts=5
)
# A look at health that must not take minutes when members are down: no answer counts as unhealthy.
ONCE = RetryPolicy(maximum_attempts=1)


def rolled_fields(spec: EtcdCluster) -> tuple:
    """What a member's configuration is made of: a change of any rolls every member."""
    return spec.version, spec.tls, spec.flags.model_dump()


class EtcdReconcile:
    """One reconcile's shared state: the cluster, its members and what the steps learned."""

    def __init__(self, ctx: ClusterContext) -> None:
        self.ctx = ctx
        self.fleet = Fleet(ctx)
        self.spec: EtcdCluster = ctx.desired.spec  # type: ignore[assignment]
        if ctx.state.kind is None:
            ctx.state.kind = EtcdState()
        self.kind: EtcdState = ctx.state.kind  # type: ignore[assignment]
        self.provider, self.pool = self.spec.members.provider, self.spec.members.pool
        self.versions: dict[str, str] = {}
        self.apt_source: str | None = None
        # The latest status of the whole member set; a health gate's answer serves as the
        # observation too, so a step costs no second etcdctl round trip.
        self.fresh: EtcdStatusResult | None = None

    @property
    def members(self) -> list[EtcdMember]:
        return self.kind.members

    def member(self, name: str) -> EtcdMember | None:
        return next((m for m in self.members if m.name == name), None)

    def ip(self, member: EtcdMember) -> str:
        return self.ctx.state.machines[member.name].ip

    def endpoints(self, members: list[EtcdMember] | None = None) -> list[str]:
        return [config.client_url(self.ip(m), self.spec.tls) for m in (members or self.members)]

    def target(self, members: list[EtcdMember] | None = None) -> EtcdTarget:
        members = [m for m in (members or self.members) if m.name in self.ctx.state.machines]
        return EtcdTarget(
            cluster=self.ctx.name,
            via=[self.ctx.state.machines[m.name] for m in members],
            endpoints=self.endpoints(members),
            tls=self.spec.tls,
            secrets=self.ctx.desired.secrets,
        )

    def node_spec(self, member: EtcdMember) -> NodeSpec:
        assert member.initial_cluster is not None and member.initial_state is not None
        return config.member_spec(self.ctx.name, self.spec, member.name, self.ip(member), member.initial_cluster,
                                  member.initial_state, self.versions, self.apt_source)

    def new_member(self, name: str) -> EtcdMember:
        return EtcdMember(name=name, provider=self.provider, pool=self.pool, role=ROLE)

    async def certs(self, ca_step: CaStep = "") -> None:
        if not self.spec.tls:
            return
        policy = self.spec.certificates
        result = await workflow.execute_activity(
            ensure_etcd_certs,
            EnsureCertsInput(
                cluster=self.ctx.name,
                members=[MemberAddress(name=m.name, ip=self.ip(m)) for m in self.members],
                endpoints=self.endpoints(),
                secrets=self.ctx.desired.secrets,
                validity_seconds=parse_duration(policy.validity).total_seconds() if policy else None,
                renew_before_seconds=parse_duration(policy.renew_before).total_seconds() if policy else None,
                ca_step=ca_step,
            ),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=ETCD_RETRY,
            summary="certificates",
        )
        for m in self.members:
            m.cert_expiry = result.expiry.get(m.name, m.cert_expiry)
            # A member from before expiries were kept runs the certificate it has: nothing to roll.
            m.cert_applied = m.cert_applied or m.cert_expiry
            if m.trust_applied is None and m.spec_digest is not None:  # running since before CAs were tracked
                m.trust_applied = result.trust_before
        self.kind.trust = result.trust or self.kind.trust
        if result.sealed_secrets:
            self.ctx.add_secrets(result.sealed_secrets)
            await self.ctx.report()

    async def status(self, wait: bool = False, expect: int | None = None,
                     members: list[EtcdMember] | None = None, retry: RetryPolicy = ETCD_RETRY) -> EtcdStatusResult:
        result = await workflow.execute_activity(
            etcd_status,
            EtcdStatusInput(target=self.target(members), wait_healthy=wait, expect_members=expect,
                            timeout_seconds=HEALTH_TIMEOUT.total_seconds()),
            start_to_close_timeout=HEALTH_TIMEOUT + timedelta(seconds=30),
            retry_policy=retry,
            summary="health gate" if wait else "etcd status",
        )
        self.fresh = result
        return result

    async def converge(self, members: list[EtcdMember], parallel: int | None = None) -> None:
        specs = {m.name: self.node_spec(m) for m in members}
        await self.fleet.converge(specs, parallel)
        for m in members:
            m.spec_digest, m.cert_applied = spec_digest(specs[m.name]), m.cert_expiry
            m.trust_applied = self.kind.trust

    async def roll(self, member: EtcdMember) -> None:
        """One member to its spec, then a health gate before the next may go."""
        if (spec_digest(self.node_spec(member)) == member.spec_digest and member.cert_applied == member.cert_expiry
                and member.trust_applied == self.kind.trust):
            return
        await self.converge([member])
        await self.status(wait=True, expect=len(self.members))

    async def release(self, member: EtcdMember) -> None:
        await self.fleet.release(member, KIND.leaves)

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
                node.db_size_in_use, node.alarms = info.db_size_in_use, info.alarms
                node.version = info.version
                node.ready = bool(info.healthy)
            node.cert_expiry = member.cert_expiry
            nodes.append(node)
        self.ctx.state.status.nodes = nodes
        self.ctx.state.status.endpoints = self.endpoints() if self.members else []
        await self.ctx.report()

    # -- a member out for a while (OS updates, workflows/osupdates.py) ---------------------------
    async def before_disruption(self, name: str) -> None:
        """Every member healthy first: with one down the others keep a quorum."""
        await self.status(wait=True, expect=len(self.members))

    async def after_disruption(self, name: str) -> None:
        await self.status(wait=True, expect=len(self.members))
        assert self.fresh is not None
        await self.observe(self.fresh)
