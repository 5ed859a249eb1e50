"""The GitOps loop against a real Temporal server and real git repositories."""

import asyncio
import time

import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from orbiter.activities.git import write_back
from orbiter.models.current import OrbStatus
from orbiter.models.gitops import OBSERVED_MESSAGE, GitOpsInput, PokeInput, SyncInput, WriteBackInput
from orbiter.models.ids import TASK_QUEUE, gitops_workflow_id
from orbiter.models.refs import RepoRef
from orbiter.workflows.cluster import ClusterWorkflow
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import GitRepo, git
from ..support.flows import DESIRED

pytestmark = pytest.mark.slow



ORB = "t"


@pytest.fixture(autouse=True)
def unique_orb(request):
    """Each test its own orb, so cluster workflow ids never collide across tests."""
    global ORB
    ORB = "t" + hex(abs(hash(request.node.name)))[2:10]
    yield


def desired(orb: str | None = None, poll: str = "1h") -> str:
    return DESIRED.format(orb=orb or ORB, poll=poll)


async def takeoff(client: Client, repo: GitRepo) -> str:
    ref = RepoRef(url=repo.url, branch="main")
    wid = gitops_workflow_id(ref.url, ref.branch)
    from temporalio.common import WorkflowIDConflictPolicy

    await client.start_workflow(
        GitOpsWorkflow.run,
        GitOpsInput(repo=ref),
        id=wid,
        task_queue=TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return wid


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


def current(repo: GitRepo) -> OrbStatus:
    return OrbStatus.from_yaml(repo.remote_file("current.yml"))


async def test_push_reaches_clusters_and_current_yml_is_committed(client, worker, repo: GitRepo):
    commit = repo.push({"desired.yml": desired()}, "day one")
    wid = await takeoff(client, repo)
    status = await wait_for(
        lambda: (s := current(repo)).clusters.get("meta") and s.clusters["meta"].phase == "Paused" and s
    )
    assert status.orb == ORB and status.commit == commit and status.rejected is None
    assert repo.log("%an")[0] == "orbiter"
    # The cluster workflow exists under its derived id and answers queries.
    cluster = await client.get_workflow_handle(f"cluster/{ORB}/meta").query(ClusterWorkflow.status)
    assert cluster.phase == "Paused"
    # A second takeoff is a no-op: same workflow, same run.
    run_id = (await client.get_workflow_handle(wid).describe()).run_id
    await takeoff(client, repo)
    assert (await client.get_workflow_handle(wid).describe()).run_id == run_id


async def test_invalid_push_is_rejected_with_line_and_previous_state_stays(client, worker, repo: GitRepo):
    good = repo.push({"desired.yml": desired()}, "good")
    wid = await takeoff(client, repo)
    await wait_for(lambda: current(repo).commit == good)
    bad = repo.push({"desired.yml": desired().replace("nodes: 1", "nodes: 12")}, "bad")
    await client.get_workflow_handle(wid).signal(GitOpsWorkflow.poke, PokeInput())
    status = await wait_for(lambda: (s := current(repo)).rejected and s)
    assert status.rejected.commit == bad
    assert status.rejected.line == 17
    assert status.rejected.message == "desired.yml:17 clusters.meta.members.nodes: must be between 1 and 9"
    assert status.commit == good  # the last valid desired state stays in force
    live = await client.get_workflow_handle(wid).query(GitOpsWorkflow.status)
    assert live.rejected and live.rejected.commit == bad
    # Fixing it clears the rejection.
    fixed = repo.push({"desired.yml": desired().replace("nodes: 1", "nodes: 1 ")}, "fix")
    await client.get_workflow_handle(wid).signal(GitOpsWorkflow.poke, PokeInput())
    status = await wait_for(lambda: (s := current(repo)).commit == fixed and s)
    assert status.rejected is None


async def test_a_yaml_tag_is_rejected_in_one_line_and_the_loop_goes_on(client, worker, repo: GitRepo):
    """A tag the safe loader cannot build (here an attempt to run a command) is a rejected
    commit like any other bad input: named with its line, never retried, never wedging the loop."""
    good = repo.push({"desired.yml": desired()}, "good")
    wid = await takeoff(client, repo)
    handle = client.get_workflow_handle(wid)
    await wait_for(lambda: current(repo).commit == good)
    text = desired().replace("pollInterval: 1h", "pollInterval: !!python/object/apply:os.system [false]")
    bad = repo.push({"desired.yml": text}, "a tag")
    await handle.signal(GitOpsWorkflow.poke, PokeInput())
    status = await wait_for(lambda: (s := current(repo)).rejected and s)
    line = text.splitlines().index("  pollInterval: !!python/object/apply:os.system [false]") + 1
    assert status.rejected.commit == bad and status.rejected.line == line
    assert status.rejected.message == (
        f"desired.yml:{line} pollInterval: YAML tag !!python/object/apply:os.system is not allowed: write a plain value"
    )
    assert status.commit == good
    desc = await handle.describe()
    assert desc.status.name == "RUNNING"
    assert all(a.attempt == 1 for a in desc.raw_description.pending_activities)  # nothing retrying
    # The loop goes on: the next valid push is applied and clears the rejection.
    fixed = repo.push({"desired.yml": desired()}, "fix")
    await handle.signal(GitOpsWorkflow.poke, PokeInput())
    status = await wait_for(lambda: (s := current(repo)).commit == fixed and s)
    assert status.rejected is None


async def test_poll_interval_applies_a_push_without_poke(client, worker, repo: GitRepo):
    repo.push({"desired.yml": desired(poll="1s")}, "one")
    await takeoff(client, repo)
    await wait_for(lambda: current(repo).orb == ORB)
    second = repo.push(
        {"desired.yml": desired(poll="1s").replace("paused: true", "paused: true\n      tls: false")}, "two"
    )
    await wait_for(lambda: current(repo).commit == second, timeout=10)


async def test_removed_cluster_is_orphaned_not_destroyed(client, worker, repo: GitRepo):
    repo.push({"desired.yml": desired()}, "one")
    wid = await takeoff(client, repo)
    await wait_for(lambda: (c := current(repo).clusters.get("meta")) and c.phase == "Paused")
    text = desired().split("  clusters:")[0] + "  clusters: {}\n"
    repo.push({"desired.yml": text}, "remove meta")
    await client.get_workflow_handle(wid).signal(GitOpsWorkflow.poke, PokeInput())
    status = await wait_for(lambda: (s := current(repo)).clusters.get("meta") and s.clusters["meta"].orphaned and s)
    assert status.clusters["meta"].phase == "Paused"
    desc = await client.get_workflow_handle(f"cluster/{ORB}/meta").describe()
    assert desc.status.name == "RUNNING"


def test_write_back_rebases_onto_a_user_commit_that_raced_it(orbiter_env, repo: GitRepo):
    repo.push({"desired.yml": desired()}, "one")
    ref = RepoRef(url=repo.url, branch="main")
    env = ActivityEnvironment()
    first = env.run(write_back, WriteBackInput(repo=ref, current_yaml="a: 1\n", message="orbiter: state"))
    assert first.commit
    # The operator pushes while orbiter's worktree is behind.
    user = repo.push({"desired.yml": desired(orb="u")}, "user change")
    result = env.run(write_back, WriteBackInput(repo=ref, current_yaml="a: 2\n", message="orbiter: state"))
    assert result.commit
    log = repo.log("%H %an %s")
    assert log[0].endswith("orbiter orbiter: state") and log[1].startswith(user)
    assert yaml.safe_load(repo.remote_file("current.yml")) == {"a": 2}
    # Nothing changed -> no commit.
    again = env.run(write_back, WriteBackInput(repo=ref, current_yaml="a: 2\n", message="orbiter: state"))
    assert again.commit is None and len(repo.log()) == len(log)


def test_write_back_retries_a_push_rejected_because_the_remote_moved(orbiter_env, repo: GitRepo, monkeypatch):
    import orbiter.activities.git as gitmod

    repo.push({"desired.yml": desired()}, "one")
    ref = RepoRef(url=repo.url, branch="main")
    real_apply = gitmod._apply
    raced = []

    def apply_then_race(input, path):
        changed = real_apply(input, path)
        if not raced:  # a user pushes between our fetch and our push
            raced.append(repo.push({"README.md": "hello\n"}, "user readme"))
        return changed

    monkeypatch.setattr(gitmod, "_apply", apply_then_race)
    result = ActivityEnvironment().run(
        write_back, WriteBackInput(repo=ref, current_yaml="b: 1\n", message="orbiter: state")
    )
    assert result.attempts == 2
    assert repo.remote_file("README.md") == "hello\n"
    assert git(repo.remote, "rev-parse", "main~1") == raced[0]


async def test_unreachable_remote_is_reported_not_fatal(client, worker, tmp_path):
    ref = RepoRef(url=str(tmp_path / "missing.git"), branch="main")
    wid = gitops_workflow_id(ref.url, ref.branch)
    handle = await client.start_workflow(GitOpsWorkflow.run, GitOpsInput(repo=ref), id=wid, task_queue=TASK_QUEUE)
    status = await wait_for(lambda: _query_error(handle), timeout=30)
    assert "cannot poll" in status and "missing.git" in status
    assert (await handle.describe()).status.name == "RUNNING"
    await handle.terminate()


async def _query_error(handle):
    s = await handle.query(GitOpsWorkflow.status)
    return s.error


async def test_the_applied_commit_is_the_users_when_a_write_back_lands_on_top(client, worker, repo: GitRepo):
    """A user pushes while the worker is away; when it comes back, its pending write-back lands on
    top of that commit before it reads the branch. Status, current.yml and `sync` name the user's
    commit, never orbiter's."""
    first = repo.push({"desired.yml": desired()}, "day one")
    wid = await takeoff(client, repo)
    await wait_for(lambda: current(repo).commit == first)
    await worker.stop()
    user = repo.push({"desired.yml": desired().replace("nodes: 1", "nodes:  1")}, "while the worker was down")
    git(repo.clone, "pull", "-q", "--rebase", "origin", "main")
    (repo.clone / "current.yml").write_text((repo.clone / "current.yml").read_text() + "# pending\n")
    git(repo.clone, "-c", "user.name=orbiter", "-c", "user.email=orbiter@localhost", "commit", "-q", "-a",
        "--author", "orbiter <orbiter@localhost>", "-m", OBSERVED_MESSAGE)
    git(repo.clone, "push", "-q", "origin", "main")
    write_back_commit = git(repo.clone, "rev-parse", "HEAD")
    assert write_back_commit != user

    await worker.start()
    handle = client.get_workflow_handle(wid)
    synced = await handle.execute_update(GitOpsWorkflow.sync, SyncInput())
    assert synced.commit == user and synced.status.commit == user, (
        first, user, write_back_commit, synced.status.rejected)
    assert (await handle.query(GitOpsWorkflow.status)).commit == user
    await wait_for(lambda: current(repo).commit == user)
    # A commit that changes nothing orbiter acts on (a README) is not an applied commit either.
    repo.push({"README.md": "notes\n"}, "docs")
    synced = await handle.execute_update(GitOpsWorkflow.sync, SyncInput())
    assert synced.commit == user
