"""Who replicates whom and who watches: replicas attached, Sentinels told what to monitor, a
failover asked of Sentinel, Sentinels reset to forget removed members.

Each activity observes first and acts only where the cluster is not yet as wanted, so a retry
after a crash at any line (or a replayed step) does nothing twice. Above all a failover: it is
asked for only while the member to leave is still the primary and no Sentinel is failing over.
Errors: RedisError and RedisUnhealthy are retried; NoReplica (no replica can take over yet) too.
"""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.progress import heartbeat
from orbiter.models.kinds.redis.messages import (
    REDIS_PORT,
    AttachInput,
    AttachResult,
    FailoverInput,
    FailoverResult,
    MemberAddress,
    RedisMemberInfo,
    RedisStatus,
    SentinelParams,
    SentinelsInput,
    SentinelsResult,
)

from .cli import RedisCli, redis_cli
from .status import wait_status

SETTLE_SECONDS = 120.0


def _named_primary(cli: RedisCli, status: RedisStatus) -> MemberAddress | None:
    """The member the monitoring Sentinels name; None when none monitors yet. Sentinels that
    disagree (a failover spreading) are waited out."""
    named = {m.sentinel.primary for m in status.members if m.sentinel.monitoring and m.sentinel.primary}
    if not named:
        return None
    if len(named) > 1:
        raise ApplicationError(f"{cli.where()}: the sentinels disagree on the primary ({', '.join(sorted(named))})",
                               type="RedisUnhealthy")
    ip = named.pop()
    found = next((m for m in cli.target.members if m.ip == ip), None)
    if found is None:
        raise ApplicationError(f"{cli.where()}: the sentinels name {ip} as primary, which is no member",
                               type="RedisUnhealthy", non_retryable=True)
    return found


def _settings(params: SentinelParams) -> str:
    return (f"down-after-milliseconds {params.down_after_ms} failover-timeout {params.failover_timeout_ms}"
            f" parallel-syncs {params.parallel_syncs} quorum {params.quorum}")


def _watch(cli: RedisCli, m: MemberAddress, info: RedisMemberInfo, primary: MemberAddress,
           params: SentinelParams) -> str | None:
    """The member's Sentinel monitors `primary` with `params` (auth-pass each time: Sentinel
    does not show it, so it cannot be compared)."""
    master = cli.target.master
    commands = [f"SENTINEL MONITOR {master} {primary.ip} {REDIS_PORT} {params.quorum}"]
    if info.sentinel.monitoring:
        commands = []
    commands.append(f"SENTINEL SET {master} auth-pass $REDISCLI_AUTH {_settings(params)}")
    cli.sentinel(m, *commands)
    return f"sentinel on {m.name} monitors {primary.name}" if not info.sentinel.monitoring else None


@activity.defn
def redis_attach(input: AttachInput) -> AttachResult:
    """Make members replicas of the primary (the one Sentinel names, else `first`) and their
    Sentinels monitor it. A member already so is left alone."""
    actions: list[str] = []
    with redis_cli(input.target) as cli:
        status = cli.status()
        primary = _named_primary(cli, status) or next(m for m in input.target.members if m.name == input.first)
        by_name = {m.name: m for m in input.target.members}
        for name in input.names:
            m, info = by_name[name], status.member(name)
            assert info is not None
            if name != primary.name and not (info.role == "slave" and info.primary == primary.ip):
                heartbeat(f"{name} replicates {primary.name}")
                cli.redis(m, f"REPLICAOF {primary.ip} {REDIS_PORT}", "CONFIG REWRITE")
                actions.append(f"{name} replicates {primary.name}")
        for name in input.names:
            info = status.member(name)
            assert info is not None
            if done := _watch(cli, by_name[name], info, primary, input.params):
                actions.append(done)
        return AttachResult(primary=primary.name, actions=actions)


