"""Redis with Sentinel in desired.yml, and the state its ClusterWorkflow keeps.

One primary and replicas, a Sentinel beside every member. Which member is primary is Redis's
business (Sentinel fails over and rewrites its files): desired.yml says how many members and how
each is configured, never which one is primary.
"""

import re
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from orbiter.models.base import Spec
from orbiter.models.duration import Duration, parse_duration
from orbiter.models.kinds.base import KindSpec, KindState, MemberBase, PoolRef, PortRule
from orbiter.models.kinds.redis.messages import REDIS_PORT, SENTINEL_PORT

ROLE = "member"
_MEMORY = re.compile(r"^\d+(b|k|kb|m|mb|g|gb)?$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^[a-z][a-z0-9-]*$")
# Directives orbiter writes itself (or that would take Redis out of its hands); a flag may not set them.
OWNED_DIRECTIVES = {
    "bind": "orbiter binds each member to its address",
    "port": "orbiter sets the ports (tls: decides which)",
    "tls-port": "orbiter sets the ports (tls: decides which)",
    "requirepass": "orbiter generates the password (secret <cluster>_redis_auth)",
    "masterauth": "orbiter generates the password (secret <cluster>_redis_auth)",
    "masteruser": "orbiter authenticates replicas with the generated password",
    "user": "orbiter authenticates with the generated password",
    "aclfile": "orbiter authenticates with the generated password",
    "replicaof": "which member is primary is Sentinel's to decide",
    "slaveof": "which member is primary is Sentinel's to decide",
    "include": "orbiter composes the configuration files",
    "dir": "the data directory is /var/lib/redis",
    "logfile": "logs go to /var/log/redis",
    "pidfile": "systemd runs Redis",
    "daemonize": "systemd runs Redis",
    "supervised": "systemd runs Redis",
    "appendonly": "use persistence: {aof: true}",
    "maxmemory": "use maxmemory:",
    "rename-command": "orbiter manages the cluster with these commands",
    "protected-mode": "every member requires the password",
}


class RedisMembers(PoolRef):
    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: int) -> int:
        if not 1 <= value <= 9:
            raise ValueError("must be between 1 and 9")
        return value


class RedisPersistence(Spec):
    aof: StrictBool = False  # the append-only file as well as Redis's RDB snapshots


class SentinelSettings(Spec):
    """How Sentinel decides a primary is gone and how long a failover may take."""

    down_after: Duration = Field("5s", alias="downAfter")
    failover_timeout: Duration = Field("60s", alias="failoverTimeout")

    def down_after_ms(self) -> int:
        return int(parse_duration(self.down_after).total_seconds() * 1000)

    def failover_timeout_ms(self) -> int:
        return int(parse_duration(self.failover_timeout).total_seconds() * 1000)


FlagValue = StrictStr | StrictInt | StrictBool


class RedisCluster(KindSpec):
    kind: Literal["redis"]
    version: Annotated[StrictStr, Field(pattern=r"^\d+\.\d+\.\d+$")]
    members: RedisMembers
    maxmemory: StrictStr | StrictInt | None = None
    persistence: RedisPersistence = RedisPersistence()
    tls: StrictBool = True
    # redis.conf directives passed through as written (`maxmemory-policy: allkeys-lru`), rolled
    # member by member.
    flags: dict[str, FlagValue] = {}
    sentinel: SentinelSettings = SentinelSettings()

    @field_validator("maxmemory")
    @classmethod
    def _maxmemory(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, str) and not _MEMORY.match(value):
            raise ValueError(f"{value!r} is not a size: write bytes or a number with a unit (100mb, 2gb)")
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 0 (no limit) or more bytes")
        return value

    @field_validator("flags")
    @classmethod
    def _flags(cls, value: dict[str, FlagValue]) -> dict[str, FlagValue]:
        for key, flag in value.items():
            if not _DIRECTIVE.match(key):
                raise ValueError(f"{key!r} is not a redis.conf directive (lowercase, like maxmemory-policy)")
            if key in OWNED_DIRECTIVES or key.startswith("tls-"):
                why = OWNED_DIRECTIVES.get(key, "orbiter sets the TLS files and ports (tls: true or false)")
                raise ValueError(f"{key} cannot be a flag: {why}")
            if isinstance(flag, str) and ("\n" in flag or "\r" in flag):
                raise ValueError(f"{key}: a value is one line")
        return value

    def pools(self) -> list[tuple[tuple[str, ...], PoolRef]]:
        return [(("members",), self.members)]

    def member_role(self, path: tuple[str, ...]) -> tuple[str, str | None]:
        return ROLE, None

    def summary(self) -> str:
        return f"redis {self.version}"

    def member_ports(self) -> list[PortRule]:
        # TLS replaces the plain ports rather than adding ports, so the rule is the same either way.
        return [PortRule(ports=[str(REDIS_PORT), str(SENTINEL_PORT)], why="replication and Sentinel")]


class RedisMember(MemberBase):
    pass


class RedisState(KindState):
    kind: Literal["redis"] = "redis"
    members: list[RedisMember] = []
