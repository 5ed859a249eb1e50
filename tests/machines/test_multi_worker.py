"""Issue 16, several workers on one server: three `orbiter worker` processes share one embedded
server while two etcd clusters of one orb scale up from one member; two workers are SIGKILLed mid-run and a new
one is started, then the server itself is SIGKILLed and restarted on its database.

What users rely on: every cluster reaches Ready at the pushed commit with exactly its members
started, no step ran twice (each `member add` was scheduled once in the cluster's history: a
crash may retry an activity, never repeat a step), and the work really moved between processes
(the `identity` of the workers that ran tasks, read from the histories)."""

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from orbiter.models.current import ClusterStatus, OrbStatus
from orbiter.models.kinds.etcd.messages import client_bundle_secret
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret
from orbiter.worker.client import connect
from orbiter.worker.server import start_server, stop_server

from ..conftest import MASTER_KEY, GitRepo, free_port
from ..support.etcd_flows import E2E_PROVIDER, e2e_machines, poke
from ..support.flows import gitops_id, takeoff, wait_for, worker_processes
from ..support.histories import history_facts
from ..support.net import subnet

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(98)
CLUSTERS = {"alpha": 3, "beta": 2}

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: 1h
  driftInterval: 10m
  maxParallel: 5
  providers:
    {provider}:
      kind: local
      subnet: {subnet}
  clusters:
{clusters}"""


def desired(orb: str, sizes: dict[str, int]) -> str:
    clusters = "".join(f"    {name}:\n      kind: etcd\n      version: \"3.4.23\"\n"
                       f"      members: {{provider: {E2E_PROVIDER}, pool: {name}, nodes: {nodes}}}\n"
                       for name, nodes in sizes.items())
    return DESIRED.format(orb=orb, provider=E2E_PROVIDER, subnet=SUBNET, clusters=clusters)


def current(repo: GitRepo) -> OrbStatus | None:
    text = repo.remote_file("current.yml")
    return OrbStatus.from_yaml(text) if text else None


async def all_ready(repo: GitRepo, commit: str, timeout: float = 900) -> dict[str, ClusterStatus]:
    deadline = time.monotonic() + timeout
    last: OrbStatus | None = None
    while time.monotonic() < deadline:
        last = current(repo)
        clusters = last.clusters if last else {}
        blocked = [f"{n}: {c.error}" for n, c in clusters.items()
                   if c.phase == "Blocked" and c.desired_commit == commit]
        assert not blocked, blocked
        if set(clusters) == set(CLUSTERS) and all(c.phase == "Ready" and c.commit == commit for c in clusters.values()):
            return clusters
        await asyncio.sleep(1)
    raise AssertionError(f"clusters not Ready at {commit[:8]} in {timeout}s: {last}")


async def adding(repo: GitRepo) -> bool:
    """A cluster is adding a member (both are at work then: they were pushed together)."""
    status = current(repo)
    return status is not None and any((c.step or "").startswith("add member") for c in status.clusters.values())


def members(repo: GitRepo, cluster: str, workdir: Path) -> list[str]:
    """The names etcd lists as started members, asked through the cluster's client bundle."""
    bundle = yaml.safe_load(read_secret(MASTER_KEY, repo.remote_file("secrets.yml"), client_bundle_secret(cluster)))
    files = {}
    for part in ("ca", "cert", "key"):
        path = workdir / f"{cluster}-{part}.pem"
        path.write_text(bundle[part])
        path.chmod(0o600)
        files[part] = str(path)
    out = subprocess.run(["etcdctl", f"--endpoints={','.join(bundle['endpoints'])}", f"--cacert={files['ca']}",
                          f"--cert={files['cert']}", f"--key={files['key']}", "--dial-timeout=3s",
                          "member", "list", "-w", "json"],
                         capture_output=True, text=True, timeout=20, env={"ETCDCTL_API": "3"}, check=True)
    return sorted(m.get("name", "") for m in yaml.safe_load(out.stdout)["members"])


async def test_three_workers_two_killed_then_the_server_killed(orbiter_env, repo: GitRepo, local_provider, tmp_path):
    db, log = tmp_path / "state" / "temporal.db", tmp_path / "server.log"
    port = free_port()
    address = f"127.0.0.1:{port}"
    orb = "mw" + uuid.uuid4().hex[:6]
    server = start_server(db, port=port, headless=True, log=log)
    client = await connect(address)
    try:
        with e2e_machines(SUBNET) as machines, worker_processes(tmp_path, address) as start_worker:
            try:
                workers = [start_worker() for _ in range(3)]
                killed = [w.proc.pid for w in workers[:2] if w.proc]
                first = repo.push({"desired.yml": desired(orb, dict.fromkeys(CLUSTERS, 1))}, "two etcd clusters")
                wid = await takeoff(client, RepoRef(url=repo.url))
                await all_ready(repo, first)
                commit = repo.push({"desired.yml": desired(orb, CLUSTERS)}, "scale both up")
                await poke(client, wid)
                await wait_for(lambda: adding(repo), timeout=600, interval=0.2, what="a member being added")
                for worker in workers[:2]:
                    worker.kill()
                late = start_worker()
                later = {late.proc.pid} if late.proc else set()
                await asyncio.sleep(5)  # the survivors and the new worker take the work over
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
                server = start_server(db, port=port, headless=True, log=log)
                client = await connect(address)
                for worker in (workers[2], late):
                    if not worker.alive():
                        worker.start()
                        later |= {worker.proc.pid} if worker.proc else set()
                await poke(client, wid)
                clusters = await all_ready(repo, commit)

                ids: set[str] = set()
                for name, nodes in CLUSTERS.items():
                    status = clusters[name]
                    assert len(status.nodes) == nodes and all(n.ready for n in status.nodes), status.nodes
                    assert members(repo, name, tmp_path) == sorted(n.machine for n in status.nodes)
                    scheduled, seen = await history_facts(client, f"cluster/{orb}/{name}")
                    # A crash may retry an activity; a step that ran again would schedule a second one.
                    assert scheduled["etcd_member_add"] == nodes - 1, scheduled
                    ids |= seen
                    for node in status.nodes:
                        ids |= (await history_facts(client, f"node/{orb}/{name}/{node.machine}"))[1]
                # orbiter's workers name themselves "orbiter 0.2.0 (build ...) on HOST pid N".
                pids = {int(m.group(1)) for i in ids if (m := re.search(r"pid (\d+)$", i))}
                print(f"task identities in the histories: {sorted(ids)}; killed {killed}, started after {later}")
                assert pids & set(killed) and pids & later, (killed, later, ids)
                assert len(machines.list_status()) == sum(CLUSTERS.values())
            finally:
                for wf in [gitops_id(repo), *(f"cluster/{orb}/{c}" for c in CLUSTERS),
                           *(f"node/{orb}/{c}/{m['id']}" for c in CLUSTERS for m in machines.list_status())]:
                    with contextlib.suppress(Exception):
                        await client.get_workflow_handle(wf).terminate("test over")
    finally:
        stop_server(server)
