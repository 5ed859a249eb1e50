"""Change control on a real etcd cluster: approvals tied to a plan, a revert as rollback, history,
notifications of every transition, a rejected plan, and a maintenance window opening a minute
ahead on the real server."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from orbiter.models.notify import sign
from orbiter.models.providers import machine_name
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import merge_sealed, seal

from ..conftest import MASTER_KEY, GitRepo, git
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, poke, stop_orb, wait_cluster
from ..support.flows import takeoff, wait_for
from ..support.net import subnet
from ..support.sink import http_sink
from ..workflows.test_cli import ainvoke
from ..workflows.test_replay import RECORD
from ..workflows.test_replay import _save as save_history
from .test_etcd_e2e import drift_is_put_back

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(92)
KEY = b"notification signing key"
CONTROL = """\
  approval: {{for: [scaleDown, destroy]}}
  notify:
    - {{kind: webhook, urlSecret: hook_url}}
"""


def orb_yaml(orb: str, nodes: int, extra: str = "", drift: str = "5s") -> str:
    """The e2e etcd orb with change control at the orb level (every cluster's default)."""
    text = desired(orb, nodes, extra=extra, subnet=SUBNET, drift=drift)
    return text.replace("  providers:\n", CONTROL.format() + "  providers:\n", 1)


def secrets(sink_url: str) -> str:
    values = {"hook_url": f"{sink_url}/hook".encode(), "hook_url_key": KEY}
    return merge_sealed(MASTER_KEY, None, {k: seal(MASTER_KEY, k, v) for k, v in values.items()})


async def wait_phase(repo: GitRepo, commit: str, phase: str, timeout: float = 300):
    return await wait_for(lambda: (c := current(repo).clusters.get("meta")) and c.desired_commit == commit
                          and c.phase == phase and c, timeout=timeout, interval=0.5, what=f"{phase} at {commit[:8]}")


def members(etcdctl: Etcdctl) -> list[str]:
    return sorted(m["name"] for m in json.loads(etcdctl("member", "list", "-w", "json"))["members"])


async def test_approvals_revert_history_notifications_and_a_window(client, worker, repo: GitRepo, local_provider,
                                                                   tmp_path):
    orb = "cc" + uuid.uuid4().hex[:6]
    names = [machine_name(orb, "meta", "etcd", i) for i in range(3)]
    with e2e_machines(SUBNET) as machines, http_sink() as sink:
        wid = None
        try:
            c1 = repo.push({"desired.yml": orb_yaml(orb, 2), "secrets.yml": secrets(sink.url)}, "two members")
            wid = await takeoff(client, RepoRef(url=repo.url))
            ready = await wait_cluster(repo, c1)
            await drift_is_put_back(repo, ready.nodes[0])  # told as a Drift notification
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            etcdctl("put", "/kept", "yes")

            # A scale-up asks for nothing: it is not in approval.for.
            c2 = repo.push({"desired.yml": orb_yaml(orb, 3)}, "three members")
            await poke(client, wid)
            await wait_cluster(repo, c2)

            # Rollback is a revert: back to two members, which is a scale-down and waits for approval
            # with nothing changed on the machines.
            git(repo.clone, "pull", "-q", "--rebase", "origin", "main")
            git(repo.clone, "revert", "--no-edit", c2)
            git(repo.clone, "push", "-q", "origin", "main")
            c3 = git(repo.clone, "rev-parse", "HEAD")
            await poke(client, wid)
            waiting = await wait_phase(repo, c3, "AwaitingApproval")
            victim = waiting.approval.needs[0].removeprefix("remove member ").removesuffix(" (scaleDown)")
            assert waiting.approval.needs == [f"remove member {victim} (scaleDown)"] and victim in names
            assert f"remove member {victim}" in waiting.approval.steps
            assert members(etcdctl) == sorted(names)
            assert {m["id"] for m in machines.list_status() if m["state"] == "running"} >= set(names)
            shown = await ainvoke("status", "meta", "--repo", repo.url)
            assert f"approve: orbiter approve meta --plan {waiting.approval.plan}" in shown.stdout

            wrong = await ainvoke("approve", f"{orb}/meta", "--plan", "0123456789ab")
            assert wrong.exit_code == 1
            expected = f"plan 0123456789ab is not the plan awaiting approval: that is {waiting.approval.plan}"
            assert expected in wrong.stderr
            assert len(wrong.stderr.strip().splitlines()) == 1

            # A newer commit voids the pending approval: its plan has another hash.
            c4 = repo.push({"desired.yml": orb_yaml(orb, 2, drift="6s")}, "revert, and another drift interval")
            await poke(client, wid)
            again = await wait_phase(repo, c4, "AwaitingApproval")
            assert again.approval.plan != waiting.approval.plan
            stale = await ainvoke("approve", f"{orb}/meta", "--plan", waiting.approval.plan)
            assert stale.exit_code == 1 and "is not the plan awaiting approval" in stale.stderr
            approved = await ainvoke("approve", f"{orb}/meta", "--plan", again.approval.plan, "--by", "alice")
            assert approved.exit_code == 0, approved.output
            done = await wait_cluster(repo, c4)
            assert (done.approval.state, done.approval.by) == ("approved", "alice")
            assert len(done.nodes) == 2 and members(etcdctl) == sorted(set(names) - {victim})
            assert victim not in {m["id"] for m in machines.list_status()}
            assert etcdctl("get", "/kept", "--print-value-only").strip() == "yes"

            # History: newest first, each with its steps, approver and result, read from git.
            shown = await ainvoke("history", "meta", "--repo", repo.url, "-o", "json")
            assert shown.exit_code == 0, shown.output
            history = [(r["commit"], r["result"], r["approvedBy"]) for r in json.loads(shown.stdout)]
            assert history[:4] == [(c4, "Ready", "alice"), (c3, "Superseded", None), (c2, "Ready", None),
                                   (c1, "Ready", None)], history
            newest = json.loads(shown.stdout)[0]
            assert f"remove member {victim}" in newest["steps"] and newest["subject"].startswith("revert")

            # A rejected plan leaves the cluster at its last applied commit, machines and data intact.
            c5 = repo.push({"desired.yml": orb_yaml(orb, 2, extra="      destroyed: true\n", drift="6s")}, "destroy")
            await poke(client, wid)
            asked = await wait_phase(repo, c5, "AwaitingApproval")
            assert asked.approval.needs == ["destroy (destroy)"]
            rejected = await ainvoke("reject", f"{orb}/meta", "--plan", asked.approval.plan, "--by", "bob")
            assert rejected.exit_code == 0, rejected.output
            kept = await wait_phase(repo, c5, "Ready")
            assert kept.commit == c4 and (kept.approval.state, kept.approval.by) == ("rejected", "bob")
            assert etcdctl("get", "/kept", "--print-value-only").strip() == "yes"
            settled = await ainvoke("poke", "--wait", "--repo", repo.url, "--timeout", "120")
            assert settled.exit_code == 1  # settled, but the commit is not applied

            # A maintenance window opening a minute ahead: the roll waits, then runs inside it.
            opens = (datetime.now(UTC) + timedelta(seconds=90)).replace(second=0, microsecond=0)
            window = (f"      maintenance: {{windows: [{{start: \"{opens:%H:%M}\", duration: 30m}}]}}\n"
                      "      flags: {heartbeatInterval: 150, electionTimeout: 1500}\n")
            c6 = repo.push({"desired.yml": orb_yaml(orb, 2, extra=window, drift="6s")}, "faster heartbeat")
            await poke(client, wid)
            held = await wait_phase(repo, c6, "AwaitingWindow")
            assert held.step.startswith("Waiting for maintenance window (opens ") and not any(
                s.startswith("roll") for s in held.done)
            rolled = await wait_cluster(repo, c6, timeout=300)
            assert datetime.now(UTC) >= opens
            assert [s for s in rolled.done if s.startswith("roll")] == [f"roll {n.machine}" for n in rolled.nodes]

            # Destroy, approved.
            c7 = repo.push({"desired.yml": orb_yaml(orb, 2, extra="      destroyed: true\n", drift="6s")}, "destroy")
            await poke(client, wid)
            last = await wait_phase(repo, c7, "AwaitingApproval")
            assert (await ainvoke("approve", f"{orb}/meta", "--plan", last.approval.plan)).exit_code == 0
            await wait_cluster(repo, c7, phase="Destroyed")
            assert not machines.list_status()
            await asyncio.sleep(2)  # deliveries still under way
            if RECORD:  # approvals, a rejection, a window and notifications for the determinism guard
                await save_history(client, "cluster_change_control", f"cluster/{orb}/meta", "ClusterWorkflow")
        finally:
            if wid is not None:
                await stop_orb(client, orb, wid, machines)

    # Every transition was told once, signed, in order.
    delivered = sink.delivered()
    ids = [r.headers["X-Orbiter-Delivery"] for r in delivered]
    assert len(ids) == len(set(ids)), "no event delivered twice"
    for r in delivered:
        assert r.headers["X-Orbiter-Signature"] == sign(KEY, r.headers["X-Orbiter-Timestamp"], r.body)
    events = [(r.json["event"], r.json["commit"]) for r in delivered]
    for wanted in [("Ready", c1), ("Ready", c2), ("AwaitingApproval", c3), ("AwaitingApproval", c4), ("Ready", c4),
                   ("AwaitingApproval", c5), ("Rejected", c5), ("Ready", c6), ("Destroyed", c7)]:
        assert events.count(wanted) == 1, (wanted, events)
    drift = [r.json for r in delivered if r.json["event"] == "Drift"]
    assert drift and "etcd.service" in drift[0]["message"] and drift[0]["commit"] == c1
    ready = next(r.json for r in delivered if (r.json["event"], r.json["commit"]) == ("Ready", c4))
    assert f"remove member {victim}" in ready["message"] and "revert" in ready["message"]
