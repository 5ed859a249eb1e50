"""Moving an orb from orbiter 0.1 to 0.2, as the README's upgrade note says: a Ready etcd cluster
made by a 0.1 worker, its workflows terminated, a 0.2 worker takes off again and finds the
cluster's machines (named as 0.1 named them, claimed for the orb now): every machine's first node
agent round changes nothing."""

import asyncio
import contextlib
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from orbiter.activities.providers.local import LocalMachines
from orbiter.models.ids import gitops_workflow_id, node_workflow_id
from orbiter.models.node import ConvergeNodeResult
from orbiter.models.refs import RepoRef
from orbiter.worker.client import connect
from orbiter.worker.main import run_worker

from ..conftest import GitRepo, TemporalServer
from ..support.etcd_flows import current, desired, wait_cluster
from ..support.flows import takeoff, wait_for
from ..support.net import subnet

pytestmark = [pytest.mark.machines, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# The last commit of orbiter 0.1 (main before the 0.2 baseline).
RELEASE_0_1 = "36372eeef284b4f1b48c0b3ecf00ac777f63052a"
SUBNET = subnet(87)


def install_0_1(target: Path) -> Path:
    """orbiter 0.1's package from git history, importable with PYTHONPATH (dependencies: this venv's)."""
    source = target / "src"
    source.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", RELEASE_0_1],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    site = target / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(source)],
                   check=True, capture_output=True, timeout=600)
    return site


class OldWorker:
    """An orbiter 0.1 worker process (`orbiter worker` of that release)."""

    def __init__(self, site: Path, address: str, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(site), "TEMPORAL_ADDRESS": address}
        code = "import sys; sys.argv = ['orbiter', 'worker']; from orbiter.cli.app import main; main()"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


async def first_round_changes(client: Client, workflow_id: str) -> list:
    """The changes of a node agent's first converge_node round, from its history."""
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            payloads = event.activity_task_completed_event_attributes.result.payloads
            [result] = await client.data_converter.decode(payloads, [ConvergeNodeResult])
            return result.changes
    raise AssertionError(f"{workflow_id} has no finished round")


async def terminate_orb(client: Client, orb: str, gitops: str) -> None:
    ids = [gitops]
    query = f"OrbiterOrb = '{orb}'"
    ids += [w.id async for w in client.list_workflows(query)]
    ids += [w.id async for w in client.list_workflows(f"WorkflowId STARTS_WITH 'node/{orb}/'")]
    for wid in dict.fromkeys(ids):
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wid).terminate("moving to orbiter 0.2")


async def test_an_orb_of_0_1_moves_to_0_2_without_a_change_to_its_machines(orbiter_env, repo: GitRepo,
                                                                           tmp_path: Path):
    site = install_0_1(tmp_path / "orbiter-0.1")
    server = TemporalServer(tmp_path / "temporal.db", tmp_path / "server.log")  # this test's own
    server.start()
    machines = LocalMachines("lab", SUBNET)
    orb = "up" + uuid.uuid4().hex[:6]
    gitops = gitops_workflow_id(repo.url, "main")
    old = OldWorker(site, server.address, tmp_path / "worker-0.1.log")
    stop = asyncio.Event()
    new_worker = None
    try:
        client = await connect(server.address)
        commit = repo.push({"desired.yml": desired(orb, 3, subnet=SUBNET)}, "three members")
        await takeoff(client, RepoRef(url=repo.url))
        status = await wait_cluster(repo, commit)
        assert [n.machine for n in status.nodes] == ["meta-etcd-0", "meta-etcd-1", "meta-etcd-2"]  # 0.1's names

        # The upgrade note: stop the 0.1 workers, terminate the orb's workflows, start 0.2, take off.
        old.stop()
        await terminate_orb(client, orb, gitops)
        new_worker = asyncio.create_task(run_worker(client, stop))
        await takeoff(client, RepoRef(url=repo.url))
        # 0.1's current.yml shows the commit applied already: wait for 0.2's reconcile, which shows its plan.
        again = await wait_for(lambda: (c := current(repo).clusters["meta"]).plan and c.done == c.plan
                               and c.phase == "Ready" and c, timeout=300, what="0.2's reconcile")
        assert [n.machine for n in again.nodes] == ["meta-etcd-0", "meta-etcd-1", "meta-etcd-2"]
        assert again.plan[:2] == ["packages", "bootstrap 3 members"]  # the same cluster, found again
        for node in again.nodes:
            assert await first_round_changes(client, node_workflow_id(orb, "meta", node.machine)) == [], node.machine
        rows = {m["id"]: m for m in machines.list_status()}
        assert {rows[n]["orb"] for n in ("meta-etcd-0", "meta-etcd-1", "meta-etcd-2")} == {orb}
        assert len(rows) == 3  # no second set of machines
    finally:
        old.stop()
        with contextlib.suppress(Exception):
            await terminate_orb(await connect(server.address), orb, gitops)
        stop.set()
        if new_worker is not None:
            await new_worker
        server.stop()
        for row in machines.list_status():
            machines.delete(row["id"])
        with contextlib.suppress(Exception):
            machines.destroy_network()
