"""An idle cluster that only runs update checks keeps its history short: after
CHECKS_BEFORE_CONTINUE_AS_NEW checks without a reconcile (or when the server suggests it) it
continues as new, with its state, and goes on checking. On the time-skipping test server (weeks of
hourly checks pass in seconds); the cluster is Ready at its commit on a local provider that serves
nothing yet, so each check is one quick activity."""

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orbiter.models.cluster import ClusterInput, ClusterState, DesiredUpdate
from orbiter.models.current import ClusterStatus
from orbiter.models.desired import cluster_providers
from orbiter.models.ids import TASK_QUEUE, cluster_workflow_id
from orbiter.models.load import load_desired
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.worker.codec import data_converter
from orbiter.worker.registry import activities, workflows
from orbiter.workflows.cluster import ClusterWorkflow
from orbiter.workflows.updates import CHECKS_BEFORE_CONTINUE_AS_NEW

from ..conftest import MASTER_KEY
from ..support.etcd_flows import desired

pytestmark = pytest.mark.slow


async def test_an_idle_cluster_continues_as_new_after_its_checks(monkeypatch, tmp_path):
    monkeypatch.setattr(workflow, "upsert_search_attributes", lambda *args, **kwargs: None)
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(binary),
                                                       data_converter=data_converter(MASTER_KEY))
    orb = "roll" + uuid.uuid4().hex[:5]
    text = desired(orb, 1, subnet="10.1.2.0/24", extra="      updates: {policy: patch, check: 1h}\n")
    spec = load_desired(text).spec.clusters["meta"]
    update = DesiredUpdate(commit="c1", gitops_workflow_id=f"reports/{orb}", spec=spec,
                           providers=cluster_providers(load_desired(text), spec),
                           secrets=SecretsRef(repo=RepoRef(url=str(tmp_path / "none.git")), commit="c1"))
    state = ClusterState(desired=update, applied=spec, attempted_commit="c1",
                         status=ClusterStatus(kind="etcd", phase="Ready", commit="c1", desiredCommit="c1"))
    try:
        with ThreadPoolExecutor(4) as pool:
            async with Worker(env.client, task_queue=TASK_QUEUE, workflows=workflows(),
                              activities=activities(env.client), activity_executor=pool):
                handle = await env.client.start_workflow(
                    ClusterWorkflow.run, ClusterInput(orb=orb, cluster="meta", gitops_workflow_id=f"reports/{orb}",
                                                      state=state),
                    id=cluster_workflow_id(orb, "meta"), task_queue=TASK_QUEUE)
                first = (await handle.describe()).run_id
                await env.sleep(3600 * (CHECKS_BEFORE_CONTINUE_AS_NEW + 2))
                latest = env.client.get_workflow_handle(handle.id)
                status = await latest.query(ClusterWorkflow.status)
                assert (await latest.describe()).run_id != first  # continued as new
                assert (status.phase, status.commit) == ("Ready", "c1")  # with its state
                assert status.updates is not None and status.updates.error is None and status.updates.checked
                run1 = env.client.get_workflow_handle(handle.id, run_id=first)
                events = [e async for e in run1.fetch_history_events()]
                checks = [e for e in events if e.HasField("activity_task_scheduled_event_attributes")
                          and e.activity_task_scheduled_event_attributes.activity_type.name == "check_updates"]
                # At the limit, or earlier when the server suggests it (the test server does, at a small history).
                assert 10 < len(checks) <= CHECKS_BEFORE_CONTINUE_AS_NEW
                assert events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
                await latest.terminate("test over")
    finally:
        await env.shutdown()