@activity.defn
def redis_failover(input: FailoverInput) -> FailoverResult:
    """Move the primary away from `away_from` through Sentinel, unless it has moved already or a
    failover runs (then only finish it): never a second failover for one request.

    No acknowledged write is lost (cli.failover): writes on the old primary wait while Sentinel
    promotes a replica that has them all, and the old primary becomes its replica the moment the
    promotion shows. Sentinel would convert it only when it next asks it, seconds later, and the
    writes it took meanwhile would be lost. The waiting clients then meet a replica (READONLY)
    and find the new primary through Sentinel."""
    victim = input.away_from
    with redis_cli(input.target) as cli:
        status = wait_status(cli, SETTLE_SECONDS, done=_settled)
        old = next(m for m in input.target.members if m.name == victim)
        asked, detail = status.primary == victim, f"{victim} was no longer the primary"
        if asked:
            if len(input.target.members) < 2:
                raise ApplicationError(f"{cli.where()}: {victim} is the only member: nothing to fail over to",
                                       type="NoReplica", non_retryable=True)
            heartbeat(f"failover away from {victim}")
            try:
                detail = _timeline(victim, cli.failover(old, _sentinel_to_ask(status, cli.target.members, victim),
                                                        input.pause_ms, 30))
            except ApplicationError as err:
                if "NOGOODSLAVE" in str(err):
                    raise ApplicationError(f"{cli.where()}: failover away from {victim}: no replica can take over"
                                           " yet", type="NoReplica") from None
                raise
        # Also after a retry: Sentinel's choice spread to every Sentinel, the old primary its replica.
        status = wait_status(cli, input.timeout_seconds,
                             done=lambda s: _settled(s) and s.primary not in (None, victim))
        new = next(m for m in input.target.members if m.name == status.primary)
        was = status.member(victim)
        if was is not None and was.up and not (was.role == "slave" and was.primary == new.ip):
            cli.redis(old, f"REPLICAOF {new.ip} {REDIS_PORT}", "CONFIG REWRITE", "CLIENT UNPAUSE")

        def follows(s: RedisStatus) -> bool:
            again = s.member(victim)
            follower = again is not None and again.role == "slave" and again.primary == new.ip
            return _settled(s) and (again is None or not again.up or follower)

        status = wait_status(cli, input.timeout_seconds, done=follows)
        return FailoverResult(primary=status.primary or "", failed_over=asked, detail=detail)


def _timeline(victim: str, printed: str) -> str:
    """"<new ip> <paused> <caught up> <demoted>" (epoch seconds) as one line for the history."""
    try:
        new, paused, caught, demoted = printed.split()[-4:]
        return (f"writes on {victim} paused {float(demoted) - float(paused):.2f}s (replicas caught up in"
                f" {float(caught) - float(paused):.2f}s); {new} promoted, {victim} its replica")
    except ValueError:
        return printed[-200:]


def _settled(s: RedisStatus) -> bool:
    return s.primary is not None and not any(m.sentinel.failing_over for m in s.members)


def _sentinel_to_ask(status: RedisStatus, members: list[MemberAddress], victim: str) -> MemberAddress:
    """A Sentinel that answers, one beside a replica first."""
    up = [m for m in members if (i := status.member(m.name)) is not None and i.sentinel_up]
    return next((m for m in up if m.name != victim), up[0] if up else members[0])


def _forgets(info: RedisMemberInfo, members: list[MemberAddress]) -> bool:
    ips = {m.ip for m in members}
    v = info.sentinel
    return bool({*v.replicas, *v.replicas_down, *v.sentinels, *v.sentinels_down} - ips)


@activity.defn
def redis_sentinels(input: SentinelsInput) -> SentinelsResult:
    """Every Sentinel monitors the primary with the quorum and settings wanted, and knows exactly
    the members: one that remembers removed members is reset (SENTINEL RESET), then waited on
    until it has found the other Sentinels again, before the next one is reset."""
    actions: list[str] = []
    members = input.target.members
    with redis_cli(input.target) as cli:
        status = wait_status(cli, SETTLE_SECONDS, done=_settled)
        primary = _named_primary(cli, status)
        if primary is None:
            raise ApplicationError(f"{cli.where()}: no sentinel monitors a primary", type="RedisUnhealthy")
        wanted = {"down-after-milliseconds": str(input.params.down_after_ms),
                  "failover-timeout": str(input.params.failover_timeout_ms),
                  "parallel-syncs": str(input.params.parallel_syncs)}
        if down := [m.name for m in status.members if not m.sentinel_up]:
            raise ApplicationError(f"{cli.where()}: the sentinels on {', '.join(down)} do not answer",
                                   type="RedisUnhealthy")
        for m in members:
            info = status.member(m.name)
            assert info is not None
            v = info.sentinel
            if not v.monitoring or v.quorum != input.params.quorum or v.settings != wanted:
                _watch(cli, m, info, primary, input.params)
                actions.append(f"sentinel on {m.name}: quorum {input.params.quorum}, settings")
        for m in members:
            info = status.member(m.name)
            assert info is not None
            if not _forgets(info, members):
                continue
            heartbeat(f"sentinel on {m.name} forgets removed members")
            cli.sentinel(m, f"SENTINEL RESET {cli.target.master}")
            actions.append(f"sentinel on {m.name} reset")

            def found(s: RedisStatus, name: str = m.name) -> bool:
                # The other Sentinels (their hello, every 2s) before the next is reset, so a failover
                # stays possible throughout; the replicas come with the master's next INFO (every
                # 10s), which the step's health gate then waits for, for all Sentinels at once.
                again = s.member(name)
                return (again is not None and again.sentinel.monitoring and not _forgets(again, members)
                        and all(o.ip in again.sentinel.sentinels for o in s.members if o.name != name))

            wait_status(cli, input.timeout_seconds, done=found)
    return SentinelsResult(actions=actions)
