"""Maintenance windows on the time-skipping test server, with a real etcd cluster on real machines:
a roll waits for its window, runs inside it, stops between members when the window ends and goes
on in the next one; `apply-now` runs one commit's roll at once.

The ClusterWorkflow runs alone here (the test server lacks signal-with-start, which the GitOps
workflow uses): the test starts it and signals each desired state as the GitOps workflow would.
Time only jumps inside `env.sleep`, while the cluster waits on a timer or is paused; steps run
in real time. The test server has no way to register search attributes, so the OrbiterPhase
upserts are dropped here (the real-server tests cover them).
"""

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orbiter.activities.machines import ensure_provider_keys
from orbiter.models.change import ApplyNowInput
from orbiter.models.cluster import ClusterInput, ControlInput, DesiredUpdate
from orbiter.models.current import ClusterStatus
from orbiter.models.desired import change_control, cluster_providers
from orbiter.models.gitops import ClusterReport
from orbiter.models.ids import TASK_QUEUE, cluster_workflow_id
from orbiter.models.load import load_desired
from orbiter.models.provision import EnsureKeysInput
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.worker.codec import data_converter
from orbiter.worker.registry import activities, workflows
from orbiter.workflows.cluster import ClusterWorkflow

from ..conftest import MASTER_KEY, GitRepo
from ..support.etcd_flows import desired, e2e_machines
from ..support.flows import wait_for
from ..support.net import subnet

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(93)
FLAGS = "      flags: {{heartbeatInterval: {beat}, electionTimeout: 2000}}\n"


@workflow.defn(sandboxed=False)
class Reports:
    """Stands where the GitOps workflow would: keeps the secrets the cluster made (its etcd CA and
    certificates), which the GitOps workflow would commit and pass back with the next commit."""

    def __init__(self) -> None:
        self.sealed: dict[str, str] = {}

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def report(self, report: ClusterReport) -> None:
        self.sealed.update(report.sealed_secrets)

    @workflow.query
    def secrets(self) -> dict[str, str]:
        return self.sealed


class Cluster:
    """A ClusterWorkflow fed desired states the way the GitOps workflow feeds it."""

    def __init__(self, env: WorkflowEnvironment, repo: GitRepo, orb: str) -> None:
        self.env, self.repo, self.orb = env, repo, orb
        self.keys: dict[str, str] = {}
        self.handle: WorkflowHandle | None = None
        self.reports = f"reports/{orb}"

    async def push(self, text: str, message: str) -> str:
        commit = self.repo.push({"desired.yml": text}, message)
        orb = load_desired(text, "desired.yml")
        spec = orb.spec.clusters["meta"]
        ref = RepoRef(url=self.repo.url)
        if self.handle is None:
            self.keys = ensure_provider_keys(EnsureKeysInput(
                providers=orb.spec.providers, secrets=SecretsRef(repo=ref, commit=commit))).sealed_secrets
            await self.env.client.start_workflow(Reports.run, id=self.reports, task_queue=TASK_QUEUE)
            self.handle = await self.env.client.start_workflow(
                ClusterWorkflow.run, ClusterInput(orb=self.orb, cluster="meta", gitops_workflow_id=self.reports),
                id=cluster_workflow_id(self.orb, "meta"), task_queue=TASK_QUEUE)
        made = await self.env.client.get_workflow_handle(self.reports).query(Reports.secrets)
        update = DesiredUpdate(commit=commit, subject=message, gitops_workflow_id=self.reports, spec=spec,
                               providers=cluster_providers(orb, spec), control=change_control(orb, spec),
                               secrets=SecretsRef(repo=ref, commit=commit, extra={**self.keys, **made}),
                               drift_interval_seconds=timedelta(days=30).total_seconds(),
                               backup_store=orb.spec.backup_store)
        await self.handle.signal(ClusterWorkflow.desired, update)
        return commit

    async def status(self) -> ClusterStatus:
        assert self.handle is not None
        return await self.handle.query(ClusterWorkflow.status)

    async def until(self, what: str, predicate, timeout: float = 300) -> ClusterStatus:
        async def check():
            status = await self.status()
            if status.phase == "Blocked":
                raise AssertionError(f"Blocked: {status.error}")
            return status if predicate(status) else None
        return await wait_for(check, timeout=timeout, interval=0.3, what=what)


