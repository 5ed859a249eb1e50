"""Issue 17, faults on real machines, one 3-member cluster for the module, its worker a subprocess:

- the primary's machine is killed: Sentinel fails over, orbiter reports the new primary by itself
  and does not fight it (node agent rounds change nothing, a reconcile keeps the primary where
  Sentinel put it); the machine comes back and rejoins as a replica;
- the worker is SIGKILLed during the scale-down that moves the primary, right after Sentinel was
  asked to fail over: the cluster converges with exactly one failover.
"""

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import redis
from temporalio.client import Client

from orbiter.activities.providers.local import LocalMachines, nspawn
from orbiter.activities.ssh import connect
from orbiter.models.ids import gitops_workflow_id, node_workflow_id
from orbiter.models.kinds.redis.messages import REDIS_CONF, REDIS_MAIN
from orbiter.models.machines import Machine
from orbiter.models.node import NodeAgentStatus
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret
from orbiter.workflows.node_agent import NodeAgentWorkflow

from ..conftest import MASTER_KEY, GitRepo
from ..support.etcd_flows import poke
from ..support.flows import WorkerProcess, takeoff, wait_for, worker_processes
from ..support.net import subnet
from ..support.redis_flows import (
    CLUSTER,
    POOL,
    PROVIDER,
    Bundle,
    current,
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

SUBNET = subnet(91)
KEYS = {f"f{i}": f"v{i}" for i in range(10)}


@dataclass
class Cluster:
    orb: str
    repo: GitRepo
    wid: str
    machines: LocalMachines
    workdir: Path
    start_worker: Callable[[], WorkerProcess]
    workers: list[WorkerProcess]

    def kill_workers(self) -> None:
        for proc in self.workers:
            proc.kill()
        self.workers.clear()

    def new_worker(self) -> None:
        self.workers.append(self.start_worker())

    def bundle(self) -> Bundle:
        return Bundle(self.repo, self.workdir)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cluster(client: Client, temporal_server, local_provider, tmp_path_factory) -> AsyncIterator[Cluster]:
    """Three members, Ready, with keys written; served by a worker subprocess the tests may kill."""
    root = tmp_path_factory.mktemp("redis-failover")
    repo = GitRepo(root)
    orb = "rf" + uuid.uuid4().hex[:6]
    with redis_machines(SUBNET) as machines, worker_processes(root, temporal_server.address) as start_worker:
        try:
            workers = [start_worker()]
            first = repo.push({"desired.yml": desired(orb, 3, SUBNET)}, "three members")
            wid = await takeoff(client, RepoRef(url=repo.url))
            await wait_cluster(repo, first)
            found = Cluster(orb, repo, wid, machines, root, start_worker, workers)
            found.bundle().primary().mset(KEYS)
            yield found
        finally:
            ids = [gitops_workflow_id(repo.url, "main"), f"cluster/{orb}/{CLUSTER}"]
            ids += [node_workflow_id(orb, CLUSTER, m["id"]) for m in machines.list_status()]
            for wid in ids:
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(wid).terminate("test over")


def power_off(machines: LocalMachines, machine_id: str) -> None:
    """The machine dies at once: SIGKILL to its whole nspawn process tree, no shutdown."""
    pid = nspawn.read_pid(machines.path / "machines" / machine_id / "nspawn.pid")
    assert pid is not None
    for p in [pid, *nspawn.descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while machines.is_running(machine_id):
        assert time.monotonic() < deadline, f"{machine_id} still runs after SIGKILL"
        nspawn.reap(pid)
        time.sleep(0.05)


async def agent(client: Client, orb: str, machine: str) -> NodeAgentStatus:
    return await client.get_workflow_handle(node_workflow_id(orb, CLUSTER, machine)).query(NodeAgentWorkflow.status)


async def rounds_change_nothing(client: Client, orb: str, machines: list[str], rounds: int = 2) -> None:
    """Each machine's node agent runs `rounds` more drift rounds, each with zero changes."""
    start = {m: (await agent(client, orb, m)).rounds_done for m in machines}

    async def done() -> bool:
        states = {m: await agent(client, orb, m) for m in machines}
        for m, s in states.items():
            assert s.last_changes == [] and s.last_error is None, (m, s)
        return all(s.rounds_done >= start[m] + rounds for m, s in states.items())

    await wait_for(done, timeout=120, interval=0.5, what=f"{rounds} quiet node agent rounds on {machines}")


def files_on(repo: GitRepo, ip: str, machine: str, *paths: str) -> str:
    key = read_secret(MASTER_KEY, repo.remote_file("secrets.yml"), f"{PROVIDER}_maintenancekey").decode()
    node = Machine(id=machine, provider=PROVIDER, pool=POOL, ip=ip, key_secret=f"{PROVIDER}_maintenancekey")
    with connect(node, key) as session:
        return session.run("cat " + " ".join(paths), check=True).stdout


async def test_the_primary_machine_killed_sentinel_fails_over_orbiter_follows(client, cluster: Cluster):
    status = current(cluster.repo).clusters[CLUSTER]
    old = primary_of(status)
    ip = {n.machine: n.ip for n in status.nodes}
    survivors = [n.machine for n in status.nodes if n.machine != old]
    bundle = cluster.bundle()

    killed = time.monotonic()
    power_off(cluster.machines, old)
    await wait_for(lambda: len(named := bundle.named_primary([ip[m] for m in survivors])) == 1
                   and named != {ip[old]}, timeout=60, what="Sentinel's failover")
    new = next(m for m in survivors if {ip[m]} == bundle.named_primary([ip[m] for m in survivors]))
    print(f"Sentinel promoted {new} {time.monotonic() - killed:.1f}s after {old} was killed")

    # orbiter reports it by itself (a Ready cluster is watched every driftInterval), no commit needed.
    status = await wait_current(cluster.repo, lambda s: primary_of(s) == new, f"{new} as primary")
    print(f"current.yml names {new} {time.monotonic() - killed:.1f}s after the kill")
    assert status.phase == "Ready" and not next(n for n in status.nodes if n.machine == old).ready
    # ... and does not fight it: Sentinel rewrote the files Redis owns, orbiter's stay as they are.
    await rounds_change_nothing(client, cluster.orb, survivors)
    assert bundle.named_primary([ip[m] for m in survivors]) == {ip[new]}
    await wait_replicated(bundle, [ip[m] for m in survivors], KEYS)

    # The machine comes back: Sentinel makes it a replica of the new primary, orbiter sees it so.
    cluster.machines.create(POOL, [old], "", f"{PROVIDER}_maintenancekey")
    status = await wait_current(
        cluster.repo, lambda s: all(n.ready for n in s.nodes) and primary_of(s) == new, f"{old} back as a replica",
        timeout=180)
    assert next(n for n in status.nodes if n.machine == old).role == "replica"
    await wait_replicated(bundle, [ip[old]], KEYS)
    text = files_on(cluster.repo, ip[old], old, REDIS_MAIN)
    assert f"replicaof {ip[new]} 6379" in text  # written by Redis on Sentinel's word, not by orbiter
    assert "replicaof" not in files_on(cluster.repo, ip[old], old, REDIS_CONF)
    await rounds_change_nothing(client, cluster.orb, [old], rounds=1)

    # A reconcile (any new commit) plans no failover and leaves the primary where Sentinel put it.
    commit = cluster.repo.push({"desired.yml": desired(cluster.orb, 3, SUBNET, drift="5s")}, "a slower drift check")
    await poke(client, cluster.wid)
    status = await wait_cluster(cluster.repo, commit)
    assert not [s for s in status.plan if s.startswith(("failover", "roll", "add", "remove"))], status.plan
    assert primary_of(status) == new and all(n.ready for n in status.nodes)
    assert bundle.named_primary(list(ip.values())) == {ip[new]}


def failover_flag(bundle: Bundle, ip: str, epoch: int, timeout: float) -> str:
    """Polls one Sentinel (one connection, every 10 ms) until it is failing over; what it saw."""
    sentinel = bundle.sentinel_of(ip)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        master = sentinel.sentinel_master(bundle.master_name)
        if "failover_in_progress" in master["flags"]:
            return f"at {master['failover-state']}"
        if int(master["config-epoch"]) > epoch:
            return "after the promotion"
        time.sleep(0.01)
    raise AssertionError(f"the Sentinel on {ip} did not fail over within {timeout:.0f}s")


async def activity_attempts(client: Client, wid: str, name: str) -> int:
    """The highest attempt an activity of type `name` reached in the workflow's history."""
    scheduled: dict[int, str] = {}
    attempts = [0]
    async for event in client.get_workflow_handle(wid).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            if scheduled.get(started.scheduled_event_id) == name:
                attempts.append(started.attempt)
    return max(attempts)


async def epochs(bundle: Bundle, ips: list[str]) -> set[int]:
    out = set()
    for ip in ips:
        with contextlib.suppress(redis.RedisError, OSError):
            out.add(await asyncio.to_thread(bundle.epoch, ip))
    return out


async def test_worker_sigkilled_during_the_scale_down_that_moves_the_primary(client, cluster: Cluster):
    status = current(cluster.repo).clusters[CLUSTER]
    names, ips = [n.machine for n in status.nodes], [n.ip for n in status.nodes]
    bundle = cluster.bundle()
    if primary_of(status) == names[0]:  # run alone: put the primary on a member that is to go
        await asyncio.to_thread(move_primary, bundle, ips[2], ips)
        status = await wait_current(cluster.repo, lambda s: primary_of(s) == names[2], f"{names[2]} as primary")
    primary = primary_of(status)
    assert primary != names[0]
    before = await epochs(bundle, ips)
    assert len(before) == 1

    one = cluster.repo.push({"desired.yml": desired(cluster.orb, 1, SUBNET)}, "down to one member")
    await poke(client, cluster.wid)

    # The Sentinel beside the member that stays is the one asked (a replica's first): the moment
    # it fails over, the worker dies, before the step can see the failover finish.
    begun = await asyncio.to_thread(failover_flag, bundle, ips[0], max(before), 300)
    cluster.kill_workers()
    killed = time.monotonic()
    cluster.new_worker()
    status = await wait_cluster(cluster.repo, one)
    print(f"worker killed {begun} into the failover; Ready {time.monotonic() - killed:.0f}s later")

    assert f"failover from {primary}" in status.done and status.plan == status.done
    # The failover activity the worker died in ran again on the new worker, and found the failover
    # already under way or done: the Sentinels' epoch moved once.
    assert await activity_attempts(client, f"cluster/{cluster.orb}/{CLUSTER}", "redis_failover") >= 2
    assert [n.machine for n in status.nodes] == [names[0]] and status.nodes[0].ready
    assert primary_of(status) == names[0]
    assert [m["id"] for m in cluster.machines.list_status()] == [names[0]]
    after = await epochs(bundle, ips[:1])
    assert after == {max(before) + 1}, (before, after)  # exactly one failover
    assert bundle.named_primary(ips[:1]) == {ips[0]}
    sentinel = bundle.sentinel_of(ips[0])
    assert sentinel.sentinel_sentinels(bundle.master_name) == [] and sentinel.sentinel_slaves(bundle.master_name) == []
    await wait_replicated(bundle, ips[:1], KEYS)
    if RECORD:  # the crash-resumed scale-down, for the determinism guard (tests/workflows/test_replay.py)
        await save_history(client, "cluster_redis_failover", f"cluster/{cluster.orb}/{CLUSTER}", "ClusterWorkflow")
