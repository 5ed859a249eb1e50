"""Issue 17 end to end: a pushed Redis-with-Sentinel cluster on local machines, real Redis 7.0.15
from Debian: bootstrap 3, write on the primary and read on every replica, scale to 5 and back
to 3 with the primary among the removed, a flag roll under a client writing through Sentinel,
destroy. One cluster through the whole flow: each stage starts from the one before."""

import asyncio
import json
import threading
import time
import uuid

import pytest
import redis
from typer.testing import CliRunner

from orbiter.cli.app import app
from orbiter.models.ids import node_workflow_id
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo, git
from ..support.etcd_flows import poke
from ..support.flows import takeoff
from ..support.net import subnet
from ..support.redis_flows import (
    CLUSTER,
    Bundle,
    desired,
    move_primary,
    primary_of,
    redis_machines,
    wait_cluster,
    wait_current,
    wait_replicated,
)
from ..workflows.test_replay import RECORD
from ..workflows.test_replay import _save as save_history

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(90)
FLAGS = "      flags: {hz: 20, maxmemory-policy: allkeys-lru}\n"
# A client writing through Sentinel during a roll fails only around the one failover: from the
# old primary turning replica (its waiting writes meet READONLY) until Sentinel names the new one
# when its failover ends. So its errors come in one burst (no write succeeds between two of
# them), shorter than the failover timeout the cluster gives Sentinel (20s); a second failover,
# or the primary restarted without one, would show as a second burst.
FAILOVER_TIMEOUT = 20.0


async def plan_of(repo: GitRepo, text: str) -> list[str]:
    """`orbiter plan` for `text` as desired.yml, on the operator's checkout before they push it."""
    git(repo.clone, "pull", "-q", "--rebase", "origin", "main")
    (repo.clone / "desired.yml").write_text(text)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["plan", "--repo-dir", str(repo.clone), "-o", "json"])
    git(repo.clone, "checkout", "--", "desired.yml")
    assert result.exit_code == 2, result.output
    return [s["name"] for s in json.loads(result.stdout)["clusters"][0]["steps"]]


def changes(planned: list[str]) -> list[str]:
    return [s for s in planned if s not in ("packages", "members", "sentinels", "observe")]


class Writer:
    """A client writing through Sentinel (INCR every 20 ms, 100 ms after an error) the whole time
    a roll runs: what it saw, and when."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle, self.stop = bundle, threading.Event()
        self.acked, self.errors, self.error_times, self.outcomes = 0, [], [], []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        primary = self.bundle.primary(timeout=5.0)
        while not self.stop.is_set():
            try:
                primary.incr("writer")
                self.acked += 1
                self.outcomes.append(True)
                time.sleep(0.02)
            except (redis.RedisError, OSError) as err:
                self.error_times.append(time.monotonic())
                self.errors.append(f"{type(err).__name__}: {err}")
                self.outcomes.append(False)
                time.sleep(0.1)

    def bursts(self) -> int:
        """Runs of errors with no acknowledged write inside."""
        return sum(1 for i, ok in enumerate(self.outcomes) if not ok and (i == 0 or self.outcomes[i - 1]))

    def window(self) -> float:
        return self.error_times[-1] - self.error_times[0] if self.error_times else 0.0

    def __enter__(self) -> "Writer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def sentinel_views(bundle: Bundle, ips: list[str]) -> dict[str, tuple[set[str], set[str]]]:
    """Each Sentinel's (other Sentinels, replicas) by address."""
    out = {}
    for ip in ips:
        s = bundle.sentinel_of(ip)
        out[ip] = ({x["ip"] for x in s.sentinel_sentinels(bundle.master_name)},
                   {x["ip"] for x in s.sentinel_slaves(bundle.master_name)})
    return out


