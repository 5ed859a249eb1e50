"""Issue 13 on real etcd 3.4.23 on real machines: backups (taken by `orbiter backup` and before a
roll, sealed in the store, listed, pruned to `keep`) and restore (keys written before the backup
come back, keys written after it are gone, every member agrees)."""

import asyncio
import hashlib
import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbiter.activities import backups
from orbiter.activities.kinds.etcd.restore import LOG
from orbiter.activities.ssh import connect
from orbiter.cli.app import app
from orbiter.models.backups import BackupInfo, DirBackupStore
from orbiter.models.machines import Machine
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret

from ..conftest import MASTER_KEY, GitRepo
from ..machines.test_etcd_e2e import plan_of
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, poke, stop_orb, wait_cluster, wait_step
from ..support.flows import gitops_id, takeoff, wait_for, worker_processes
from ..support.net import subnet
from ..workflows.test_replay import RECORD
from ..workflows.test_replay import _save as save_history

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(96)
FLAGS = "      flags: {heartbeatInterval: 150, electionTimeout: 1500}\n"


def orb_desired(orb: str, store: Path, extra: str = "") -> str:
    text = desired(orb, 3, "      backup: {keep: 2}\n" + extra, subnet=SUBNET)
    return text.replace("  clusters:\n", f"  backupStore: {{kind: dir, path: {store}}}\n  clusters:\n")


async def cli(*args: str, code: int = 0) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout if code == 0 else result.output


async def listed(cluster: str) -> list[BackupInfo]:
    return [BackupInfo.model_validate(b) for b in json.loads(await cli("backups", cluster, "-o", "json"))]


def restore_log(repo: GitRepo, node) -> list[str]:
    """The restores a member's machine went through (one line per data directory swapped in)."""
    key = read_secret(MASTER_KEY, repo.remote_file("secrets.yml"), "lab_maintenancekey").decode()
    machine = Machine(id=node.machine, provider="lab", pool="etcd", ip=node.ip, key_secret="lab_maintenancekey",
                      host_key=node.host_key)
    with connect(machine, key) as session:
        return session.run(f"cat {LOG} 2>/dev/null").stdout.splitlines()


