"""Crash safety: a SIGKILLed worker or a restarted server loses no workflow and no write-back."""

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from orbiter.models.gitops import PokeInput
from orbiter.models.refs import RepoRef
from orbiter.worker.client import connect
from orbiter.worker.server import ServerError, lock_path, start_server, stop_server
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import GitRepo, free_port
from ..support.flows import WorkerProcess, current, desired, takeoff, wait_for

pytestmark = pytest.mark.slow

# A killed worker's workflow task moves to another worker after the sticky schedule-to-start
# timeout (5 s); an activity it was running is retried after its timeout. Bounded generously.
RECOVERY = 120.0


async def _running(client: Client, wid: str) -> bool:
    try:
        return (await client.get_workflow_handle(wid).describe()).status.name == "RUNNING"
    except Exception:
        return False


async def test_sigkilled_worker_loses_nothing(client, temporal_server, repo: GitRepo, tmp_path: Path):
    orb = "crash" + uuid.uuid4().hex[:8]
    commit = repo.push({"desired.yml": desired(orb)}, "day one")
    ref = RepoRef(url=repo.url)
    first = WorkerProcess(tmp_path / "worker1.log", temporal_server.address)
    second = WorkerProcess(tmp_path / "worker2.log", temporal_server.address)
    try:
        first.start()
        wid = await takeoff(client, ref)
        cluster_id = f"cluster/{orb}/meta"
        # Kill it mid-flow: the cluster workflow was started, current.yml is not yet written
        # (the GitOps workflow batches reports for a second before it writes back).
        await wait_for(lambda: _running(client, cluster_id), timeout=60, interval=0.05,
                       what="cluster workflow started by the first worker")
        written_before_kill = current(repo) is not None
        first.kill()
        assert not first.alive()
        second.start()
        status = await wait_for(
            lambda: (s := current(repo)) and s.commit == commit and "meta" in s.clusters
            and s.clusters["meta"].phase == "Paused" and s,
            timeout=RECOVERY, what="current.yml from the second worker")
        assert status.orb == orb and status.rejected is None
        assert repo.log("%an")[0] == "orbiter"
        for workflow_id in (wid, cluster_id):
            assert await _running(client, workflow_id), f"{workflow_id} is not running"
        # The second worker serves the loop: a new push still applies.
        second_commit = repo.push({"desired.yml": desired(orb).replace("nodes: 1", "nodes: 1 ")}, "two")
        await client.get_workflow_handle(wid).signal(GitOpsWorkflow.poke, PokeInput())
        await wait_for(lambda: (s := current(repo)) and s.commit == second_commit, timeout=RECOVERY,
                       what="second commit applied")
        print(f"current.yml written before the kill: {written_before_kill}")
    finally:
        first.kill()
        second.kill()


async def test_server_restart_on_the_same_db_keeps_a_pending_write_back(orbiter_env, repo: GitRepo, tmp_path: Path):
    db, log = tmp_path / "state" / "temporal.db", tmp_path / "server.log"
    port = free_port()
    address = f"127.0.0.1:{port}"
    orb = "restart" + uuid.uuid4().hex[:8]
    ref = RepoRef(url=repo.url)
    server = start_server(db, port=port, headless=True, log=log)
    worker = WorkerProcess(tmp_path / "worker.log", address)
    try:
        worker.start()
        client = await connect(address)
        first = repo.push({"desired.yml": desired(orb)}, "one")
        wid = await takeoff(client, ref)
        await wait_for(lambda: (s := current(repo)) and s.commit == first, timeout=60, what="first current.yml")
        second = repo.push({"desired.yml": desired(orb).replace("nodes: 1", "nodes: 1 ")}, "two")
        handle = client.get_workflow_handle(wid)
        await handle.signal(GitOpsWorkflow.poke, PokeInput())
        # The workflow has taken the commit; its write-back waits out the batch window. Stop now.
        await wait_for(lambda: _status_commit(handle, second), timeout=60, interval=0.02,
                       what="GitOps workflow took the second commit")
        stop_server(server)
        assert server.poll() is not None
        pending = (s := current(repo)) is None or s.commit != second
        # Restart at once on the same db and port; the worker reconnects (or a new one serves).
        server = start_server(db, port=port, headless=True, log=log)
        if not worker.alive():
            worker.start()
        await wait_for(lambda: (s := current(repo)) and s.commit == second, timeout=RECOVERY,
                       what="second current.yml after the restart")
        assert await _running(client, wid)
        assert await _running(client, f"cluster/{orb}/meta")
        print(f"write-back was pending at the stop: {pending}")
    finally:
        worker.kill()
        stop_server(server)


async def _status_commit(handle, commit: str) -> bool:
    return (await handle.query(GitOpsWorkflow.status)).commit == commit


def test_second_server_on_a_db_in_use_is_refused(orbiter_env, tmp_path: Path):
    """Two servers on one SQLite file corrupt it; the second waits for the lock, then refuses."""
    db = tmp_path / "temporal.db"
    server = start_server(db, port=free_port(), headless=True, log=tmp_path / "a.log")
    try:
        with pytest.raises(ServerError, match="in use by another Temporal server"):
            start_server(db, port=free_port(), headless=True, log=tmp_path / "b.log", wait=1.0)
        assert str(server.pid) in lock_path(db).read_text()
    finally:
        stop_server(server)
    # Once the first has exited, the db is free at once.
    again = start_server(db, port=free_port(), headless=True, log=tmp_path / "a.log")
    stop_server(again)
