"""Kubernetes crash safety on real machines with the kubeadm stand-ins: the worker SIGKILLed during
a control-plane join and during a worker's drain, then a new worker started.

The worker runs as a subprocess (tests/flows.WorkerProcess) against the session's Temporal server,
as in tests/test_etcd_crash.py. The stand-ins hold the operation open at a known point (the hold
hook of a join, the stuck-pods hook of a drain; see tests/standins/payload/standin/), the
test waits until the machine reports it is there, and kills the worker. What the stand-ins
recorded is then asserted: one kubeadm init, every join that succeeded exactly once and none after
it, every node's kubeadm upgrade, and no node left cordoned (current.yml and the stand-in API).
"""

import contextlib
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.ssh import SshSession, connect
from orbiter.models.providers import default_secret_names
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret

from ..conftest import MASTER_KEY, GitRepo
from ..standins import api_state, read_invocations, set_stuck_pods
from ..support.etcd_flows import current, poke, wait_cluster
from ..support.flows import gitops_id, takeoff, wait_for, worker_processes
from ..support.net import host, subnet
from .test_kubernetes_e2e import PROVIDER, desired, k8s_machines, names_of, stop_orb

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(84)  # the kubernetes e2e tests use 10.81, the etcd ones 10.80
# An external load balancer in front of the control planes, played by the first control plane's
# address (the machine created first on a fresh provider gets the subnet's .2).
LB = host(SUBNET, 2)
HOLD = "/etc/standin/hold.json"  # the stand-in's hold hook (payload/standin/)
HOLDS = "/var/log/standin/holds.jsonl"
HOLD_SECONDS = 30


def maintenance_key(repo: GitRepo) -> str | None:
    """The machines' root key once the write-back committed it."""
    with contextlib.suppress(Exception):
        text = repo.remote_file("secrets.yml")
        return read_secret(MASTER_KEY, text, default_secret_names(PROVIDER)["maintenance"]).decode()
    return None


def ssh(machines: LocalMachines, mid: str, key: str) -> SshSession | None:
    """A session to a machine once it exists and answers."""
    machine = next((m for m in machines.list() if m.id == mid), None)
    if machine is None:
        return None
    with contextlib.suppress(Exception):
        return connect(machine, key)
    return None


@contextlib.contextmanager
def sessions() -> Iterator[list[SshSession]]:
    opened: list[SshSession] = []
    try:
        yield opened
    finally:
        for s in opened:
            with contextlib.suppress(Exception):
                s.close()


def all_invocations(machines: LocalMachines, key: str) -> dict[str, list[dict]]:
    out = {}
    for machine in machines.list():
        with connect(machine, key) as session:
            out[machine.id] = read_invocations(session)
    return out


def kubeadm(calls: list[dict], *verb: str) -> list[dict]:
    """Invocations of `kubeadm VERB...` (init without its phases)."""
    found = [c for c in calls if c["argv"][: 1 + len(verb)] == ["kubeadm", *verb]]
    return [c for c in found if "phase" not in c["argv"]] if verb == ("init",) else found


def kubectl(calls: list[dict], verb: str, node: str) -> list[dict]:
    """Invocations of `kubectl ... VERB NODE`."""
    found = []
    for c in calls:
        argv = c["argv"]
        if argv[:1] == ["kubectl"] and verb in argv and argv[argv.index(verb) + 1 :][:1] == [node]:
            found.append(c)
    return found


