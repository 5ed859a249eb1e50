"""The Redis kind's activities: secrets, status and health gate, replication and Sentinel."""

from collections.abc import Callable
from typing import Any

from .secrets import ensure_redis_secrets
from .status import redis_status
from .topology import redis_attach, redis_failover, redis_sentinels

ACTIVITIES: list[Callable[..., Any]] = [ensure_redis_secrets, redis_status, redis_attach, redis_failover,
                                         redis_sentinels]