async def test_backups_and_restore(client, worker, repo: GitRepo, local_provider, tmp_path):
    orb = "b" + uuid.uuid4().hex[:6]
    store_dir = tmp_path / "store"
    cluster = f"{orb}/meta"
    with e2e_machines(SUBNET):
        first = repo.push({"desired.yml": orb_desired(orb, store_dir)}, "three members with backups")
        wid = await takeoff(client, RepoRef(url=repo.url))
        await wait_cluster(repo, first)
        etcdctl = Etcdctl(repo, "meta", tmp_path)
        etcdctl("put", "/before/a", "A")

        # `orbiter backup` takes one now and prints its id; `orbiter backups` lists it.
        taken = (await cli("backup", cluster)).strip()
        [info] = await listed(cluster)
        assert info.id == taken and info.cluster == "meta" and info.reason.startswith("orbiter backup")
        assert info.revision > 1 and info.size > 0 and info.member is not None
        # Sealed in the store: the snapshot's bytes are not readable there, and open to its sha256.
        store = backups.open_store(DirBackupStore(kind="dir", path=str(store_dir)), orb, "meta")
        sealed = store.read_all(taken + backups.SNAPSHOT)
        plain = b"".join(backups.opened(store, info))
        assert b"/before/a" in plain and b"/before/a" not in sealed
        assert hashlib.sha256(plain).hexdigest() == info.sha256 and len(plain) == info.size

        # A roll is preceded by a backup, in the plan and in the run.
        planned = await plan_of(repo, orb_desired(orb, store_dir, FLAGS))
        rolls = [i for i, s in enumerate(planned) if s.startswith("roll ")]
        assert rolls and planned[rolls[0] - 1] == "backup", planned
        rolled = repo.push({"desired.yml": orb_desired(orb, store_dir, FLAGS)}, "slower heartbeat")
        await poke(client, wid)
        status = await wait_cluster(repo, rolled)
        assert status.done == planned
        newest, older = await listed(cluster)
        assert older.id == taken and newest.reason == f"before {planned[rolls[0]]}"
        assert status.backup is not None and status.backup.id == newest.id  # current.yml shows the latest

        # keep: 2 prunes the oldest.
        third = (await cli("backup", cluster)).strip()
        assert [b.id for b in await listed(cluster)] == [third, newest.id]
        assert not (store_dir / orb / "meta" / (taken + backups.SNAPSHOT)).exists()

        await wait_for(lambda: (current(repo).clusters["meta"].backup or info).id == third, what="latest backup")
        shown = json.loads(await cli("status", "meta", "--repo", repo.url, "-o", "json"))
        assert shown["clusters"][0]["backup"]["id"] == third
        text = await cli("status", "meta", "--repo", repo.url)
        assert f"latest backup {third}" in text and "database" in text and "first certificate to expire" in text

        # Restore: keys written before the backup are back, keys written after it are gone, and
        # every member agrees.
        etcdctl("put", "/after/b", "B")
        assert "not a backup of cluster meta" in await cli("restore", cluster, "--from", "other-20260101T000000Z-1",
                                                           code=1)
        assert "no backup meta-20260101T000000Z-9" in await cli("restore", cluster, "--from",
                                                               "meta-20260101T000000Z-9", code=1)
        await cli("pause", cluster)
        assert "paused" in await cli("restore", cluster, "--from", third, code=1)
        await cli("resume", cluster)
        said = await cli("restore", cluster, "--from", third)
        assert f"from {third}" in said
        assert etcdctl("get", "/before/a", "--print-value-only").strip() == "A"
        assert etcdctl("get", "/after/b", "--print-value-only").strip() == ""
        hashes = {h["HashKV"]["hash"] for h in json.loads(etcdctl("endpoint", "hashkv", "-w", "json"))}
        assert len(hashes) == 1, hashes
        assert all(h["health"] for h in json.loads(etcdctl("endpoint", "health", "-w", "json")))
        etcdctl("put", "/after/c", "C")  # writes work again
        status = await wait_for(lambda: (s := current(repo).clusters["meta"]).restore and s.restore.ended and s,
                                what="the restore in current.yml")
        assert status.restore.id == third and status.phase == "Ready"
        logs = [restore_log(repo, n) for n in status.nodes]
        assert all(len(lines) == 1 for lines in logs), logs  # each member restored exactly once

        gone = repo.push({"desired.yml": orb_desired(orb, store_dir, FLAGS + "      destroyed: true\n")}, "destroy")
        await poke(client, wid)
        await wait_cluster(repo, gone, phase="Destroyed")
        if RECORD:  # the backup, action and restore paths for the determinism guard (tests/workflows/test_replay.py)
            await save_history(client, "cluster_etcd_backup_restore", f"cluster/{orb}/meta", "ClusterWorkflow")
        await client.get_workflow_handle(wid).terminate()
        await client.get_workflow_handle(f"cluster/{orb}/meta").terminate()


async def test_a_worker_killed_mid_restore_finishes_it_without_restoring_twice(client, temporal_server, repo: GitRepo,
                                                                              local_provider, tmp_path):
    orb = "k" + uuid.uuid4().hex[:6]
    store_dir = tmp_path / "store"
    cluster = f"{orb}/meta"
    with e2e_machines(SUBNET) as machines, worker_processes(tmp_path, temporal_server.address) as start_worker:
        try:
            worker = start_worker()
            first = repo.push({"desired.yml": orb_desired(orb, store_dir)}, "three members with backups")
            await takeoff(client, RepoRef(url=repo.url))
            status = await wait_cluster(repo, first)
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            etcdctl("put", "/before/a", "A")
            taken = (await cli("backup", cluster)).strip()
            etcdctl("put", "/after/b", "B")

            restoring = asyncio.create_task(cli("restore", cluster, "--from", taken))
            await wait_step(repo, "restore ")
            await wait_for(lambda: any(restore_log(repo, n) for n in status.nodes), timeout=60, interval=0.05,
                           what="a member restored")
            worker.kill()
            at_kill = [len(restore_log(repo, n)) for n in status.nodes]
            start_worker()
            said = await asyncio.wait_for(restoring, timeout=600)
            print(f"killed with {sum(at_kill)} of 3 members restored; {said.strip()}")
            assert f"from {taken}" in said
            assert etcdctl("get", "/before/a", "--print-value-only").strip() == "A"
            assert etcdctl("get", "/after/b", "--print-value-only").strip() == ""
            hashes = {h["HashKV"]["hash"] for h in json.loads(etcdctl("endpoint", "hashkv", "-w", "json"))}
            assert len(hashes) == 1, hashes
            logs = [restore_log(repo, n) for n in status.nodes]
            assert all(len(lines) == 1 for lines in logs), logs
        finally:
            await stop_orb(client, orb, gitops_id(repo), machines)