def join_events(state: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in state["events"]:
        if e["event"] == "join":
            out.setdefault(e["node"], []).append(e)
    return out


def assert_uncordoned(status, state: dict, names: list[str]) -> None:
    """No node cordoned, as current.yml reports it and as the stand-in API has it."""
    assert sorted(n.machine for n in status.nodes) == sorted(names)
    assert all(n.ready and n.cordoned is False for n in status.nodes), status.nodes
    assert sorted(state["nodes"]) == sorted(names)
    assert {n: bool(v.get("unschedulable")) for n, v in state["nodes"].items()} == dict.fromkeys(names, False)
    # The last cordon change each node saw was an uncordon.
    last: dict[str, str] = {}
    for e in state["events"]:
        if e["event"] in ("cordon", "uncordon"):
            last[e["node"]] = e["event"]
    assert set(last.values()) <= {"uncordon"}, last


# Where meta-cp-1's kubeadm join is when the worker dies, and what meta-cp-1 then runs: cut off
# before kubelet.conf (certificates, manifests, admin.conf and the API's node there) it is reset
# and joined again; cut off after it, the join is done and is never run again.
JOIN_CUTS = {
    "join-before-kubelet-conf": [("join", None), ("reset", 0), ("join", 0)],
    "join-after-kubelet-conf": [("join", None)],
}


@pytest.mark.parametrize("point", list(JOIN_CUTS))
async def test_sigkilled_worker_during_a_control_plane_join(
    client, temporal_server, repo: GitRepo, local_provider, tmp_path, point: str
):
    orb = "kj" + uuid.uuid4().hex[:6]
    cp0, cp1, cp2, app0, app1, app2 = names_of(orb)
    wid = None
    names = [app0, cp0, cp1, cp2]
    extra = f"      controlPlaneEndpoint: {{host: {LB}, port: 6443}}\n"
    with (
        k8s_machines(subnet=SUBNET) as machines,
        worker_processes(tmp_path, temporal_server.address) as start_worker,
        sessions() as opened,
    ):
        try:
            worker = start_worker()
            commit = repo.push(
                {"desired.yml": desired(orb, workers=1, cps=3, extra=extra, subnet=SUBNET)}, "three control planes"
            )
            wid = await takeoff(client, RepoRef(url=repo.url))

            # meta-cp-1's kubeadm join will stop at `point` until the hold ends.
            key = await wait_for(lambda: maintenance_key(repo), timeout=600, interval=1, what="the maintenance key")
            cp1_session = await wait_for(lambda: ssh(machines, cp1, key), timeout=600, interval=1,
                                 what="the second control plane")
            opened.append(cp1_session)
            cp1_session.upload(HOLD, json.dumps({point: HOLD_SECONDS}).encode())

            def held() -> bool:
                holds = cp1_session.run(f"cat {HOLDS} 2>/dev/null; true").stdout
                if point in holds:
                    return True
                joins = kubeadm(read_invocations(cp1_session), "join")
                assert not any("exit" in j for j in joins), f"{orb}-meta-cp-1 joined before its hold was set"
                return False

            await wait_for(held, timeout=900, interval=0.2, what="the second control plane's kubeadm join held")
            worker.kill()
            killed = time.monotonic()
            step = current(repo).clusters["meta"].step
            cp1_session.run(f"rm -f {HOLD}", check=True)
            start_worker()
            status = await wait_cluster(repo, commit, timeout=900)
            print(f"killed at {step!r}; Ready {time.monotonic() - killed:.0f}s later")

            calls = all_invocations(machines, key)
            with connect(next(m for m in machines.list() if m.id == cp0), key) as cp0_session:
                state = api_state(cp0_session)
            assert sorted(calls) == names
            [init] = kubeadm(calls[cp0], "init")
            assert init["exit"] == 0
            assert kubeadm(calls[cp0], "join") == []
            # The join cut off never reported back (its exit is not recorded): cut off half way,
            # the machine was reset before the one join that succeeded; done, it was not run again.
            cp1_steps = [
                (c["argv"][1], c.get("exit"))
                for c in calls[cp1]
                if c["argv"][:2] in (["kubeadm", "join"], ["kubeadm", "reset"])
            ]
            assert cp1_steps == JOIN_CUTS[point], cp1_steps
            for mid in (cp2, app0):
                assert [j.get("exit") for j in kubeadm(calls[mid], "join")] == [0], mid
                assert kubeadm(calls[mid], "reset") == [], mid
            # The stand-in API registered each node once, meta-cp-1 again only after a reset.
            assert {n: len(e) for n, e in join_events(state).items()} == {
                cp1: len([s for s in JOIN_CUTS[point] if s[0] == "join"]),
                cp2: 1,
                app0: 1,
            }
            if "etcdMembers" in state:  # one stacked etcd member per control plane, none left by the cut
                assert sorted(m["name"] for m in state["etcdMembers"]) == [f"{orb}-meta-cp-{i}" for i in range(3)]
            assert_uncordoned(status, state, names)
        finally:
            await stop_orb(client, orb, wid or gitops_id(repo), [m["id"] for m in machines.list_status()] + names)


async def test_sigkilled_worker_during_a_worker_drain(client, temporal_server, repo: GitRepo, local_provider, tmp_path):
    orb = "kd" + uuid.uuid4().hex[:6]
    cp0, cp1, cp2, app0, app1, app2 = names_of(orb)
    wid = None
    old, new = "1.30.6", "1.31.2"
    names = [app0, app1, cp0]
    # A short drain timeout: the drain activity has no heartbeat timeout, so the attempt the dead
    # worker held is only retried once its start-to-close timeout (drainTimeout + 120s) has passed.
    extra = "      upgrade: {maxUnavailable: 1, drainTimeout: 30s}\n"
    with (
        k8s_machines((old, new), subnet=SUBNET) as machines,
        worker_processes(tmp_path, temporal_server.address) as start_worker,
        sessions() as opened,
    ):
        try:
            worker = start_worker()
            first = repo.push({"desired.yml": desired(orb, workers=2, version=old, extra=extra, subnet=SUBNET)}, "1.30")
            wid = await takeoff(client, RepoRef(url=repo.url))
            await wait_cluster(repo, first, timeout=900)
            key = maintenance_key(repo)
            assert key
            cp0_session = ssh(machines, cp0, key)
            assert cp0_session is not None
            opened.append(cp0_session)

            # A pod whose disruption budget holds meta-app-0's drain open.
            set_stuck_pods(cp0_session, {app0: ["default/pinned-0"]})
            up = repo.push({"desired.yml": desired(orb, workers=2, version=new, extra=extra, subnet=SUBNET)}, "1.31")
            await poke(client, wid)

            def draining() -> bool:
                log = "/var/log/standin/invocations.jsonl"
                return bool(cp0_session.run(f'grep -F \'"drain", "{orb}-meta-app-0"\' {log}; true').stdout.strip())

            await wait_for(draining, timeout=900, interval=0.2, what="the first worker's drain")
            worker.kill()
            killed = time.monotonic()
            step = current(repo).clusters["meta"].step
            set_stuck_pods(cp0_session, {})
            start_worker()
            status = await wait_cluster(repo, up, timeout=900)
            print(f"killed at {step!r}; Ready at {new} {time.monotonic() - killed:.0f}s later")

            assert {n.version for n in status.nodes} == {f"v{new}"}
            calls = all_invocations(machines, key)
            state = api_state(cp0_session)
            assert sorted(calls) == names
            cp_calls = calls[cp0]
            [init] = kubeadm(cp_calls, "init")
            assert init["exit"] == 0 and kubeadm(cp_calls, "join") == []
            applies = kubeadm(cp_calls, "upgrade", "apply")
            assert [(c["version"], c["exit"]) for c in applies] == [(new, 0)]
            for mid in (app0, app1):
                assert [j.get("exit") for j in kubeadm(calls[mid], "join")] == [0], mid
                upgrades = kubeadm(calls[mid], "upgrade", "node")
                assert upgrades and all((c["version"], c.get("exit")) == (new, 0) for c in upgrades), (mid, upgrades)
            assert {n: len(e) for n, e in join_events(state).items()} == {app0: 1, app1: 1}

            # meta-app-0: the drain the dead worker left, drained again, then uncordoned.
            drains = kubectl(cp_calls, "drain", app0)
            assert len(drains) >= 2 and drains[-1].get("exit") == 0, drains
            uncordons = kubectl(cp_calls, "uncordon", app0)
            assert uncordons and uncordons[-1]["time"] > drains[-1]["time"] and uncordons[-1]["exit"] == 0
            assert state["kubernetesVersion"].lstrip("v") == new
            assert_uncordoned(status, state, names)
        finally:
            await stop_orb(client, orb, wid or gitops_id(repo), [m["id"] for m in machines.list_status()] + names)
