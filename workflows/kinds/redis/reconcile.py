"""What the Redis runbook's steps share: the members, and the calls to Redis, Sentinel and the
node agents."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kinds.redis import (
        ensure_redis_secrets,
        redis_attach,
        redis_failover,
        redis_sentinels,
        redis_status,
    )
    from orbiter.models.kinds.base import quorum
    from orbiter.models.kinds.redis import KIND, config
    from orbiter.models.kinds.redis.messages import (
        SENTINEL_PORT,
        AttachInput,
        EnsureRedisSecretsInput,
        FailoverInput,
        FailoverResult,
        MemberAddress,
        RedisStatus,
        RedisStatusInput,
        RedisTarget,
        SentinelParams,
        SentinelsInput,
    )
    from orbiter.models.kinds.redis.spec import ROLE, RedisCluster, RedisMember, RedisState
    from orbiter.models.nodespec import NodeSpec

from ...context import ClusterContext
from ...fleet import Fleet, spec_digest

# A member that is not in sync within this budget stops the step: the cluster goes Blocked.
HEALTH_TIMEOUT = timedelta(minutes=3)
REDIS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=15), maximum_attempts=5,
    non_retryable_error_types=["SecretsError", "AuthFailed", "HostKeyChanged"],
)


def rolled_fields(spec: RedisCluster) -> tuple:
    """What a member's configuration files are made of: a change of any rolls every member.
    Sentinel's settings are not among them: Sentinel takes them at run time (SENTINEL SET)."""
    return spec.version, spec.tls, spec.maxmemory, spec.persistence.model_dump(), sorted(spec.flags.items())


