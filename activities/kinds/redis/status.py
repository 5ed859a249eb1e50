"""The status of a Redis cluster, and the health gate that waits for it.

Healthy (Ready) means: every replica replicates the primary with its link up and its offset caught
up, and every Sentinel names the same primary and sees the other Sentinels and every replica.
Errors are one line naming the cluster and what is not healthy; RedisUnhealthy is retried.
"""

import time
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.progress import heartbeat
from orbiter.models.kinds.redis.messages import RedisStatus, RedisStatusInput

from .cli import RedisCli, redis_cli

POLL_SECONDS = 0.5


def wait_status(cli: RedisCli, timeout: float, member: str | None = None,
                done: Callable[[RedisStatus], bool] | None = None) -> RedisStatus:
    """Poll until healthy (or `done`), at most `timeout` seconds; heartbeats say what is missing."""
    deadline = time.monotonic() + timeout
    while True:
        status = cli.status(member)
        if done(status) if done else status.healthy:
            return status
        if time.monotonic() >= deadline:
            raise ApplicationError(f"{cli.where()}: not healthy after {timeout:g}s: {status.why or 'waiting'}",
                                   type="RedisUnhealthy")
        heartbeat(status.why or "waiting")
        time.sleep(POLL_SECONDS)


@activity.defn
def redis_status(input: RedisStatusInput) -> RedisStatus:
    """The cluster as Redis and Sentinel see it; with wait_healthy, once it is healthy (or one
    member is, with `member`)."""
    with redis_cli(input.target) as cli:
        if not input.wait_healthy:
            return cli.status(input.member)
        return wait_status(cli, input.timeout_seconds, input.member)
