"""`orbiter worker --self-update` on a real Temporal server of its own, with a real etcd cluster:
two wheels of this tree (its version bumped to the next patch, and a broken one after it) appear in
a find-links directory; the worker moves to the good one while the cluster is Ready, the cluster's
workflow keeps its run and applies the next commit on the new worker with no step repeated, and
the broken one is rolled back, recorded and reported."""

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orbiter.activities.repo import state_dir
from orbiter.models.refs import RepoRef
from orbiter.worker.client import connect
from orbiter.worker.identity import orbiter_version, serving_workers
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import GitRepo, TemporalServer
from ..support.etcd_flows import current, desired, e2e_machines, poke, stop_orb, wait_cluster
from ..support.flows import orbiter_bin, takeoff, wait_for
from ..support.net import subnet

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(95)  # as test_updates_kubernetes: modules of one xdist worker run one after the other
ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("models", "workflows", "activities", "agent", "worker", "cli")
POLICY = '  orbiter: {version: ">=0.2,<0.3", updates: patch}\n'


def bumped(version: str, by: int) -> str:
    major, minor, patch = (int(x) for x in version.split(".")[:3])
    return f"{major}.{minor}.{patch + by}"


def wheel(tmp: Path, version: str, broken: bool = False) -> Path:
    """A wheel of this tree at `version`; a broken one fails as its worker starts."""
    src = tmp / f"src-{version}"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for top in PRODUCT:
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    text = (src / "pyproject.toml").read_text()
    (src / "pyproject.toml").write_text(text.replace(f'version = "{orbiter_version()}"', f'version = "{version}"', 1))
    if broken:
        main = src / "worker" / "main.py"
        main.write_text('raise RuntimeError("a broken orbiter build, for the rollback test")\n' + main.read_text())
    out = tmp / f"built-{version}"
    subprocess.run([str(Path(sys.executable).parent / "pip"), "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
                   check=True, capture_output=True, timeout=600)
    return next(out.glob(f"orbiter-{version}-*.whl"))


async def test_self_update_moves_to_a_newer_wheel_and_rolls_back_a_broken_one(repo: GitRepo, local_provider,
                                                                             tmp_path):
    old = orbiter_version()
    good, bad = bumped(old, 1), bumped(old, 2)
    good_wheel, bad_wheel = wheel(tmp_path, good), wheel(tmp_path, bad, broken=True)
    index = tmp_path / "index"
    index.mkdir()
    server = TemporalServer(tmp_path / "temporal.db", tmp_path / "server.log")
    server.start()
    env = {**os.environ, "TEMPORAL_ADDRESS": server.address, "ORBITER_PACKAGE_INDEX": str(index),
           "ORBITER_SELF_UPDATE_CHECK": "2s", "ORBITER_SELF_UPDATE_BOUND": "90s", "ORBITER_WORKER_DRAIN": "60"}
    log = (tmp_path / "supervisor.log").open("wb")
    supervisor = subprocess.Popen([orbiter_bin(), "worker", "--self-update"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    orb = "su" + uuid.uuid4().hex[:6]
    client = await connect(server.address)
    wid = None
    with e2e_machines(SUBNET) as machines:
        try:
            text = desired(orb, 1, subnet=SUBNET).replace("  providers:\n", POLICY + "  providers:\n", 1)
            c1 = repo.push({"desired.yml": text}, "one member; orbiter may update itself")
            wid = await takeoff(client, RepoRef(url=repo.url))
            await wait_cluster(repo, c1)
            cluster = client.get_workflow_handle(f"cluster/{orb}/meta")
            run = (await cluster.describe()).run_id
            before = await serving_workers(client)
            assert before and all(w.startswith(f"orbiter {old} ") for w in before), before
            old_pids = [int(w.rsplit(" ", 1)[1]) for w in before]

            # The next patch appears: installed, started, polling; then the old worker drains and stops.
            shutil.copy2(good_wheel, index)
            gitops = client.get_workflow_handle(wid)

            async def update_line(prefix: str):
                status = await gitops.query(GitOpsWorkflow.status)
                return status.orbiter and status.orbiter.update and status.orbiter.update.startswith(prefix) and status

            status = await wait_for(lambda: update_line(f"orbiter {old} -> {good}:"), timeout=300, interval=1,
                                    what=f"the move to {good}")
            assert all(not _alive(pid) for pid in old_pids), (old_pids, status.orbiter)
            now = await serving_workers(client)
            assert any(w.startswith(f"orbiter {good} ") for w in now), now

            # The cluster's workflow kept its run; the next commit is applied by the new worker, each step once.
            c2 = repo.push({"desired.yml": text.replace("nodes: 1}", "nodes: 2}")}, "two members")
            await poke(client, wid)
            ready = await wait_cluster(repo, c2)
            assert (await cluster.describe()).run_id == run
            record = next(r for r in ready.history if r.commit == c2)
            assert record.steps and len(record.steps) == len(set(record.steps)), record.steps
            events = [e async for e in cluster.fetch_history_events()]
            assert not [e for e in events if e.HasField("workflow_task_failed_event_attributes")]
            last = [e.activity_task_started_event_attributes.identity for e in events
                    if e.HasField("activity_task_started_event_attributes")][-1]
            assert last.startswith(f"orbiter {good} "), last

            # A broken newer version: its worker never polls; rolled back, recorded, reported.
            shutil.copy2(bad_wheel, index)
            status = await wait_for(lambda: update_line(f"orbiter {bad} rolled back to {good}:"), timeout=300,
                                    interval=1, what=f"the rollback of {bad}")
            assert "exited with status" in status.orbiter.update, status.orbiter.update
            failed = json.loads((state_dir() / "self-update" / "failed.json").read_text())
            assert list(failed) == [bad]
            assert any(w.startswith(f"orbiter {good} ") for w in await serving_workers(client))
            assert current(repo).clusters["meta"].phase == "Ready"
        finally:
            if wid is not None:
                await stop_orb(client, orb, wid, machines)
            os.killpg(supervisor.pid, signal.SIGTERM)
            try:
                supervisor.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(supervisor.pid, signal.SIGKILL)
                supervisor.wait()
            log.close()
            server.stop()
            shutil.rmtree(state_dir() / "self-update", ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
