"""Issue 3's end to end: NodeAgentWorkflows converge three real machines, then keep them so."""

import asyncio
import contextlib
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.providers.local.packages import resolve_host_versions
from orbiter.activities.ssh import connect
from orbiter.models.ids import TASK_QUEUE, node_workflow_id
from orbiter.models.machines import Machine
from orbiter.models.node import NodeAgentInput, NodeAgentUpdate, NodeReport
from orbiter.models.nodespec import AptSource, FileSpec, NodeSpec, Package, UnitSpec
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.models.secrets import SecretBox
from orbiter.workflows.node_agent import NodeAgentWorkflow

from ..conftest import MASTER_KEY, git

pytestmark = [pytest.mark.machines, pytest.mark.slow]

CONFIG = "/etc/orbiter-demo/app.conf"
UNIT = """[Unit]
Description=a service configured by orbiter
[Service]
EnvironmentFile=/etc/orbiter-demo/app.conf
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""
PACKAGE = "tree"  # small, no dependencies, not in the base image: it must come from the served repo


@workflow.defn(sandboxed=False)
class ReportCollector:
    """Stands in for a cluster workflow: keeps every node report it is sent."""

    def __init__(self) -> None:
        self.reports: list[NodeReport] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def node_report(self, report: NodeReport) -> None:
        self.reports.append(report)

    @workflow.query
    def all(self) -> list[NodeReport]:
        return self.reports


async def reports(client: Client, wid: str) -> list[NodeReport]:
    return await client.get_workflow_handle(wid).query(ReportCollector.all, result_type=list[NodeReport])


async def wait_reports(client: Client, wid: str, pred, timeout: float = 120) -> list[NodeReport]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [r for r in await reports(client, wid) if pred(r)]
        if got:
            return got
        await asyncio.sleep(0.5)
    raise AssertionError(f"no matching report in {timeout}s; have {await reports(client, wid)}")


def secrets_repo(root: Path, key_name: str, private_key: str) -> SecretsRef:
    remote, work = root / "remote.git", root / "work"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(root, "clone", "-q", str(remote), str(work))
    box = SecretBox.new(MASTER_KEY)
    file = box.empty_file()
    file.secrets[key_name] = box.encrypt(key_name, private_key.encode())
    (work / "secrets.yml").write_text(file.to_yaml())
    git(work, "checkout", "-q", "-b", "main")
    git(work, "add", "secrets.yml")
    git(work, "commit", "-q", "-m", "secrets")
    git(work, "push", "-q", "origin", "main")
    return SecretsRef(repo=RepoRef(url=str(remote)), commit=git(work, "rev-parse", "HEAD"))


async def test_node_agents_converge_three_machines_and_undo_drift(
    client: Client, worker, local_provider: LocalMachines, maintenance_key: tuple[str, str], tmp_path: Path
):
    private, public = maintenance_key
    suffix = uuid.uuid4().hex[:4]
    ids = [f"na{suffix}-{i}" for i in range(3)]
    key_name = "e2e_maintenancekey"
    secrets = secrets_repo(tmp_path, key_name, private)
    version = resolve_host_versions(
        {
            PACKAGE: subprocess.run(
                ["sh", "-c", f"apt-cache madison {PACKAGE} | head -1 | cut -d'|' -f2"],
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .split(":")[-1]
            .rsplit("-", 1)[0]
        }
    )[PACKAGE]
    repo = AptRepo(local_provider)
    repo.ensure_packages([(PACKAGE, version)])
    repo.ensure_served()
    collector = f"collector-{suffix}"
    machines: list[Machine] = []
    handles = []
    try:
        machines = local_provider.create("agents", ids, public, key_name)

        def spec_for(m: Machine) -> NodeSpec:
            return NodeSpec(
                hostname=m.id,
                apt_sources=[AptSource(name="local", line=repo.source_line())],
                packages=[Package(name=PACKAGE, version=version)],
                files=[FileSpec(path=CONFIG, content=f"NAME={m.id}\n", mode="0640")],
                units=[UnitSpec(name="orbiter-demo.service", content=UNIT, restart_on=[CONFIG])],
                sysctls={"net.ipv4.ip_forward": "1"},
            )

        async with Worker(client, task_queue="test-collector", workflows=[ReportCollector]):
            await client.start_workflow(ReportCollector.run, id=collector, task_queue="test-collector")
            for m in machines:
                handles.append(
                    await client.start_workflow(
                        NodeAgentWorkflow.run,
                        NodeAgentInput(
                            orb="e2e",
                            cluster="agents",
                            machine=m,
                            spec=spec_for(m),
                            generation=1,
                            secrets=secrets,
                            drift_interval_seconds=3,
                            parent_workflow_id=collector,
                        ),
                        id=node_workflow_id("e2e", "agents", m.id),
                        task_queue=TASK_QUEUE,
                    )
                )
            first = {}
            for m in machines:
                got = await wait_reports(client, collector, lambda r, m=m: r.machine_id == m.id and r.generation == 1)
                first[m.id] = got[0]
            for m in machines:
                assert first[m.id].ok, first[m.id].error
                assert {c.kind for c in first[m.id].changes} >= {"package", "file", "unit", "sysctl"}
                with connect(m.model_copy(update={"host_key": first[m.id].host_key}), private) as s:
                    assert s.run(f"dpkg-query -W -f='${{Version}}' {PACKAGE}").stdout == version
                    assert s.run(f"cat {CONFIG}").stdout == f"NAME={m.id}\n"
                    assert s.run(f"stat -c %a {CONFIG}").stdout.strip() == "640"
                    assert s.run("systemctl is-active orbiter-demo.service").stdout.strip() == "active"
                    assert s.run("systemctl is-enabled orbiter-demo.service").stdout.strip() == "enabled"
                    assert s.run("cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"

            # A second round of the same spec changes nothing.
            for h, m in zip(handles, machines, strict=True):
                await h.signal(
                    NodeAgentWorkflow.apply, NodeAgentUpdate(spec=spec_for(m), generation=2, secrets=secrets)
                )
            for m in machines:
                got = await wait_reports(client, collector, lambda r, m=m: r.machine_id == m.id and r.generation == 2)
                assert got[0].ok and got[0].changes == [], got[0]

            # Drift by hand on one machine: a stopped unit and an edited file are put back and reported.
            target = machines[0]
            with connect(target.model_copy(update={"host_key": first[target.id].host_key}), private) as s:
                s.run(
                    f"echo NAME=edited > {CONFIG}; systemctl stop orbiter-demo.service; systemctl daemon-reload",
                    check=True,
                )
                drift = await wait_reports(
                    client, collector, lambda r: r.machine_id == target.id and r.drift, timeout=60
                )
                targets = {(c.kind, c.target) for c in drift[0].changes}
                assert ("file", CONFIG) in targets
                assert s.run(f"cat {CONFIG}").stdout == f"NAME={target.id}\n"
                assert s.run("systemctl is-active orbiter-demo.service").stdout.strip() == "active"
            # Machines nobody touched report no drift.
            assert not [r for r in await reports(client, collector) if r.drift and r.machine_id != target.id]
    finally:
        for h in handles:
            await h.terminate()
        with contextlib.suppress(Exception):  # it may not have started
            await client.get_workflow_handle(collector).terminate()
        for mid in ids:
            local_provider.delete(mid)
