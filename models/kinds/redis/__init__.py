"""The Redis cluster kind: one primary and replicas, with a Sentinel on every member."""

from orbiter.models.kinds.base import Kind, Leftovers

from .config import LEFTOVER_FILES, PACKAGES, REDIS_UNIT, SENTINEL_UNIT
from .messages import DATA_DIR
from .spec import RedisCluster, RedisMember, RedisState

KIND = Kind(
    name="redis",
    spec=RedisCluster,
    state=RedisState,
    member=RedisMember,
    leaves=Leftovers(units=(SENTINEL_UNIT, REDIS_UNIT), files=LEFTOVER_FILES, packages=PACKAGES,
                     data_dirs=(DATA_DIR,)),
    runbook="orbiter.workflows.kinds.redis:RedisRunbook",
    activities="orbiter.activities.kinds.redis:ACTIVITIES",
)