def rolls(status: ClusterStatus) -> list[str]:
    return [s for s in status.done if s.startswith("roll")]


async def test_a_roll_keeps_to_its_windows_and_apply_now_overrides(repo: GitRepo, local_provider, monkeypatch):
    monkeypatch.setattr(workflow, "upsert_search_attributes", lambda *args, **kwargs: None)
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(binary),
                                                       data_converter=data_converter(MASTER_KEY))
    orb = "win" + uuid.uuid4().hex[:5]
    start = await env.get_current_time()
    opens = (start + timedelta(hours=2)).replace(second=0, microsecond=0)
    window = f"      maintenance: {{windows: [{{start: \"{opens:%H:%M}\", duration: 1h}}]}}\n"
    try:
        with e2e_machines(SUBNET) as machines, ThreadPoolExecutor(16) as pool:
            async with Worker(env.client, task_queue=TASK_QUEUE, workflows=[*workflows(), Reports],
                              activities=activities(env.client), activity_executor=pool):
                cluster = Cluster(env, repo, orb)
                text = desired(orb, 3, subnet=SUBNET, extra=window + FLAGS.format(beat=100))
                c1 = await cluster.push(text, "three members")
                # A new cluster is not disruptive: it is made at once, window or not.
                ready = await cluster.until("bootstrap", lambda s: s.phase == "Ready" and s.commit == c1)
                names = [n.machine for n in ready.nodes]

                c2 = await cluster.push(text.replace("heartbeatInterval: 100", "heartbeatInterval: 150"), "slower")
                held = await cluster.until("wait for the window", lambda s: s.phase == "AwaitingWindow")
                assert held.step == f"Waiting for maintenance window (opens {opens:%Y-%m-%d %H:%M} UTC)"
                assert not rolls(held)

                # Paused while it waits: when the window opens (time skips to it), one member rolls,
                # and the cluster holds before the next; meanwhile the window ends.
                await cluster.handle.signal(ClusterWorkflow.pause_signal)
                await env.sleep(opens - await env.get_current_time() + timedelta(seconds=1))
                paused = await cluster.until("paused after a member", lambda s: s.phase == "Paused")
                assert len(rolls(paused)) == 1
                await env.sleep(timedelta(hours=1, minutes=5))  # past the window's end
                await cluster.handle.execute_update(ClusterWorkflow.resume_update, ControlInput())
                stopped = await cluster.until("wait for the next window", lambda s: s.phase == "AwaitingWindow")
                tomorrow = opens + timedelta(days=1)
                assert stopped.step == f"Waiting for maintenance window (opens {tomorrow:%Y-%m-%d %H:%M} UTC)"
                assert rolls(stopped) == rolls(paused), "no member rolls outside the window"

                # The next day's window: the other members roll.
                await env.sleep(tomorrow - await env.get_current_time() + timedelta(seconds=1))
                done = await cluster.until("the rest rolled", lambda s: s.phase == "Ready" and s.commit == c2)
                assert rolls(done)[:1] == rolls(paused) and sorted(rolls(done)) == sorted(f"roll {n}" for n in names)

                # apply-now: the next commit's roll runs at once, outside the window, recorded.
                await env.sleep(timedelta(hours=2))  # out of the window again
                c3 = await cluster.push(text.replace("heartbeatInterval: 100", "heartbeatInterval: 200"), "slowest")
                await cluster.until("wait again", lambda s: s.phase == "AwaitingWindow" and s.desired_commit == c3)
                answer = await cluster.handle.execute_update(ClusterWorkflow.apply_now_update,
                                                             ApplyNowInput(by="carol"))
                assert "applies now" in answer.message
                now = await cluster.until("applied now", lambda s: s.phase == "Ready" and s.commit == c3)
                assert len(rolls(now)) == 3 and (now.override.by, now.override.commit) == ("carol", c3)

                c4 = await cluster.push(text.replace("heartbeatInterval: 100", "heartbeatInterval: 200") +
                                        "      destroyed: true\n", "destroy")
                await cluster.until("destroyed", lambda s: s.phase == "Destroyed" and s.commit == c4)
                assert not machines.list_status()
                await cluster.handle.terminate("test over")
                await env.client.get_workflow_handle(cluster.reports).terminate("test over")
    finally:
        await env.shutdown()
