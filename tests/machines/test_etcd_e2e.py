"""Issue 4 end to end: a pushed etcd cluster on local machines: bootstrap, scale, roll, destroy."""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from orbiter.activities.ssh import connect
from orbiter.cli.app import app
from orbiter.models.ids import node_workflow_id
from orbiter.models.machines import Machine
from orbiter.models.providers import machine_name
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret

from ..conftest import MASTER_KEY, GitRepo, git
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, poke, wait_cluster
from ..support.flows import takeoff
from ..workflows.test_replay import RECORD
from ..workflows.test_replay import _save as save_history

pytestmark = [pytest.mark.machines, pytest.mark.slow]


async def plan_of(repo: GitRepo, text: str) -> list[str]:
    """`orbiter plan` for `text` as desired.yml, on the operator's checkout before they push it."""
    git(repo.clone, "pull", "-q", "--rebase", "origin", "main")
    (repo.clone / "desired.yml").write_text(text)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["plan", "--repo-dir", str(repo.clone), "-o", "json"])
    git(repo.clone, "checkout", "--", "desired.yml")  # the push that follows commits it
    assert result.exit_code == 2, result.output
    return [s["name"] for s in json.loads(result.stdout)["clusters"][0]["steps"]]


class Traffic:
    """Writes and reads in a loop while a roll runs; records what failed. With `fresh`, each round
    uses a new etcdctl from it (a client that re-reads its bundle, as certificates change)."""

    def __init__(self, etcdctl: Etcdctl | None = None, fresh: Callable[[], Etcdctl] | None = None) -> None:
        self.etcdctl, self.fresh, self.stop, self.failures, self.ops = etcdctl, fresh, threading.Event(), [], 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                etcdctl = self.fresh() if self.fresh is not None else self.etcdctl
                assert etcdctl is not None
                etcdctl("put", "/traffic", str(i))
                assert etcdctl("get", "/traffic", "--print-value-only").strip() == str(i)
                self.ops += 1
            except Exception as err:  # noqa: BLE001 - collected and asserted on
                self.failures.append(f"{time.monotonic():.1f} {err}")
            time.sleep(0.1)

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