async def test_redis_lifecycle(client, worker, repo: GitRepo, local_provider, tmp_path, assert_no_leak):
    orb = "r" + uuid.uuid4().hex[:6]
    with redis_machines(SUBNET) as machines:
        started = time.monotonic()
        first = repo.push({"desired.yml": desired(orb, 3, SUBNET)}, "three members")
        wid = await takeoff(client, RepoRef(url=repo.url))
        status = status_first = await wait_cluster(repo, first)
        print(f"bootstrap 3: Ready {time.monotonic() - started:.0f}s after the push")
        assert len(status.nodes) == 3 and all(n.ready for n in status.nodes), status.nodes
        assert primary_of(status) == status.nodes[0].machine  # the first member starts as primary
        assert [n.role for n in status.nodes] == ["primary", "replica", "replica"]
        assert status.endpoints == [f"{n.ip}:26379" for n in status.nodes]

        # Written on the primary (found through Sentinel, as an application does), read on every replica.
        bundle = Bundle(repo, tmp_path)
        assert bundle.data["tls"] and bundle.master_name == CLUSTER and len(bundle.sentinels) == 3
        keys = {f"k{i}": f"v{i}" for i in range(20)}
        bundle.primary().mset(keys)
        await wait_replicated(bundle, [n.ip for n in status.nodes[1:]], keys)
        with pytest.raises(redis.ReadOnlyError):
            bundle.member(status.nodes[1].ip).set("k0", "not on a replica")
        with pytest.raises(redis.AuthenticationError):  # the password is required, by Sentinel too
            redis.Redis(host=status.nodes[0].ip, port=26379, password="wrong", **bundle.tls).ping()

        # Scale to 5: two replicas, each with a Sentinel the others find.
        planned = await plan_of(repo, desired(orb, 5, SUBNET))
        names = [n.machine for n in status.nodes]
        new = [names[0].rsplit("-", 1)[0] + f"-{i}" for i in (3, 4)]
        assert changes(planned) == [f"add member {n}" for n in new]
        five = repo.push({"desired.yml": desired(orb, 5, SUBNET)}, "five members")
        await poke(client, wid)
        started = time.monotonic()
        status = await wait_cluster(repo, five)
        print(f"scale 3 -> 5: Ready {time.monotonic() - started:.0f}s after the poke")
        assert status.plan == planned and status.done == planned
        assert len(status.nodes) == 5 and all(n.ready for n in status.nodes) and primary_of(status) == names[0]
        ips = [n.ip for n in status.nodes]
        bundle = Bundle(repo, tmp_path)  # the bundle lists the new Sentinels
        assert len(bundle.sentinels) == 5
        await wait_replicated(bundle, ips[1:], keys)
        for ip, (sentinels, replicas) in sentinel_views(bundle, ips).items():
            assert sentinels == set(ips) - {ip} and replicas == set(ips[1:]), ip

        # An operator moves the primary to the last member through Sentinel: orbiter reports it by
        # itself (it watches a Ready cluster every driftInterval) and does not move it back.
        await asyncio.to_thread(move_primary, bundle, ips[4], ips)
        epoch = bundle.epoch(ips[0])
        status = await wait_current(repo, lambda s: any(n.leader and n.machine == new[1] for n in s.nodes),
                                    f"{new[1]} as primary")
        assert status.phase == "Ready" and status.commit == five

        # Back to 3: the last two go, the replica first, the primary after Sentinel moved it.
        planned = await plan_of(repo, desired(orb, 3, SUBNET))
        assert changes(planned) == [f"remove member {new[0]}", f"failover from {new[1]}", f"remove member {new[1]}"]
        three = repo.push({"desired.yml": desired(orb, 3, SUBNET)}, "back to three")
        await poke(client, wid)
        started = time.monotonic()
        status = await wait_cluster(repo, three)
        print(f"scale 5 -> 3, the primary among the removed: Ready {time.monotonic() - started:.0f}s after the poke")
        assert status.plan == planned and status.done == planned
        assert [n.machine for n in status.nodes] == names and all(n.ready for n in status.nodes)
        assert {m["id"] for m in machines.list_status()} == set(names)  # the removed machines are gone
        ips = [n.ip for n in status.nodes]
        assert bundle.named_primary(ips) == {n.ip for n in status.nodes if n.leader}
        assert bundle.epoch(ips[0]) == epoch + 1  # exactly one failover
        await wait_replicated(bundle, [n.ip for n in status.nodes if not n.leader], keys)
        for ip, (sentinels, replicas) in sentinel_views(bundle, ips).items():  # removed members forgotten
            assert sentinels == set(ips) - {ip} and replicas == set(ips) - {n.ip for n in status.nodes if n.leader}

        # A flag roll: replicas one at a time, a failover, then the old primary, while a client
        # writes through Sentinel.
        primary = primary_of(status)
        replicas = [n for n in names if n != primary]
        planned = await plan_of(repo, desired(orb, 3, SUBNET, FLAGS))
        assert changes(planned) == [*(f"roll {n}" for n in replicas), f"failover from {primary}", f"roll {primary}"]
        with Writer(bundle) as writer:
            await asyncio.sleep(1)
            rolled = repo.push({"desired.yml": desired(orb, 3, SUBNET, FLAGS)}, "hz 20, allkeys-lru")
            await poke(client, wid)
            started = time.monotonic()
            status = await wait_cluster(repo, rolled)
            print(f"flag roll: Ready {time.monotonic() - started:.0f}s after the poke")
            await asyncio.sleep(1)
        final = int(bundle.primary().get("writer"))
        print(f"flag roll under a client writing through Sentinel: {writer.acked} writes acknowledged,"
              f" {len(writer.errors)} errors in {writer.bursts()} burst within {writer.window():.1f}s,"
              f" {max(writer.acked - final, 0)}"
              f" acknowledged writes lost; errors: {sorted(set(writer.errors))}")
        assert status.plan == planned and status.done == planned
        assert all(n.ready for n in status.nodes) and primary_of(status) != primary
        assert writer.acked > 100 and writer.bursts() <= 1 and writer.window() < FAILOVER_TIMEOUT, writer.errors
        assert final >= writer.acked  # no acknowledged write lost to the failover
        for ip in ips:
            config = bundle.member(ip).config_get("hz") | bundle.member(ip).config_get("maxmemory-policy")
            assert config == {"hz": "20", "maxmemory-policy": "allkeys-lru"}, ip
        await wait_replicated(bundle, ips, keys)

        gone = repo.push({"desired.yml": desired(orb, 3, SUBNET, FLAGS + "      destroyed: true\n")}, "destroy")
        await poke(client, wid)
        status = await wait_cluster(repo, gone, phase="Destroyed")
        assert status.nodes == [] and machines.list_status() == []
        if RECORD:  # rich histories for the determinism guard (tests/workflows/test_replay.py)
            await save_history(client, "cluster_redis_lifecycle", f"cluster/{orb}/{CLUSTER}", "ClusterWorkflow")
            await save_history(client, "node_agent_redis_member",
                               node_workflow_id(orb, CLUSTER, status_first.nodes[0].machine), "NodeAgentWorkflow")
        await client.get_workflow_handle(wid).terminate()
        await client.get_workflow_handle(f"cluster/{orb}/{CLUSTER}").terminate()
        # The password orbiter generated is in no history, log, state file or commit in plain text.
        assert_no_leak([bundle.password], repos=[repo.remote])
