"""Determinism guard: recorded histories of real runs must replay against today's workflow code.

A change to GitOpsWorkflow or ClusterWorkflow that would break workflows already running in a
user's server (a reordered activity, a new timer, a renamed signal) fails here.

The histories in tests/histories/ come from a real run (valid push, invalid push, fix, pause /
resume / retry updates and signals, poke). Their payloads are encrypted with conftest's fixed
MASTER_KEY. Re-record them (only when a change is meant to be incompatible, e.g. behind
workflow.patched, or to cover a new path) with:

    ORBITER_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/test_replay.py -p no:cacheprovider

and commit the new JSON files alongside the old ones you keep.
"""

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from orbiter.models.cluster import ControlInput
from orbiter.models.gitops import GitOpsInput, PokeInput
from orbiter.models.refs import RepoRef
from orbiter.worker.codec import data_converter
from orbiter.worker.registry import workflows
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import MASTER_KEY, GitRepo
from ..support.flows import current, desired, takeoff, wait_for

HISTORIES = Path(__file__).parent / "histories"
RECORD = os.environ.get("ORBITER_RECORD_HISTORIES") == "1"


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


@pytest.mark.skipif(RECORD, reason="recording run: the histories are being rewritten")
@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
async def test_recorded_history_replays_without_nondeterminism(path: Path):
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(workflows=workflows(), data_converter=data_converter(MASTER_KEY))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


@pytest.mark.skipif(RECORD, reason="recording run: the histories are being rewritten")
def test_histories_cover_the_long_running_workflows():
    types = {json.loads(p.read_text())["workflow_type"] for p in recorded()}
    wanted = {"GitOpsWorkflow", "ClusterWorkflow", "NodeAgentWorkflow"}
    assert wanted <= types, f"re-record: only {types} in {HISTORIES}"


@workflow.defn(name="GitOpsWorkflow", sandboxed=False)
class ReorderedGitOpsWorkflow:
    """A GitOpsWorkflow that starts with a timer instead of its poll: not replay-compatible."""

    @workflow.run
    async def run(self, input: GitOpsInput) -> None:
        await workflow.sleep(timedelta(seconds=1))
        await workflow.wait_condition(lambda: False)


@pytest.mark.skipif(RECORD, reason="recording run: the histories are being rewritten")
async def test_the_guard_catches_a_nondeterministic_change():
    path = next(p for p in recorded() if json.loads(p.read_text())["workflow_type"] == "GitOpsWorkflow")
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    replayer = Replayer(workflows=[ReorderedGitOpsWorkflow], data_converter=data_converter(MASTER_KEY))
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None


async def _save(client: Client, name: str, workflow_id: str, workflow_type: str) -> None:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    record = {"workflow_id": workflow_id, "workflow_type": workflow_type,
              "history": json.loads(history.to_json())}
    (HISTORIES / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


@pytest.mark.slow
@pytest.mark.skipif(not RECORD, reason="set ORBITER_RECORD_HISTORIES=1 to re-record tests/histories/")
async def test_record_histories(client, worker, repo: GitRepo):
    orb = "replay" + uuid.uuid4().hex[:6]
    ref = RepoRef(url=repo.url)
    good = repo.push({"desired.yml": desired(orb)}, "good")
    wid = await takeoff(client, ref)
    gitops = client.get_workflow_handle(wid)
    await wait_for(lambda: (s := current(repo)) and s.commit == good, what="first current.yml")
    # An invalid push: rejected, previous state stays.
    bad = repo.push({"desired.yml": desired(orb).replace("nodes: 1", "nodes: 12")}, "bad")
    await gitops.signal(GitOpsWorkflow.poke, PokeInput())
    await wait_for(lambda: (s := current(repo)) and s.rejected and s.rejected.commit == bad, what="rejection")
    # The fix, unpaused: the cluster reconciles (Ready, or Blocked while its kind has no
    # reconcile yet; both are recorded paths).
    fixed = repo.push({"desired.yml": desired(orb).replace("      paused: true\n", "")}, "fix")
    await gitops.signal(GitOpsWorkflow.poke, PokeInput())
    settled = ("Ready", "Blocked")
    await wait_for(lambda: (s := current(repo)) and s.commit == fixed and s.clusters["meta"].phase in settled
                   or (s and s.clusters["meta"].phase == "Blocked" and s.clusters["meta"].desired_commit == fixed),
                   what="reconciled after the fix")
    cluster = client.get_workflow_handle(f"cluster/{orb}/meta")
    # Operator controls, as updates (CLI) and as signals (Web UI).
    await cluster.execute_update("retry", ControlInput())
    await wait_for(lambda: (s := current(repo)) and s.clusters["meta"].phase in settled, what="retried")
    await cluster.execute_update("pause", ControlInput(reason="replay"))
    await wait_for(lambda: (s := current(repo)) and s.clusters["meta"].phase == "Paused", what="Paused")
    await cluster.execute_update("retry", ControlInput())  # nothing to retry while paused
    await cluster.execute_update("resume", ControlInput())
    await wait_for(lambda: (s := current(repo)) and s.clusters["meta"].phase in settled, what="resumed")
    await cluster.signal("pause")
    await wait_for(lambda: (s := current(repo)) and s.clusters["meta"].phase == "Paused", what="Paused by signal")
    await cluster.signal("resume")
    await cluster.signal("retry")
    # A poke with nothing new.
    await gitops.signal(GitOpsWorkflow.poke, PokeInput())
    await wait_for(lambda: (s := current(repo)) and s.clusters["meta"].phase in settled, what="settled")
    await _save(client, "gitops_push_reject_fix_controls", wid, "GitOpsWorkflow")
    await _save(client, "cluster_push_reject_fix_controls", f"cluster/{orb}/meta", "ClusterWorkflow")
    await gitops.terminate()
    await cluster.terminate()