async def drift_is_put_back(repo: GitRepo, node) -> None:
    key = read_secret(MASTER_KEY, repo.remote_file("secrets.yml"), "lab_maintenancekey").decode()
    machine = Machine(id=node.machine, provider="lab", pool="etcd", ip=node.ip,
                      key_secret="lab_maintenancekey", host_key=node.host_key)
    with connect(machine, key) as session:
        session.run("systemctl stop etcd && systemctl daemon-reload", check=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reported = next(n for n in current(repo).clusters["meta"].nodes if n.machine == node.machine)
            if any(c.kind == "unit" and c.target == "etcd.service" for c in reported.drift):
                break
            await asyncio.sleep(1)
        else:
            raise AssertionError("no drift reported in current.yml")
        assert session.run("systemctl is-active etcd").stdout.strip() == "active"


async def test_etcd_lifecycle(client, worker, repo: GitRepo, local_provider, tmp_path, assert_no_leak):
    orb = "e" + uuid.uuid4().hex[:6]
    with e2e_machines() as machines:
        first = repo.push({"desired.yml": desired(orb, 3, drift="4s")}, "three members")
        wid = await takeoff(client, RepoRef(url=repo.url))
        status = status_first = await wait_cluster(repo, first)
        assert len(status.nodes) == 3 and all(n.ready for n in status.nodes)
        assert sum(1 for n in status.nodes if n.leader) == 1
        assert len(status.endpoints) == 3 and all(e.startswith("https://") for e in status.endpoints)

        # `orbiter machines ls` shows them, with the IPs current.yml reports.
        listed = await asyncio.to_thread(CliRunner().invoke, app, ["machines", "ls", "-o", "json"])
        assert listed.exit_code == 0, listed.output
        rows = {(m["provider"], m["id"]): m for m in json.loads(listed.stdout)}
        for node in status.nodes:
            assert rows[("lab", node.machine)]["ip"] == node.ip and rows[("lab", node.machine)]["state"] == "running"

        # A member stopped by hand is started again by its node agent and reported as drift.
        await drift_is_put_back(repo, status.nodes[0])

        etcdctl = Etcdctl(repo, "meta", tmp_path)
        for i in range(20):
            etcdctl("put", f"/k/{i}", f"v{i}")

        # `orbiter plan` on a checkout says which steps the workflow will run, in its words.
        planned = await plan_of(repo, desired(orb, 5))
        assert [s for s in planned if not s.startswith(("packages", "members", "observe"))] == [
            "add member " + machine_name(orb, "meta", "etcd", 3), "add member " + machine_name(orb, "meta", "etcd", 4)]
        five = repo.push({"desired.yml": desired(orb, 5)}, "five members")
        # As a CI job would: push, then `orbiter poke --wait` returns once the commit is applied.
        waited = await asyncio.to_thread(
            CliRunner().invoke, app, ["poke", "--wait", "--repo", repo.url, "--timeout", "600", "-o", "json"]
        )
        assert waited.exit_code == 0, waited.output
        synced = {c["name"]: c for c in json.loads(waited.stdout)["clusters"]}
        assert synced["meta"]["phase"] == "Ready" and synced["meta"]["commit"] == five
        assert sum(1 for n in synced["meta"]["nodes"] if n["ready"]) == 5
        status = await wait_cluster(repo, five)
        assert len(status.nodes) == 5 and all(n.ready for n in status.nodes)
        assert status.plan == planned and status.done == planned  # it ran what the plan said, in order
        etcdctl = Etcdctl(repo, "meta", tmp_path)  # the bundle lists the new endpoints
        assert len(etcdctl.endpoints.split(",")) == 5
        assert etcdctl("get", "/k/7", "--print-value-only").strip() == "v7"

        three = repo.push({"desired.yml": desired(orb, 3)}, "back to three")
        await poke(client, wid)
        status = await wait_cluster(repo, three)
        assert len(status.nodes) == 3
        kept = {n.machine for n in status.nodes}
        assert {m["id"] for m in machines.list_status()} == kept  # the removed machines are gone
        etcdctl = Etcdctl(repo, "meta", tmp_path)
        assert etcdctl("get", "/k/19", "--print-value-only").strip() == "v19"
        assert len(etcdctl("member", "list").strip().splitlines()) == 3

        flags = desired(orb, 3, "      flags: {heartbeatInterval: 150, electionTimeout: 1500}\n")
        planned = await plan_of(repo, flags)
        assert [s for s in planned if s.startswith("roll ")] == [f"roll {n.machine}" for n in status.nodes]
        with Traffic(etcdctl) as traffic:
            rolled = repo.push(
                {"desired.yml": desired(orb, 3, "      flags: {heartbeatInterval: 150, electionTimeout: 1500}\n")},
                "slower heartbeat",
            )
            await poke(client, wid)
            status = await wait_cluster(repo, rolled)
        assert status.plan == planned and status.done == planned
        assert traffic.ops > 10
        assert len(traffic.failures) <= 2, traffic.failures  # a leader change may cost a request or two
        assert etcdctl("get", "/k/3", "--print-value-only").strip() == "v3"

        gone = repo.push({"desired.yml": desired(orb, 3, "      destroyed: true\n")}, "destroy")
        await poke(client, wid)
        status = await wait_cluster(repo, gone, phase="Destroyed")
        assert status.nodes == [] and machines.list_status() == []
        if RECORD:  # rich histories for the determinism guard (tests/workflows/test_replay.py)
            await save_history(client, "cluster_etcd_lifecycle", f"cluster/{orb}/meta", "ClusterWorkflow")
            first = sorted(n.machine for n in status_first.nodes)[0]
            await save_history(
                client, "node_agent_etcd_member", node_workflow_id(orb, "meta", first), "NodeAgentWorkflow"
            )
        await client.get_workflow_handle(wid).terminate()
        await client.get_workflow_handle(f"cluster/{orb}/meta").terminate()
        # The client key orbiter generated is in no history, log, state file or commit in plain text.
        key_line = (tmp_path / "etcd-key.pem").read_text().strip().splitlines()[1]
        assert_no_leak([key_line], repos=[repo.remote])
