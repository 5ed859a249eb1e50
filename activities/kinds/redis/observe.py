"""What a Redis cluster looks like, from redis-cli's answers: pure parsing and judging.

The status script (status.py) asks every member's Redis for `INFO replication server` twice and
every member's Sentinel for SENTINEL MASTER / REPLICAS / SENTINELS once; this module turns those
answers into a RedisStatus. A replica is caught up when the offset it has processed (second
round) reaches the offset its primary had reached in the first round: Sentinel's own pings move
the offsets all the time, so equal offsets would never be seen.
"""

import json
from dataclasses import dataclass

from orbiter.models.kinds.redis.messages import MemberAddress, RedisMemberInfo, RedisStatus, SentinelView

MARK = "@@orbiter-redis "
DOWN_FLAGS = {"s_down", "o_down", "disconnected"}
SETTINGS = ("down-after-milliseconds", "failover-timeout", "parallel-syncs")


def sections(stdout: str) -> dict[str, str]:
    """{"a 0": text, "b 0": text, "s 0": text, ...} from the script's marked output."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(MARK):
            current = out.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def parse_info(text: str) -> dict[str, str]:
    """INFO's `key:value` lines; {} when Redis did not answer (no `role:` line)."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            info[key] = value
    return info if "role" in info else {}


def _json(line: str) -> object:
    try:
        return json.loads(line)
    except ValueError:
        return None  # redis-cli --json prints errors as `error:"..."`


def _up(entries: object) -> tuple[list[str], list[str]]:
    """(ips seen up, ips seen down) of SENTINEL REPLICAS / SENTINELS entries."""
    up, down = [], []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and "ip" in entry:
            flags = set(str(entry.get("flags", "")).split(","))
            (down if flags & DOWN_FLAGS else up).append(str(entry["ip"]))
    return sorted(set(up)), sorted(set(down))


