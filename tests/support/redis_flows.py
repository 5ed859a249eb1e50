"""Helpers for end-to-end Redis tests: the desired.yml, the client bundle turned into redis-py
clients (Sentinel, primary, each member), waiting on current.yml and on Sentinel."""

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import yaml
from redis.sentinel import Sentinel

from orbiter.activities.providers.local import LocalMachines
from orbiter.models.current import ClusterStatus, OrbStatus
from orbiter.models.kinds.redis.messages import REDIS_PORT, client_bundle_secret
from orbiter.models.secrets import read_secret

from ..conftest import MASTER_KEY, GitRepo

PROVIDER, CLUSTER, POOL = "lab", "cache", "redis"

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: 1h
  driftInterval: {drift}
  maxParallel: 5
  providers:
    lab:
      kind: local
      subnet: {subnet}
  clusters:
    cache:
      kind: redis
      version: "7.0.15"
      members: {{provider: lab, pool: redis, nodes: {nodes}}}
      sentinel: {{downAfter: 4s, failoverTimeout: 20s}}
{extra}"""


def desired(orb: str, nodes: int, subnet: str, extra: str = "", drift: str = "4s") -> str:
    return DESIRED.format(orb=orb, nodes=nodes, extra=extra, subnet=subnet, drift=drift)


@contextlib.contextmanager
def redis_machines(subnet: str) -> Iterator[LocalMachines]:
    """The provider the flow's desired.yml names; every machine of it is gone afterwards."""
    provider = LocalMachines(PROVIDER, subnet)
    try:
        yield provider
    finally:
        for machine in provider.list_status():
            provider.delete(machine["id"])
        with contextlib.suppress(Exception):
            provider.destroy_network()


def current(repo: GitRepo) -> OrbStatus:
    return OrbStatus.from_yaml(repo.remote_file("current.yml"))


async def wait_cluster(repo: GitRepo, commit: str, phase: str = "Ready", timeout: float = 600) -> ClusterStatus:
    """current.yml shows the cluster in `phase` having applied `commit`; fail fast on Blocked."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = current(repo).clusters.get(CLUSTER) if repo.remote_file("current.yml") else None
        if last and last.phase == phase and last.commit == commit:
            return last
        if last and last.phase == "Blocked" and phase != "Blocked" and last.desired_commit == commit:
            raise AssertionError(f"cluster Blocked: {last.error}")
        await asyncio.sleep(1)
    raise AssertionError(f"cluster not {phase} at {commit[:8]} in {timeout}s; last: {last}")


async def wait_current(repo: GitRepo, predicate, what: str, timeout: float = 120) -> ClusterStatus:
    """current.yml's cluster once `predicate(status)` holds (orbiter wrote it by itself)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = current(repo).clusters.get(CLUSTER)
        if last and predicate(last):
            return last
        await asyncio.sleep(1)
    raise AssertionError(f"current.yml never showed {what} in {timeout}s; last: {last}")


def primary_of(status: ClusterStatus) -> str:
    leaders = [n.machine for n in status.nodes if n.leader]
    assert len(leaders) == 1, status.nodes
    return leaders[0]


class Bundle:
    """The client bundle orbiter wrote (`orbiter secret read cache_redis_client`) as redis-py
    clients: through Sentinel, as an application would, or straight to one member."""

    def __init__(self, repo: GitRepo, workdir: Path) -> None:
        data = yaml.safe_load(read_secret(MASTER_KEY, repo.remote_file("secrets.yml"), client_bundle_secret(CLUSTER)))
        self.data = data
        self.master_name: str = data["master"]
        self.password: str = data["password"]
        self.sentinels = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in data["sentinels"]]
        self.tls: dict[str, object] = {}
        if data["tls"]:
            for part in ("ca", "cert", "key"):
                path = workdir / f"redis-{part}.pem"
                path.write_text(data[part])
                path.chmod(0o600)
            self.tls = {"ssl": True, "ssl_ca_certs": str(workdir / "redis-ca.pem"),
                        "ssl_certfile": str(workdir / "redis-cert.pem"), "ssl_keyfile": str(workdir / "redis-key.pem"),
                        "ssl_check_hostname": False}

    def sentinel(self, timeout: float = 2.0) -> Sentinel:
        kw = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **self.tls}
        return Sentinel(self.sentinels, sentinel_kwargs={"password": self.password, **kw}, password=self.password,
                        **kw)

    def primary(self, timeout: float = 2.0) -> redis.Redis:
        return self.sentinel(timeout).master_for(self.master_name)

    def member(self, ip: str, port: int = REDIS_PORT) -> redis.Redis:
        return redis.Redis(host=ip, port=port, password=self.password, socket_timeout=3, socket_connect_timeout=3,
                           **self.tls)

    def sentinel_of(self, ip: str) -> redis.Redis:
        return self.member(ip, port=26379)

    def epoch(self, ip: str) -> int:
        return int(self.sentinel_of(ip).sentinel_master(self.master_name)["config-epoch"])

    def named_primary(self, ips: list[str]) -> set[str]:
        """The primary's ip as each answering Sentinel names it."""
        named = set()
        for ip in ips:
            with contextlib.suppress(redis.RedisError, OSError):
                named.add(self.sentinel_of(ip).sentinel_master(self.master_name)["ip"])
        return named


async def wait_replicated(bundle: Bundle, ips: list[str], keys: dict[str, str], timeout: float = 30) -> None:
    """Every member at `ips` answers every key with its value."""
    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for ip in ips:
            client = bundle.member(ip)
            got = client.mget(list(keys))
            missing += [f"{ip}:{k}" for (k, v), g in zip(keys.items(), got, strict=True) if (g or b"").decode() != v]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not replicated in {timeout}s: {missing[:5]}")
        await asyncio.sleep(0.5)


def move_primary(bundle: Bundle, to_ip: str, ips: list[str]) -> None:
    """What an operator does to put the primary on one member: the other replicas may not be
    promoted (replica-priority 0) while Sentinel fails over, then get their priority back,
    persisted (CONFIG REWRITE) as Redis's own setting."""
    others = [ip for ip in ips if ip != to_ip]
    saved = {ip: bundle.member(ip).config_get("replica-priority")["replica-priority"] for ip in others}
    try:
        for ip in others:
            bundle.member(ip).config_set("replica-priority", 0)
        bundle.sentinel_of(to_ip).sentinel_failover(bundle.master_name)
        deadline = time.monotonic() + 60
        while bundle.named_primary(ips) != {to_ip} or bundle.member(to_ip).info("replication")["role"] != "master":
            if time.monotonic() > deadline:
                raise AssertionError(f"Sentinel did not move the primary to {to_ip}")
            time.sleep(0.3)
    finally:
        for ip, value in saved.items():
            with contextlib.suppress(redis.RedisError, OSError):
                bundle.member(ip).config_set("replica-priority", value)
                bundle.member(ip).config_rewrite()
