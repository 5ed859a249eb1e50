"""etcd's schedules on the time-skipping test server with a real cluster on real machines:
`backup.every` takes a backup each period while the cluster rests, and `keep` prunes them.

As in test_change_windows, the ClusterWorkflow runs alone, fed desired states the way the GitOps
workflow feeds it; time jumps only inside `env.sleep`, while the cluster waits on its timer.
"""

import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from orbiter.activities import backups
from orbiter.models.backups import DirBackupStore
from orbiter.models.ids import TASK_QUEUE
from orbiter.worker.codec import data_converter
from orbiter.worker.registry import activities, workflows

from ..conftest import MASTER_KEY, GitRepo
from ..support.etcd_flows import desired, e2e_machines
from ..support.flows import wait_for
from ..support.net import subnet
from .test_change_windows import Cluster, Reports

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(97)


async def test_backups_every_six_hours_keep_two(repo: GitRepo, local_provider, monkeypatch, tmp_path):
    monkeypatch.setattr(workflow, "upsert_search_attributes", lambda *args, **kwargs: None)
    binary = Path(sys.executable).parent / "temporal-test-server"
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(binary),
                                                       data_converter=data_converter(MASTER_KEY))
    orb = "sch" + uuid.uuid4().hex[:5]
    store = backups.open_store(DirBackupStore(kind="dir", path=str(tmp_path / "store")), orb, "meta")
    text = desired(orb, 3, "      backup: {every: 6h, keep: 2}\n", subnet=SUBNET).replace(
        "  clusters:\n", f"  backupStore: {{kind: dir, path: {tmp_path / 'store'}}}\n  clusters:\n")
    try:
        with e2e_machines(SUBNET) as machines, ThreadPoolExecutor(16) as pool:
            async with Worker(env.client, task_queue=TASK_QUEUE, workflows=[*workflows(), Reports],
                              activities=activities(env.client), activity_executor=pool):
                cluster = Cluster(env, repo, orb)
                c1 = await cluster.push(text, "three members, backups every 6h")
                await cluster.until("bootstrap", lambda s: s.phase == "Ready" and s.commit == c1)
                assert backups.listing(store) == []  # the first one is due a period after the cluster rests

                await env.sleep(timedelta(hours=5))
                assert backups.listing(store) == []  # not before its time
                taken = []
                for period in (1, 2, 3):
                    await env.sleep(timedelta(hours=1, minutes=1) if period == 1 else timedelta(hours=6, minutes=1))
                    listed = await wait_for(lambda n=period: len(backups.listing(store)) >= min(n, 2) and
                                            backups.listing(store)[0].id not in taken and backups.listing(store),
                                            timeout=120, what=f"backup {period}")
                    taken.append(listed[0].id)
                    assert listed[0].reason == "every 6h"
                assert [b.id for b in backups.listing(store)] == taken[:0:-1]  # the newest two
                status = await cluster.until("reported", lambda s: s.backup is not None and s.backup.id == taken[-1])
                assert status.phase == "Ready"

                c2 = await cluster.push(text + "      destroyed: true\n", "destroy")
                await cluster.until("destroyed", lambda s: s.phase == "Destroyed" and s.commit == c2)
                assert not machines.list_status()
                await cluster.handle.terminate("test over")
                await env.client.get_workflow_handle(cluster.reports).terminate("test over")
    finally:
        await env.shutdown()
