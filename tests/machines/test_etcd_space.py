"""A full etcd database on real machines: a cluster with a small quota (`flags.quotaBackendBytes`)
is written until etcd raises NOSPACE and refuses writes; orbiter sees the alarm while the cluster
rests, compacts, defragments member by member and disarms it: writes work again and the database
shrank. current.yml shows each member's database size, in-use size and alarms."""

import json
import uuid

import pytest

from orbiter.models.refs import RepoRef

from ..conftest import GitRepo
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, stop_orb, wait_cluster
from ..support.flows import gitops_id, takeoff, wait_for
from ..support.net import subnet

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(97)
QUOTA = 4 * 1024 * 1024
VALUE = "x" * (100 * 1024)  # one argument of etcdctl: below the 128 KiB a single argument may have


def db_sizes(etcdctl: Etcdctl) -> list[int]:
    return [e["Status"]["dbSize"] for e in json.loads(etcdctl("endpoint", "status", "-w", "json"))]


async def test_nospace_is_cleared_and_writes_work_again(client, worker, repo: GitRepo, local_provider, tmp_path):
    orb = "sp" + uuid.uuid4().hex[:6]
    with e2e_machines(SUBNET) as machines:
        try:
            first = repo.push({"desired.yml": desired(orb, 3, f"      flags: {{quotaBackendBytes: {QUOTA}}}\n",
                                                      subnet=SUBNET, drift="3s")}, "a small quota")
            await takeoff(client, RepoRef(url=repo.url))
            status = await wait_cluster(repo, first)
            assert all(n.db_size and n.db_size_in_use for n in status.nodes) and not any(n.alarms for n in status.nodes)
            etcdctl = Etcdctl(repo, "meta", tmp_path)

            written = 0
            while True:  # the same key again and again: its history fills the database
                out = etcdctl("put", "/big", f"{written}-{VALUE}", check=False)
                if "database space exceeded" in out or "database space exceeded" in etcdctl.last_error:
                    break
                written += 1
                assert written < 400, "no NOSPACE alarm"
            full = max(db_sizes(etcdctl))
            alarms = etcdctl("alarm", "list")
            assert "NOSPACE" in alarms, alarms

            cleared = await wait_for(lambda: (s := current(repo).clusters["meta"]) and "clear space" in s.done
                                     and s.phase == "Ready" and not any(n.alarms for n in s.nodes) and s,
                                     timeout=300, interval=1, what="NOSPACE cleared")
            print(f"{written} writes of 100 KiB filled a {QUOTA} byte quota; db {full} bytes at NOSPACE,"
                  f" {max(db_sizes(etcdctl))} after; plan {cleared.plan}")
            assert etcdctl("alarm", "list").strip() == ""
            etcdctl("put", "/after", "works")
            assert etcdctl("get", "/after", "--print-value-only").strip() == "works"
            assert etcdctl("get", "/big", "--print-value-only").startswith(f"{written - 1}-")
            assert max(db_sizes(etcdctl)) < full
        finally:
            await stop_orb(client, orb, gitops_id(repo), machines)
