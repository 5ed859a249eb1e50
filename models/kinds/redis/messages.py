"""Messages of the Redis activities (secrets, topology, failover, status) and where things live.

What orbiter owns on a member lives under /etc/redis/orbiter (converged by the node agent). What
Redis and Sentinel own, the files they rewrite themselves (`replicaof`, `sentinel known-*`,
epochs), lives in /var/lib/redis beside the data: created empty once, never "repaired".
"""

from orbiter.models.base import Model
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef

REDIS_PORT, SENTINEL_PORT = 6379, 26379
ORBITER_DIR = "/etc/redis/orbiter"
REDIS_CONF = f"{ORBITER_DIR}/redis.conf"  # orbiter's: included last, so its settings win
SENTINEL_CONF = f"{ORBITER_DIR}/sentinel.conf"
AUTH_CONF = f"{ORBITER_DIR}/auth.conf"  # the password (a secret file), included by both
TLS_DIR = f"{ORBITER_DIR}/tls"
CA_FILE, CERT_FILE, KEY_FILE = f"{TLS_DIR}/ca.crt", f"{TLS_DIR}/member.crt", f"{TLS_DIR}/member.key"
DATA_DIR = "/var/lib/redis"
REDIS_MAIN = f"{DATA_DIR}/redis.conf"  # Redis's own: CONFIG REWRITE writes it
SENTINEL_MAIN = f"{DATA_DIR}/sentinel.conf"  # Sentinel's own: it rewrites it on every change
REDIS_DROPIN = "/etc/systemd/system/redis-server.service.d/orbiter.conf"
SENTINEL_DROPIN = "/etc/systemd/system/redis-sentinel.service.d/orbiter.conf"


def auth_secret(cluster: str) -> str:
    return f"{cluster}_redis_auth"  # auth.conf as a whole: requirepass and masterauth


def ca_secret(cluster: str) -> str:
    return f"{cluster}_redis_ca"  # YAML: {cert, key} PEM


def ca_cert_secret(cluster: str) -> str:
    return f"{cluster}_redis_ca_crt"


def member_cert_secret(cluster: str, member: str) -> str:
    return f"{cluster}_redis_{member}_crt"


def member_key_secret(cluster: str, member: str) -> str:
    return f"{cluster}_redis_{member}_key"


def client_bundle_secret(cluster: str) -> str:
    return f"{cluster}_redis_client"  # YAML: {sentinels, master, password, tls[, ca, cert, key]}


class MemberAddress(Model):
    name: str
    ip: str


class EnsureRedisSecretsInput(Model):
    cluster: str
    master: str  # the name Sentinel monitors the primary by
    members: list[MemberAddress]
    tls: bool
    secrets: SecretsRef


class EnsureRedisSecretsResult(Model):
    sealed_secrets: dict[str, str] = {}  # only what was created or changed


class RedisTarget(Model):
    """A cluster's members; redis-cli runs over SSH on the first of `via` that answers and
    reaches every member from there (it holds the certificates and the password)."""

    cluster: str
    master: str
    members: list[MemberAddress]
    via: list[Machine]
    tls: bool = True
    secrets: SecretsRef


class SentinelParams(Model):
    """What every Sentinel is told about the primary it monitors (`SENTINEL SET`)."""

    quorum: int
    down_after_ms: int
    failover_timeout_ms: int
    parallel_syncs: int = 1


class SentinelView(Model):
    """One Sentinel's answer (SENTINEL MASTER / REPLICAS / SENTINELS)."""

    monitoring: bool = False
    primary: str | None = None  # ip
    epoch: int | None = None  # config-epoch: one more for every failover
    failing_over: bool = False
    quorum: int | None = None
    settings: dict[str, str] = {}  # down-after-milliseconds, failover-timeout, parallel-syncs
    replicas: list[str] = []  # ips it sees up
    replicas_down: list[str] = []
    sentinels: list[str] = []  # ips of the other Sentinels it sees up
    sentinels_down: list[str] = []


class RedisMemberInfo(Model):
    name: str
    ip: str
    up: bool = False  # Redis answered
    role: str | None = None  # master | slave
    primary: str | None = None  # master_host of a replica
    link_up: bool = False
    syncing: bool = False
    offset: int | None = None
    caught_up: bool = False
    version: str | None = None
    sentinel_up: bool = False
    sentinel: SentinelView = SentinelView()


class RedisStatus(Model):
    members: list[RedisMemberInfo] = []
    primary: str | None = None  # the member every Sentinel that answers names as primary
    healthy: bool = False  # Ready: every replica in sync, every Sentinel agrees and sees the others
    why: str = ""  # what is not yet healthy, for progress and errors
    stale: list[str] = []  # addresses Sentinels remember that are no member (removed ones)

    def member(self, name: str) -> RedisMemberInfo | None:
        return next((m for m in self.members if m.name == name), None)

    def epochs(self) -> list[int]:
        return sorted({m.sentinel.epoch for m in self.members if m.sentinel.epoch is not None})


class RedisStatusInput(Model):
    target: RedisTarget
    wait_healthy: bool = False
    # Wait on this member only (a join or a roll): its Redis in sync and its Sentinel agreeing.
    member: str | None = None
    timeout_seconds: float = 180


class AttachInput(Model):
    """Members whose Redis is to replicate the primary and whose Sentinel is to monitor it."""

    target: RedisTarget
    names: list[str]
    first: str  # the primary when no Sentinel names one yet (a new cluster)
    params: SentinelParams


class AttachResult(Model):
    primary: str
    actions: list[str] = []


class FailoverInput(Model):
    target: RedisTarget
    away_from: str  # a member; nothing is done when it is no longer primary
    pause_ms: int  # writes wait on the old primary at most this long (below Sentinel's down-after)
    timeout_seconds: float = 120


class FailoverResult(Model):
    primary: str
    failed_over: bool  # False: the primary had already moved (a retried or replayed step)
    detail: str = ""  # how long writes waited, for the history


class SentinelsInput(Model):
    target: RedisTarget
    params: SentinelParams
    timeout_seconds: float = 120


class SentinelsResult(Model):
    actions: list[str] = []
