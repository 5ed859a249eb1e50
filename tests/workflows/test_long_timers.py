"""Long timers on the time-skipping test server: an hour-long poll interval still picks up a push."""

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orbiter.models.current import OrbStatus
from orbiter.models.gitops import GitOpsInput
from orbiter.models.ids import TASK_QUEUE
from orbiter.models.refs import RepoRef
from orbiter.worker.codec import data_converter
from orbiter.worker.registry import activities, workflows
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import MASTER_KEY, GitRepo

pytestmark = pytest.mark.slow

# No clusters: the time-skipping test server does not implement signal-with-start fully, and the
# timer of the GitOps loop is what this test is about.
DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: timers
spec:
  pollInterval: 1h
  providers: {}
  clusters: {}
"""


async def test_hour_long_poll_interval_applies_push_after_the_interval(orbiter_env, repo: GitRepo):
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(binary), data_converter=data_converter(MASTER_KEY))
    try:
        with ThreadPoolExecutor(8) as pool:
            async with Worker(env.client, task_queue=TASK_QUEUE, workflows=workflows(),
                              activities=activities(env.client), activity_executor=pool):
                first = repo.push({"desired.yml": DESIRED}, "one")
                handle = await env.client.start_workflow(
                    GitOpsWorkflow.run, GitOpsInput(repo=RepoRef(url=repo.url)), id="gitops-timers",
                    task_queue=TASK_QUEUE)
                await env.sleep(5)
                status: OrbStatus = await handle.query(GitOpsWorkflow.status)
                assert status.commit == first
                second = repo.push({"desired.yml": DESIRED.replace("1h", "60m")}, "two")
                await env.sleep(30 * 60)
                assert (await handle.query(GitOpsWorkflow.status)).commit == first  # not before the interval
                await env.sleep(31 * 60)
                assert (await handle.query(GitOpsWorkflow.status)).commit == second
                await handle.terminate()
    finally:
        await env.shutdown()