def parse_sentinel(text: str) -> tuple[bool, SentinelView]:
    """(answered, view) from the three --json lines of one Sentinel."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return False, SentinelView()
    master = _json(lines[0])
    if not isinstance(master, dict):
        # `error:"ERR No such master with that name"` is an answer; a refused connection is not.
        return lines[0].startswith("error:") and "No such master" in lines[0], SentinelView()
    replicas = _up(_json(lines[1]) if len(lines) > 1 else None)
    sentinels = _up(_json(lines[2]) if len(lines) > 2 else None)
    flags = set(str(master.get("flags", "")).split(","))
    return True, SentinelView(
        monitoring=True,
        primary=str(master.get("ip")) if master.get("ip") else None,
        epoch=_int(master.get("config-epoch")),
        failing_over="failover_in_progress" in flags,
        quorum=_int(master.get("quorum")),
        settings={k: str(master[k]) for k in SETTINGS if k in master},
        replicas=replicas[0], replicas_down=replicas[1], sentinels=sentinels[0], sentinels_down=sentinels[1],
    )


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class Problem:
    """Something that keeps the cluster from being Ready; `about` names the members it concerns
    (empty: the cluster as a whole) and `full` marks what only the Ready check waits for."""

    text: str
    about: frozenset[str] = frozenset()
    full: bool = False


def members_of(members: list[MemberAddress], out: dict[str, str]) -> list[RedisMemberInfo]:
    """Every member's Redis and Sentinel from the script's sections."""
    first = {m.name: parse_info(out.get(f"a {i}", "")) for i, m in enumerate(members)}
    primary_offsets = {m.ip: _int(first[m.name].get("master_repl_offset")) for m in members
                       if first[m.name].get("role") == "master"}
    infos = []
    for i, m in enumerate(members):
        info = parse_info(out.get(f"b {i}", ""))
        sentinel_up, view = parse_sentinel(out.get(f"s {i}", ""))
        role = info.get("role")
        offset = _int(info.get("slave_repl_offset" if role == "slave" else "master_repl_offset", ""))
        target = primary_offsets.get(info.get("master_host", ""))
        infos.append(RedisMemberInfo(
            name=m.name, ip=m.ip, up=bool(info), role=role,
            primary=info.get("master_host") if role == "slave" else None,
            link_up=info.get("master_link_status") == "up",
            syncing=info.get("master_sync_in_progress") == "1",
            offset=offset,
            caught_up=role == "slave" and offset is not None and target is not None and offset >= target,
            version=info.get("redis_version"), sentinel_up=sentinel_up, sentinel=view,
        ))
    return infos


def problems(infos: list[RedisMemberInfo]) -> tuple[str | None, list[Problem]]:
    """(the primary every answering Sentinel names, what is not as it should be)."""
    found: list[Problem] = []
    by_ip = {m.ip: m for m in infos}
    for m in infos:
        if not m.up:
            found.append(Problem(f"redis on {m.name} does not answer", frozenset({m.name})))
        if not m.sentinel_up:
            found.append(Problem(f"sentinel on {m.name} does not answer", frozenset({m.name})))
        elif not m.sentinel.monitoring:
            found.append(Problem(f"sentinel on {m.name} monitors nothing", frozenset({m.name})))
        elif m.sentinel.failing_over:
            found.append(Problem(f"sentinel on {m.name} is failing over"))
    named = {m.sentinel.primary for m in infos if m.sentinel.monitoring and m.sentinel.primary}
    if len(named) != 1:
        found.append(Problem("the sentinels name no primary" if not named
                             else f"the sentinels disagree on the primary ({', '.join(sorted(named))})"))
        return None, found
    primary_ip = named.pop()
    primary = by_ip.get(primary_ip)
    if primary is None:
        found.append(Problem(f"the sentinels name {primary_ip} as primary, which is no member"))
        return None, found
    if primary.up and primary.role != "master":
        found.append(Problem(f"{primary.name} is named primary but runs as a replica", frozenset({primary.name})))
    for m in infos:
        if m is primary or not m.up:
            continue
        if m.role != "slave" or m.primary != primary_ip:
            found.append(Problem(f"{m.name} does not replicate {primary.name}", frozenset({m.name})))
        elif not m.link_up or m.syncing:
            found.append(Problem(f"{m.name} is syncing from {primary.name}", frozenset({m.name})))
        elif not m.caught_up:
            found.append(Problem(f"{m.name} has not caught up with {primary.name}", frozenset({m.name})))
    for m in infos:
        if not (m.sentinel_up and m.sentinel.monitoring):
            continue
        others = [o for o in infos if o is not m]
        unseen = [o.name for o in others if o.ip not in m.sentinel.sentinels]
        if unseen:
            found.append(Problem(f"sentinel on {m.name} does not see the sentinels of {', '.join(unseen)}",
                                 frozenset({m.name, *unseen})))
        unseen = [o.name for o in infos if o is not primary and o.ip not in m.sentinel.replicas]
        if unseen:
            found.append(Problem(f"sentinel on {m.name} does not see the replicas {', '.join(unseen)}",
                                 frozenset({m.name, *unseen}), full=True))
    return primary.name, found


def stale_addresses(infos: list[RedisMemberInfo]) -> list[str]:
    """Replicas and Sentinels a Sentinel remembers that are no member (removed ones)."""
    ips = {m.ip for m in infos}
    seen = set()
    for m in infos:
        v = m.sentinel
        seen |= {*v.replicas, *v.replicas_down, *v.sentinels, *v.sentinels_down}
    return sorted(seen - ips)


def status(members: list[MemberAddress], out: dict[str, str], member: str | None = None) -> RedisStatus:
    """The cluster's status; with `member`, `healthy` judges only what concerns that member."""
    infos = members_of(members, out)
    primary, found = problems(infos)
    if member is not None:
        found = [p for p in found if not p.full and (not p.about or member in p.about)]
    return RedisStatus(members=infos, primary=primary, healthy=not found, why="; ".join(p.text for p in found),
                       stale=stale_addresses(infos))