class RedisReconcile:
    """One reconcile's shared state: the cluster, its members and what the steps learned."""

    def __init__(self, ctx: ClusterContext) -> None:
        self.ctx = ctx
        self.fleet = Fleet(ctx)
        self.spec: RedisCluster = ctx.desired.spec  # type: ignore[assignment]
        if ctx.state.kind is None:
            ctx.state.kind = RedisState()
        self.kind: RedisState = ctx.state.kind  # type: ignore[assignment]
        self.provider, self.pool = self.spec.members.provider, self.spec.members.pool
        self.versions: dict[str, str] = {}
        self.apt_source: str | None = None
        # The latest status of the whole cluster; a health gate's answer serves as the
        # observation too, so a step costs no second round trip.
        self.fresh: RedisStatus | None = None

    @property
    def members(self) -> list[RedisMember]:
        return self.kind.members

    def member(self, name: str) -> RedisMember | None:
        return next((m for m in self.members if m.name == name), None)

    def ip(self, member: RedisMember) -> str:
        return self.ctx.state.machines[member.name].ip

    def target(self, members: list[RedisMember] | None = None) -> RedisTarget:
        members = [m for m in (members or self.members) if m.name in self.ctx.state.machines]
        # redis-cli runs on the first machine that answers: replicas last seen ready first, then
        # the primary, so the death of the primary (what a watch is for) costs no SSH timeout.
        order = {n.machine: (not n.ready, bool(n.leader)) for n in self.ctx.state.status.nodes}
        via = sorted(members, key=lambda m: order.get(m.name, (True, False)))
        return RedisTarget(
            cluster=self.ctx.name,
            master=self.ctx.name,
            members=[MemberAddress(name=m.name, ip=self.ip(m)) for m in members],
            via=[self.ctx.state.machines[m.name] for m in via],
            tls=self.spec.tls,
            secrets=self.ctx.desired.secrets,
        )

    def params(self) -> SentinelParams:
        """A majority quorum. Every replica follows a new primary at once (parallel-syncs): after a
        failover they resync partially from the promoted one, so there is no wave of full syncs to
        spread out, and a replica just released cannot hold the others up until its timeout."""
        return SentinelParams(quorum=quorum(len(self.members)), down_after_ms=self.spec.sentinel.down_after_ms(),
                              failover_timeout_ms=self.spec.sentinel.failover_timeout_ms(),
                              parallel_syncs=max(1, len(self.members) - 1))

    def node_spec(self, member: RedisMember) -> NodeSpec:
        return config.member_spec(self.ctx.name, self.spec, member.name, self.ip(member), self.versions,
                                  self.apt_source)

    def new_member(self, name: str) -> RedisMember:
        return RedisMember(name=name, provider=self.provider, pool=self.pool, role=ROLE)

    def sentinel_addresses(self) -> list[str]:
        return [f"{self.ip(m)}:{SENTINEL_PORT}" for m in self.members if m.name in self.ctx.state.machines]

    async def secrets(self) -> None:
        """The password, certificates and the client bundle for the members there are now."""
        result = await workflow.execute_activity(
            ensure_redis_secrets,
            EnsureRedisSecretsInput(cluster=self.ctx.name, master=self.ctx.name, tls=self.spec.tls,
                                    members=self.target().members, secrets=self.ctx.desired.secrets),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=REDIS_RETRY,
            summary="password, certificates and client bundle",
        )
        if result.sealed_secrets:
            self.ctx.add_secrets(result.sealed_secrets)
            await self.ctx.report()

    async def status(self, wait: bool = False, member: str | None = None,
                     members: list[RedisMember] | None = None) -> RedisStatus:
        result = await workflow.execute_activity(
            redis_status,
            RedisStatusInput(target=self.target(members), wait_healthy=wait, member=member,
                             timeout_seconds=HEALTH_TIMEOUT.total_seconds()),
            start_to_close_timeout=HEALTH_TIMEOUT + timedelta(seconds=30),
            retry_policy=REDIS_RETRY,
            summary=("health gate" + (f" of {member}" if member else "")) if wait else "redis status",
        )
        if member is None:
            self.fresh = result
        return result

    async def attach(self, names: list[str], first: str, members: list[RedisMember] | None = None) -> None:
        """Members replicate the primary, their Sentinels monitor it."""
        await workflow.execute_activity(
            redis_attach,
            AttachInput(target=self.target(members), names=names, first=first, params=self.params()),
            start_to_close_timeout=timedelta(minutes=3),
            retry_policy=REDIS_RETRY,
            summary=f"replicate and watch: {', '.join(names)}",
        )

    async def failover(self, away_from: str) -> FailoverResult:
        """Sentinel moves the primary off `away_from`; a no-op once it is not the primary."""
        result = await workflow.execute_activity(
            redis_failover,
            FailoverInput(target=self.target(), away_from=away_from, pause_ms=self.params().down_after_ms // 2,
                          timeout_seconds=HEALTH_TIMEOUT.total_seconds()),
            start_to_close_timeout=HEALTH_TIMEOUT + timedelta(minutes=2),
            retry_policy=REDIS_RETRY,
            summary=f"failover away from {away_from}",
        )
        workflow.logger.info("cluster %s: failover away from %s: %s", self.ctx.name, away_from, result.detail)
        return result

    async def sentinels(self) -> list[str]:
        result = await workflow.execute_activity(
            redis_sentinels,
            SentinelsInput(target=self.target(), params=self.params(),
                           timeout_seconds=HEALTH_TIMEOUT.total_seconds()),
            start_to_close_timeout=HEALTH_TIMEOUT * 2,
            retry_policy=REDIS_RETRY,
            summary="sentinels",
        )
        return result.actions

    async def converge(self, members: list[RedisMember], parallel: int | None = None) -> None:
        specs = {m.name: self.node_spec(m) for m in members}
        await self.fleet.converge(specs, parallel)
        for m in members:
            m.spec_digest = spec_digest(specs[m.name])

    def outdated(self, member: RedisMember) -> bool:
        return spec_digest(self.node_spec(member)) != member.spec_digest

    async def roll(self, member: RedisMember) -> None:
        """One member to its spec (its Redis and Sentinel restart), then a health gate before the
        next may go. The primary is failed over first, so writes go on elsewhere."""
        if not self.outdated(member):
            return
        if len(self.members) > 1 and (await self.status()).primary == member.name:
            await self.failover(member.name)
        await self.converge([member])
        await self.status(wait=True, member=member.name)

    async def release(self, member: RedisMember) -> None:
        await self.fleet.release(member, KIND.leaves)

    async def observe_quietly(self) -> None:
        """Record the cluster as it is after a step; a failing observation must not fail the step."""
        try:
            await self.observe(await self.status())
        except Exception:  # noqa: BLE001 - the next health gate or observe reports problems
            workflow.logger.info("redis status after a step failed; continuing")

    async def observe(self, status: RedisStatus) -> None:
        """current.yml: each member's role as Redis has it, the primary as Sentinel names it."""
        by_name = {m.name: m for m in status.members}
        primary = by_name.get(status.primary or "")
        nodes = []
        for member in self.members:
            info = by_name.get(member.name)
            role = ROLE if info is None or not info.up else ("primary" if info.role == "master" else "replica")
            node = self.fleet.node_status(member, role)
            if info is not None:
                agrees = info.sentinel_up and primary is not None and info.sentinel.primary == primary.ip
                in_sync = member.name == status.primary or (info.role == "slave" and info.link_up
                                                            and not info.syncing and info.caught_up)
                node.leader = member.name == status.primary
                node.healthy = info.up and agrees
                node.ready = bool(info.up and agrees and in_sync)
                node.version = info.version
            nodes.append(node)
        self.ctx.state.status.nodes = nodes
        self.ctx.state.status.endpoints = self.sentinel_addresses()
        await self.ctx.report()
