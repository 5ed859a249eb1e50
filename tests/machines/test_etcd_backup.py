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
from orbiter.cli.app import app
from orbiter.models.backups import BackupInfo, DirBackupStore
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo
from ..machines.test_etcd_e2e import plan_of
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, poke, wait_cluster
from ..support.flows import takeoff, wait_for
from ..support.net import subnet

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

        gone = repo.push({"desired.yml": orb_desired(orb, store_dir, FLAGS + "      destroyed: true\n")}, "destroy")
        await poke(client, wid)
        await wait_cluster(repo, gone, phase="Destroyed")
        await client.get_workflow_handle(wid).terminate()
        await client.get_workflow_handle(f"cluster/{orb}/meta").terminate()
