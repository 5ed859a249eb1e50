"""The Redis kind's pure parts: desired.yml, a member's NodeSpec (what orbiter owns apart from what
Redis rewrites), reading redis-cli's answers, and the runbook's plans."""

import json

import pytest

from orbiter.activities.kinds.redis.observe import MARK, parse_info, parse_sentinel, sections, status
from orbiter.models.current import NodeStatus
from orbiter.models.kinds import Refused, View
from orbiter.models.kinds.redis import config
from orbiter.models.kinds.redis.messages import (
    AUTH_CONF,
    REDIS_CONF,
    REDIS_DROPIN,
    REDIS_MAIN,
    SENTINEL_CONF,
    SENTINEL_MAIN,
    MemberAddress,
)
from orbiter.models.kinds.redis.spec import RedisCluster
from orbiter.models.load import DesiredStateError, load_desired
from orbiter.models.providers.local import LocalProvider
from orbiter.workflows.runbooks import RUNBOOKS

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata: {{name: lab}}
spec:
  providers:
    lab: {{kind: local}}
  clusters:
    cache:
      kind: redis
      version: "7.0.15"
      members: {{provider: lab, pool: redis, nodes: 3}}
{extra}"""


def spec(extra: str = "") -> RedisCluster:
    cluster = load_desired(DESIRED.format(extra=extra)).spec.clusters["cache"]
    assert isinstance(cluster, RedisCluster)
    return cluster


def test_defaults_tls_on_aof_off_sentinel_5s():
    s = spec()
    assert s.tls and not s.persistence.aof and s.maxmemory is None and s.flags == {}
    assert (s.sentinel.down_after_ms(), s.sentinel.failover_timeout_ms()) == (5000, 60000)


@pytest.mark.parametrize("tls", ["true", "false"])
def test_a_firewalled_provider_opens_the_redis_and_sentinel_ports(tls: str):
    """GCE opens exactly member_ports() between members: a missing port would stop replication."""
    rules = spec(f"      tls: {tls}\n").member_ports()
    assert [(r.protocol, r.ports) for r in rules] == [("tcp", ["6379", "26379"])]


@pytest.mark.parametrize(("extra", "message"), [
    ("      flags: {replicaof: 10.0.0.1 6379}\n", "replicaof cannot be a flag: which member is primary is Sentinel's"),
    ("      flags: {tls-port: 6380}\n", "tls-port cannot be a flag"),
    ("      flags: {requirepass: x}\n", "requirepass cannot be a flag: orbiter generates the password"),
    ("      flags: {Hz: 20}\n", "'Hz' is not a redis.conf directive"),
    ("      maxmemory: lots\n", "'lots' is not a size"),
    ("      members: {provider: lab, pool: redis, nodes: 10}\n", "must be between 1 and 9"),
    ("      sentinel: {downAfter: 5}\n", "5 has no unit"),
])
def test_desired_yml_mistakes_are_one_located_line(extra: str, message: str):
    text = DESIRED.format(extra=extra)
    if "members:" in extra:
        text = text.replace("      members: {provider: lab, pool: redis, nodes: 3}\n", "")
    with pytest.raises(DesiredStateError) as err:
        load_desired(text)
    assert message in str(err.value) and str(err.value).startswith("desired.yml:")


def test_orbiter_owns_its_include_files_and_the_units_load_them_after_redis_own():
    s = spec("      maxmemory: 100mb\n      persistence: {aof: true}\n"
             "      flags: {hz: 20, lazyfree-lazy-eviction: true}\n")
    node = config.member_spec("cache", s, "m0", "10.0.0.2", {p: "5:7.0.15-1" for p in config.PACKAGES}, None)
    files = {f.path: f for f in node.files}
    # Redis's and Sentinel's own files are not in the spec: the agent never rewrites them.
    assert REDIS_MAIN not in files and SENTINEL_MAIN not in files
    redis_conf, sentinel_conf = files[REDIS_CONF].content, files[SENTINEL_CONF].content
    for line in ("bind 10.0.0.2 127.0.0.1", "port 0", "tls-port 6379", "tls-replication yes", "appendonly yes",
                 "maxmemory 100mb", "hz 20", "lazyfree-lazy-eviction yes", f"include {AUTH_CONF}"):
        assert line in redis_conf.splitlines(), line
    assert "replicaof" not in redis_conf
    assert "tls-port 26379" in sentinel_conf and "sentinel announce-ip 10.0.0.2" in sentinel_conf
    assert "sentinel monitor" not in sentinel_conf  # Sentinel rewrites its monitor line after a failover
    assert files[AUTH_CONF].content_secret == "cache_redis_auth" and files[AUTH_CONF].content == ""
    assert all(files[p].mode == "0640" and files[p].group == "redis" for p in (REDIS_CONF, AUTH_CONF))
    dropin = files[REDIS_DROPIN].content
    assert f"ExecStart=/usr/bin/redis-server {REDIS_MAIN} --include {REDIS_CONF} " in dropin
    assert f"test -e {REDIS_MAIN} || install -o redis -g redis -m 0640 /dev/null {REDIS_MAIN}" in dropin
    units = {u.name: u for u in node.units}
    assert REDIS_CONF in units[config.REDIS_UNIT].restart_on
    assert SENTINEL_CONF not in units[config.REDIS_UNIT].restart_on
    assert SENTINEL_CONF in units[config.SENTINEL_UNIT].restart_on
    assert all(p.hold for p in node.packages)


def test_without_tls_plain_ports_and_no_certificates():
    node = config.member_spec("cache", spec("      tls: false\n"), "m0", "10.0.0.2",
                              {p: "5:7.0.15-1" for p in config.PACKAGES}, None)
    redis_conf = next(f.content for f in node.files if f.path == REDIS_CONF)
    assert "port 6379" in redis_conf.splitlines() and "tls-port" not in redis_conf
    assert not [f for f in node.files if f.path.endswith((".crt", ".key"))]


def test_a_mirror_version_pattern_gets_debian_epoch():
    assert config.apt_versions({"redis-server": "7.0.15*", "redis-tools": "5:7.0.15-1~deb12u10"}) == {
        "redis-server": "5:7.0.15*", "redis-tools": "5:7.0.15-1~deb12u10"}


# -- redis-cli's answers, as captured from Redis 7.0.15 and its Sentinel ------------------------

MEMBERS = [MemberAddress(name=f"m{i}", ip=f"10.0.0.{i + 2}") for i in range(3)]


def info(role: str, offset: int, master: str = "", link: str = "up") -> str:
    lines = ["# Replication", f"role:{role}"]
    if role == "slave":
        lines += [f"master_host:{master}", "master_port:6379", f"master_link_status:{link}",
                  "master_sync_in_progress:0", f"slave_repl_offset:{offset}"]
    lines += [f"master_repl_offset:{offset}", "", "# Server", "redis_version:7.0.15"]
    return "\n".join(lines)


def sentinel(primary: str, me: str, epoch: int = 0, flags: str = "master", extra_sentinel: str | None = None) -> str:
    ips = [m.ip for m in MEMBERS]
    master = {"name": "cache", "ip": primary, "port": "6379", "flags": flags, "config-epoch": str(epoch),
              "quorum": "2", "down-after-milliseconds": "5000", "failover-timeout": "60000", "parallel-syncs": "1"}
    replicas = [{"ip": ip, "port": "6379", "flags": "slave"} for ip in ips if ip != primary]
    others = [{"ip": ip, "port": "26379", "flags": "sentinel"} for ip in ips if ip != me]
    if extra_sentinel:
        others.append({"ip": extra_sentinel, "port": "26379", "flags": "s_down,sentinel"})
    return "\n".join(json.dumps(x) for x in (master, replicas, others))


def answers(first: dict[int, str], second: dict[int, str], sentinels: dict[int, str]) -> str:
    out = []
    for i in range(3):
        out += [f"{MARK}a {i}", first.get(i, ""), f"{MARK}b {i}", second.get(i, ""), f"{MARK}s {i}",
                sentinels.get(i, "")]
    return "\n".join(out)


def healthy_answers(**changes: str) -> dict[str, str]:
    first = {0: info("master", 1000), 1: info("slave", 990, "10.0.0.2"), 2: info("slave", 990, "10.0.0.2")}
    second = {0: info("master", 1010), 1: info("slave", 1010, "10.0.0.2"), 2: info("slave", 1005, "10.0.0.2")}
    sents = {i: sentinel("10.0.0.2", m.ip) for i, m in enumerate(MEMBERS)}
    return sections(answers(first, second, sents))


def test_a_healthy_cluster_names_its_primary():
    s = status(MEMBERS, healthy_answers())
    assert s.healthy and s.primary == "m0" and s.why == "" and s.stale == []
    assert [m.role for m in s.members] == ["master", "slave", "slave"] and all(m.caught_up for m in s.members[1:])


def test_a_replica_behind_the_primary_first_offset_is_not_ready():
    out = healthy_answers()
    out["b 2"] = info("slave", 999, "10.0.0.2")  # below the primary's offset of the first round
    s = status(MEMBERS, out)
    assert not s.healthy and s.why == "m2 has not caught up with m0"
    assert status(MEMBERS, out, member="m1").healthy  # a gate on m1 alone does not wait for m2


def test_sentinels_that_disagree_or_remember_a_removed_member():
    out = healthy_answers()
    out["s 2"] = sentinel("10.0.0.3", "10.0.0.4", epoch=1, flags="master,failover_in_progress")
    s = status(MEMBERS, out)
    assert not s.healthy and s.primary is None
    assert "the sentinels disagree on the primary (10.0.0.2, 10.0.0.3)" in s.why
    assert "sentinel on m2 is failing over" in s.why
    out = healthy_answers()
    out["s 1"] = sentinel("10.0.0.2", "10.0.0.3", extra_sentinel="10.0.0.9")
    s = status(MEMBERS, out)
    assert s.healthy and s.stale == ["10.0.0.9"]


def test_members_that_do_not_answer():
    out = healthy_answers()
    out["b 1"] = "Could not connect to Redis at 10.0.0.3:6379: Connection refused"
    out["s 2"] = 'error:"ERR No such master with that name"'
    s = status(MEMBERS, out)
    assert not s.healthy
    assert "redis on m1 does not answer" in s.why and "sentinel on m2 monitors nothing" in s.why
    assert parse_sentinel("Could not connect to Redis at 10.0.0.4:26379: Connection refused")[0] is False
    assert parse_info("") == {}


# -- plans ------------------------------------------------------------------------------------


def node(i: int, leader: bool = False, joined: bool = True) -> NodeStatus:
    return NodeStatus(machine=f"lab-cache-redis-{i}", ip=f"10.0.0.{i + 2}", role="primary" if leader else "replica",
                      joined=joined, leader=leader, version="7.0.15")


def plan(desired: RedisCluster, nodes: list[NodeStatus], applied: RedisCluster | None = None) -> list[str]:
    view = View(orb="lab", cluster="cache", spec=desired, applied=applied, nodes=nodes,
                providers={"lab": LocalProvider(kind="local")})
    return [s.name for s in RUNBOOKS["redis"].plan(view) if s.changes]


def sized(nodes: int, extra: str = "") -> RedisCluster:
    return spec(extra.replace("NODES", str(nodes)) if "NODES" in extra else extra).model_copy(
        update={"members": spec().members.model_copy(update={"nodes": nodes})})


def test_bootstrap_then_one_add_per_new_member():
    assert plan(sized(3), []) == ["bootstrap 3 members"]
    three = [node(0, leader=True), node(1), node(2)]
    assert plan(sized(5), three) == ["add member lab-cache-redis-3", "add member lab-cache-redis-4"]


def test_scale_down_from_the_end_replicas_first_the_primary_after_a_failover():
    five = [node(0), node(1), node(2), node(3), node(4, leader=True)]
    assert plan(sized(3), five) == ["remove member lab-cache-redis-3", "failover from lab-cache-redis-4",
                                    "remove member lab-cache-redis-4"]
    five = [node(0, leader=True), node(1), node(2), node(3), node(4)]
    assert plan(sized(3), five) == ["remove member lab-cache-redis-4", "remove member lab-cache-redis-3"]


def test_a_flag_roll_goes_replicas_first_then_a_failover_then_the_old_primary():
    three = [node(0), node(1, leader=True), node(2)]
    assert plan(sized(3, "      flags: {hz: 20}\n"), three, applied=sized(3)) == [
        "roll lab-cache-redis-0", "roll lab-cache-redis-2", "failover from lab-cache-redis-1",
        "roll lab-cache-redis-1"]
    assert plan(sized(3), three, applied=sized(3)) == []  # nothing changed: nothing rolls
    # Sentinel's settings reach Sentinel at run time (SENTINEL SET): no member restarts for them.
    assert plan(sized(3, "      sentinel: {downAfter: 3s}\n"), three, applied=sized(3)) == []


def test_tls_cannot_change_on_a_running_cluster():
    with pytest.raises(Refused, match="tls cannot change on a running redis cluster"):
        plan(sized(3, "      tls: false\n"), [node(0, leader=True), node(1), node(2)], applied=sized(3))
