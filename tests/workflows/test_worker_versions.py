"""Which orbiter serves an orb: workers carry orbiter's version and a build id in their Temporal
identity, `orbiter status` lists the ones polling the task queue, and a worker refuses to start
beside workers of another minor version (the documented rule for mixed versions)."""

import asyncio
import contextlib
import json
import re
import uuid

import pytest
from temporalio import activity
from temporalio.worker import Worker

from orbiter.worker.identity import MixedVersions, build_id, identity, orbiter_version, refuse_mixed_minor

from ..conftest import GitRepo
from ..support.flows import desired, takeoff, wait_for
from .test_cli import ainvoke

pytestmark = pytest.mark.slow


@activity.defn(name="never_called")
async def _never_called() -> None:
    raise AssertionError("no task is ever sent to this queue")


async def test_status_shows_the_versions_polling_the_task_queue(client, worker, repo: GitRepo):
    from orbiter.models.refs import RepoRef

    orb = "wv" + uuid.uuid4().hex[:6]
    repo.push({"desired.yml": desired(orb)}, "an orb")
    wid = await takeoff(client, RepoRef(url=repo.url))
    try:
        await _shows_this_worker(repo)
    finally:  # the session's server serves other modules: no second cluster "meta" is left there
        for done in (wid, f"cluster/{orb}/meta"):
            with contextlib.suppress(Exception):
                await client.get_workflow_handle(done).terminate("test over")


async def _shows_this_worker(repo: GitRepo) -> None:
    mine = identity()
    assert mine.startswith(f"orbiter {orbiter_version()} (build {build_id()}) on ")
    assert build_id().startswith(orbiter_version() + "+") and len(build_id()) > len(orbiter_version()) + 8

    async def shown():
        result = await ainvoke("status", "--repo", repo.url, "-o", "json")
        return result.exit_code == 0 and mine in (json.loads(result.stdout)["orbiter"] or {}).get("workers", [])

    await wait_for(shown, timeout=60, what="this worker in status")
    table = await ainvoke("status", "--repo", repo.url)
    served = " ".join(table.stdout.split()).split("served by: ", 1)[1]  # other workers may serve too
    assert re.search(re.escape(mine) + r"(?!\d)", served), table.stdout


async def test_a_worker_refuses_to_start_beside_another_minor_version(client):
    queue = "versions-" + uuid.uuid4().hex[:8]
    await refuse_mixed_minor(client, task_queue=queue)  # nobody polls: fine
    major, minor = orbiter_version().split(".")[:2]
    same = f"orbiter {major}.{minor}.99 (build {major}.{minor}.99+abc) on other pid 1"
    other = f"orbiter {major}.{int(minor) + 1}.0 (build {major}.{int(minor) + 1}.0+abc) on other pid 2"
    async with Worker(client, task_queue=queue, activities=[_never_called], identity=same):
        await wait_for(lambda: _polled(client, queue, same), timeout=30, what="the same-minor poller")
        await refuse_mixed_minor(client, task_queue=queue)  # a patch release beside it is fine
    async with Worker(client, task_queue=queue + "-b", activities=[_never_called], identity=other):
        await wait_for(lambda: _polled(client, queue + "-b", other), timeout=30, what="the other-minor poller")
        with pytest.raises(MixedVersions) as err:
            await refuse_mixed_minor(client, task_queue=queue + "-b")
    line = str(err.value)
    assert len(line.splitlines()) == 1 and other in line and "stop them" in line


async def _polled(client, queue: str, ident: str) -> bool:
    from orbiter.worker.identity import serving_workers

    await asyncio.sleep(0.2)
    return ident in await serving_workers(client, task_queue=queue)
