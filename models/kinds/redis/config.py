"""A Redis member's NodeSpec, computed purely from desired.yml: what orbiter owns on the machine.

Redis and Sentinel rewrite their configuration files themselves (CONFIG REWRITE on a failover,
Sentinel's `known-*` lines and epochs), so orbiter's settings live apart from those files:

- /var/lib/redis/redis.conf and sentinel.conf are Redis's and Sentinel's own. systemd creates
  them empty when they are absent (the drop-ins' ExecStartPre); nothing of orbiter writes them
  after that, so a failover rewrites them without the node agent noticing.
- /etc/redis/orbiter/{redis,sentinel}.conf are orbiter's: the node agent converges them and the
  units load them with `--include` on the command line, which Redis reads after the main file.
  orbiter's settings therefore win at every start, whatever Redis wrote into its own file.
"""

from orbiter.models.nodespec import AptSource, FileSpec, NodeSpec, Package, UnitSpec

from .messages import (
    AUTH_CONF,
    CA_FILE,
    CERT_FILE,
    DATA_DIR,
    KEY_FILE,
    ORBITER_DIR,
    REDIS_CONF,
    REDIS_DROPIN,
    REDIS_MAIN,
    REDIS_PORT,
    SENTINEL_CONF,
    SENTINEL_DROPIN,
    SENTINEL_MAIN,
    SENTINEL_PORT,
    auth_secret,
    ca_cert_secret,
    member_cert_secret,
    member_key_secret,
)
from .spec import RedisCluster

PACKAGES = ("redis-server", "redis-sentinel", "redis-tools")
REDIS_UNIT, SENTINEL_UNIT = "redis-server.service", "redis-sentinel.service"
# Debian's redis packages carry epoch 5 ("5:7.0.15-1~deb12u10"): a version pattern for a mirror
# ("7.0.15*") matches apt's version only with it.
EPOCH = "5:"
HEADER = "# Managed by orbiter; local edits are reverted. Redis's own settings: {main}\n"


def apt_versions(prepared: dict[str, str]) -> dict[str, str]:
    """The versions to install: exact ones as the provider resolved them; a mirror's pattern
    gets Debian's epoch."""
    return {n: f"{EPOCH}{v}" if v.endswith("*") and ":" not in v else v for n, v in prepared.items()}


def _tls_lines(port: int) -> list[str]:
    return [
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {CERT_FILE}",
        f"tls-key-file {KEY_FILE}",
        f"tls-ca-cert-file {CA_FILE}",
        "tls-auth-clients yes",
        "tls-replication yes",  # replicas, and Sentinel's links to every instance, speak TLS
    ]


def _value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def redis_conf(spec: RedisCluster, ip: str) -> str:
    lines = [
        f"bind {ip} 127.0.0.1",
        *(_tls_lines(REDIS_PORT) if spec.tls else [f"port {REDIS_PORT}"]),
        f"dir {DATA_DIR}",
        "logfile /var/log/redis/redis-server.log",
        "pidfile /run/redis/redis-server.pid",
        f"appendonly {_value(spec.persistence.aof)}",
        f"maxmemory {spec.maxmemory if spec.maxmemory is not None else 0}",
        *(f"{key} {_value(value)}" for key, value in sorted(spec.flags.items())),
        f"include {AUTH_CONF}",
    ]
    return HEADER.format(main=REDIS_MAIN) + "\n".join(lines) + "\n"


def sentinel_conf(spec: RedisCluster, ip: str) -> str:
    """Sentinel's own settings. What it monitors (the primary, quorum, timeouts) is told to it at
    run time with SENTINEL MONITOR / SET, which it keeps in its own file: a monitor line here
    would clash with the one Sentinel rewrites after a failover."""
    lines = [
        f"bind {ip} 127.0.0.1",
        *(_tls_lines(SENTINEL_PORT) if spec.tls else [f"port {SENTINEL_PORT}"]),
        f"dir {DATA_DIR}",
        "logfile /var/log/redis/redis-sentinel.log",
        "pidfile /run/sentinel/redis-sentinel.pid",
        f"sentinel announce-ip {ip}",
        "sentinel resolve-hostnames no",
        f"include {AUTH_CONF}",  # its own password; Sentinels present it to each other too
    ]
    return HEADER.format(main=SENTINEL_MAIN) + "\n".join(lines) + "\n"


def dropin(binary: str, main: str, included: str) -> str:
    """The unit runs `binary main --include included`: the main file is created once, empty,
    when absent (`+`: as root, outside the unit's sandbox), then belongs to Redis."""
    return (
        "# Managed by orbiter.\n"
        "[Service]\n"
        f"ExecStartPre=+/bin/sh -c 'test -e {main} || install -o redis -g redis -m 0640 /dev/null {main}'\n"
        "ExecStart=\n"
        f"ExecStart=/usr/bin/{binary} {main} --include {included} --supervised systemd --daemonize no\n"
    )


def _owned(path: str, content: str = "", secret: str | None = None) -> FileSpec:
    """A file Redis reads as its group and nobody else can (it may hold the password or a key)."""
    return FileSpec(path=path, content=content, mode="0640", owner="root", group="redis", content_secret=secret)


def member_spec(cluster: str, spec: RedisCluster, name: str, ip: str, versions: dict[str, str],
                apt_source: str | None) -> NodeSpec:
    """Everything one member machine needs; the node agent converges it."""
    files = [
        _owned(REDIS_CONF, redis_conf(spec, ip)),
        _owned(SENTINEL_CONF, sentinel_conf(spec, ip)),
        _owned(AUTH_CONF, secret=auth_secret(cluster)),
    ]
    if spec.tls:
        files += [
            _owned(CA_FILE, secret=ca_cert_secret(cluster)),
            _owned(CERT_FILE, secret=member_cert_secret(cluster, name)),
            _owned(KEY_FILE, secret=member_key_secret(cluster, name)),
        ]
    files += [
        FileSpec(path=REDIS_DROPIN, content=dropin("redis-server", REDIS_MAIN, REDIS_CONF)),
        FileSpec(path=SENTINEL_DROPIN, content=dropin("redis-sentinel", SENTINEL_MAIN, SENTINEL_CONF)),
    ]
    shared = [AUTH_CONF, *([CA_FILE, CERT_FILE, KEY_FILE] if spec.tls else [])]
    return NodeSpec(
        hostname=name,
        apt_sources=[AptSource(name="orbiter", line=apt_source)] if apt_source else [],
        packages=[Package(name=p, version=versions[p], hold=True) for p in PACKAGES],
        files=files,
        units=[
            UnitSpec(name=REDIS_UNIT, restart_on=[REDIS_CONF, REDIS_DROPIN, *shared, "redis-server"]),
            UnitSpec(name=SENTINEL_UNIT, restart_on=[SENTINEL_CONF, SENTINEL_DROPIN, *shared, "redis-sentinel"]),
        ],
    )


# What a released machine that orbiter did not create loses (with the packages and the data).
LEFTOVER_FILES = (ORBITER_DIR, REDIS_DROPIN, SENTINEL_DROPIN)
