"""The README's day one and day two (examples/dayone, examples/daytwo) applied through GitOps.

examples/dayone/desired.yml is pushed to a real git repository with the bootstrap key added the way
a user adds it (`orbiter secret add prodstatic_bootstrapkey`), orbiter takes off and brings the
cluster up; then examples/daytwo/desired.yml is pushed over it as the next commit, and orbiter scales
the control plane from 1 to 3 behind the VIP, upgrades v1.31.1 -> v1.31.2 and removes the worker
group `extra`.

The examples are used as they ship. Their static provider `prodstatic` lists machines first..fifth
at 10.61.0.2..6 and the VIP 10.61.0.100: local systemd-nspawn machines on a bridge 10.61.0.0/24 play
those servers (created in one call on a fresh provider, so they get exactly those addresses; asserted),
trusting only a bootstrap key for root, as servers a user started themselves would. The only edits to
each example (checked by `_only_allowed_edits`) are what this host needs:
  - metadata.name: unique per run (workflow ids contain it);
  - spec.pollInterval: shorter (the test also pokes after each push);
  - clusters.prod.packages.repository: this host has no internet, so the apt repository served on the
    bridge (AptRepo: the kubeadm/kubelet/kubectl stand-ins at 1.31.1-1.1 and 1.31.2-1.1, and
    containerd, keepalived and curl from the host's apt) instead of pkgs.k8s.io.
Two things make the nspawn machines look like real servers (not desired.yml edits): the provider's own
apt line is removed from them, so packages come only through packages.repository; and since this
host's kernel has br_netfilter built in without module support (no /proc/modules, no /lib/modules),
each gets kmod and a modules.builtin naming br_netfilter and overlay, as a Debian kernel ships it, so
`modprobe br_netfilter` succeeds as on a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.ssh import AuthFailed, connect, generate_ed25519
from orbiter.models.current import ClusterStatus, OrbStatus
from orbiter.models.kinds.kubernetes import kubeadm_api
from orbiter.models.kinds.kubernetes.messages import kubeconfig_secret
from orbiter.models.machines import Machine
from orbiter.models.providers import default_secret_names
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret

from ..conftest import MASTER_KEY, GitRepo
from ..standins import read_invocations
from ..support.etcd_flows import poke
from ..support.flows import takeoff
from ..support.static_machines import prepare_server
from ..support.static_machines import static_servers as shared_static_servers
from ..workflows.test_cli import ainvoke
from .test_kubernetes_e2e import _readyz, _vip_holders

pytestmark = [pytest.mark.machines, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROVIDER = "prodstatic"  # the examples' static provider
CLUSTER = "prod"
SUBNET = "10.61.0.0/24"  # the examples' machine addresses
HOST_PROVIDER = "examples"  # the local provider whose machines play prodstatic's servers
IDS = ["first", "second", "third", "fourth", "fifth"]
IPS = {mid: f"10.61.0.{i}" for i, mid in enumerate(IDS, start=2)}
VIP = "10.61.0.100"
ENDPOINT = f"https://{VIP}:6443"
STANDINS = ["1.31.1-1.1", "1.31.2-1.1"]
POLL = "10s"
NAMES = default_secret_names(PROVIDER)
# --- the examples, with the edits this host needs ------------------------------------------------


def _allowed_edits(doc: dict, orb: str, repository: str) -> dict:
    out = copy.deepcopy(doc)
    out["metadata"]["name"] = orb
    out["spec"]["pollInterval"] = POLL
    out["spec"]["clusters"][CLUSTER].setdefault("packages", {})["repository"] = repository
    return out


def _only_allowed_edits(original: dict, edited: dict) -> None:
    """Everything but metadata.name, spec.pollInterval and clusters.prod.packages.repository is the example's."""
    a, b = copy.deepcopy(original), copy.deepcopy(edited)
    for d in (a, b):
        d["metadata"].pop("name")
        d["spec"].pop("pollInterval", None)
        d["spec"]["clusters"][CLUSTER].get("packages", {}).pop("repository", None)
        if d["spec"]["clusters"][CLUSTER].get("packages") == {}:
            del d["spec"]["clusters"][CLUSTER]["packages"]
    assert a == b


def example(day: str, orb: str, repository: str) -> str:
    original = yaml.safe_load((EXAMPLES / day / "desired.yml").read_text())
    edited = _allowed_edits(original, orb, repository)
    _only_allowed_edits(original, edited)
    pools = edited["spec"]["providers"][PROVIDER]["pools"]
    assert {m["id"]: m["ip"] for pool in pools.values() for m in pool} == IPS  # what the machines play
    assert edited["spec"]["clusters"][CLUSTER]["controlPlaneEndpoint"] == {"vip": VIP}
    return f"# examples/{day}/desired.yml; name, pollInterval and packages.repository set by the test\n" + (
        yaml.safe_dump(edited, sort_keys=False)
    )


# --- the servers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def static_servers(bootstrap_public: str) -> Iterator[tuple[dict[str, Machine], AptRepo]]:
    """Five machines at 10.61.0.2..6 trusting the bootstrap key, and the apt repo on their bridge.

    Every machine, the bridge and the repo's HTTP server are gone afterwards, also on failure.
    """
    with shared_static_servers(HOST_PROVIDER, SUBNET, IPS, bootstrap_public, STANDINS) as (created, apt):
        yield created, apt


# --- the flow ------------------------------------------------------------------------------------


def prod(repo: GitRepo) -> tuple[OrbStatus, ClusterStatus | None]:
    orb = OrbStatus.from_yaml(repo.remote_file("current.yml"))
    return orb, orb.clusters.get(CLUSTER)


async def wait_ready(repo: GitRepo, commit: str, timeout: float) -> ClusterStatus:
    """current.yml shows prod Ready at `commit`; fail at once on a rejected commit or Blocked."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        orb, last = prod(repo)
        if orb.rejected is not None and orb.rejected.commit == commit:
            raise AssertionError(f"commit rejected: {orb.rejected}")
        if last is not None and last.phase == "Ready" and last.commit == commit:
            return last
        if last is not None and last.phase == "Blocked" and last.desired_commit == commit:
            raise AssertionError(f"{CLUSTER} Blocked at step {last.step!r}: {last.error}")
        await asyncio.sleep(2)
    raise AssertionError(f"{CLUSTER} not Ready at {commit[:8]} within {timeout:.0f}s; last: {last}")


async def stop_orb(client, orb: str, gitops_id: str | None) -> None:
    ids = ([gitops_id] if gitops_id else []) + [f"cluster/{orb}/{CLUSTER}"]
    ids += [f"node/{orb}/{CLUSTER}/{m}" for m in IDS]
    for wid in ids:
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wid).terminate("test over")


def invocations(machines: dict[str, Machine], key: str,
                released: dict[str, str] | None = None) -> dict[str, list[dict]]:
    """The stand-ins' invocations on each machine; `released` machines (handed back to their
    bootstrap key) are opened with that key."""
    out = {}
    for mid, machine in machines.items():
        with connect(machine, (released or {}).get(mid, key)) as s:
            out[mid] = read_invocations(s)
    return out


def kubeadm(calls: list[dict], verb: str) -> list[dict]:
    """`kubeadm <verb>` invocations; `init` without its `init phase` subcommands."""
    found = [c for c in calls if c["argv"][:2] == ["kubeadm", verb]]
    return [c for c in found if "phase" not in c["argv"]] if verb == "init" else found


def kubectl(calls: dict[str, list[dict]], verb: str, node: str) -> list[tuple[str, dict]]:
    """(machine, call) of `kubectl --kubeconfig F <verb> ... <node>` on any machine, oldest first."""
    found = [
        (mid, c) for mid, cs in calls.items() for c in cs
        if c["argv"][:1] == ["kubectl"] and c["argv"][3:4] == [verb] and node in c["argv"][4:]
    ]
    return sorted(found, key=lambda mc: mc[1]["time"])


def join_doc(call: dict) -> dict:
    [doc] = yaml.safe_load_all(next(iter(call["configs"].values())))
    assert kubeadm_api.validate([doc], "v1beta4") == []
    return doc


async def test_readme_day_one_then_day_two(client, worker, repo: GitRepo, local_provider):
    orb = "orbitertmp-" + uuid.uuid4().hex[:6]
    wid = None
    bootstrap_private, bootstrap_public = generate_ed25519()
    with static_servers(bootstrap_public) as (machines, apt):
        try:
            with ThreadPoolExecutor(len(machines)) as ex:
                list(ex.map(lambda m: prepare_server(m, bootstrap_private), machines.values()))
            line = apt.source_line()
            assert line == "deb [trusted=yes] http://10.61.0.1:8079/ ./"

            # The user's first commit: day one and the bootstrap key, added with the CLI.
            added = await ainvoke("secret", "add", NAMES["bootstrap"], "--repo-dir", str(repo.clone),
                                  input=bootstrap_private)
            assert added.exit_code == 0, added.output
            assert NAMES["bootstrap"] == "prodstatic_bootstrapkey"
            secrets_yml = (repo.clone / "secrets.yml").read_text()
            day_one = repo.push({"desired.yml": example("dayone", orb, line), "secrets.yml": secrets_yml},
                                "day one")
            wid = await takeoff(client, RepoRef(url=repo.url))
            await poke(client, wid)
            status = await wait_ready(repo, day_one, timeout=900)

            # Day one: control plane first, workers fourth (group default) and fifth (group extra),
            # all Ready at v1.31.1, reached through the VIP.
            assert sorted((n.machine, n.role, n.pool, n.ip) for n in status.nodes) == [
                ("fifth", "worker", "extra", IPS["fifth"]),
                ("first", "control-plane", "controlplanes", IPS["first"]),
                ("fourth", "worker", "workers", IPS["fourth"]),
            ]
            assert all(n.ready and n.version == "v1.31.1" and n.cordoned is False for n in status.nodes), status
            assert status.endpoints == [ENDPOINT]
            secrets_text = repo.remote_file("secrets.yml") or ""
            kubeconfig = read_secret(MASTER_KEY, secrets_text, kubeconfig_secret(CLUSTER)).decode()
            assert f"server: {ENDPOINT}" in kubeconfig
            key = read_secret(MASTER_KEY, secrets_text, NAMES["maintenance"]).decode()
            day1_machines = {m: machines[m] for m in ("first", "fourth", "fifth")}
            calls = invocations(day1_machines, key)
            [init] = kubeadm(calls["first"], "init")
            assert init["exit"] == 0 and init["version"] == "1.31.1"
            docs = list(yaml.safe_load_all(next(iter(init["configs"].values()))))
            assert kubeadm_api.validate(docs, "v1beta4") == []
            cluster_doc = next(d for d in docs if d["kind"] == "ClusterConfiguration")
            assert cluster_doc["controlPlaneEndpoint"] == f"{VIP}:6443"
            for mid in ("fourth", "fifth"):
                [join] = kubeadm(calls[mid], "join")
                assert join["exit"] == 0 and "controlPlane" not in join_doc(join)
                assert join_doc(join)["discovery"]["bootstrapToken"]["apiServerEndpoint"] == f"{VIP}:6443"
            assert _vip_holders({"first": machines["first"]}, key, VIP) == ["first"]
            assert _readyz(VIP) == "ok"

            # The user's second commit: day two copied over day one.
            day_two = repo.push({"desired.yml": example("daytwo", orb, line)}, "day two")
            await poke(client, wid)
            status = await wait_ready(repo, day_two, timeout=1200)

            # Day two: three control planes and the one worker left, every node Ready at v1.31.2.
            assert sorted((n.machine, n.role, n.pool) for n in status.nodes) == [
                ("first", "control-plane", "controlplanes"),
                ("fourth", "worker", "workers"),
                ("second", "control-plane", "controlplanes"),
                ("third", "control-plane", "controlplanes"),
            ]
            assert all(n.ready and n.version == "v1.31.2" and n.cordoned is False for n in status.nodes), status
            assert status.endpoints == [ENDPOINT]
            assert "fifth" not in {n.machine for n in status.nodes}

            calls = invocations(machines, key, released={"fifth": bootstrap_private})
            # kubeadm init ran once in the cluster's life, on first.
            assert {mid: len(kubeadm(cs, "init")) for mid, cs in calls.items()} == {
                "first": 1, "second": 0, "third": 0, "fourth": 0, "fifth": 0
            }
            # The patch upgrade: `kubeadm upgrade apply` on first with the new kubeadm, `upgrade node`
            # on the worker that stays; the new control planes join at the new version.
            [apply] = [c for c in calls["first"] if c["argv"][:3] == ["kubeadm", "upgrade", "apply"]]
            assert (apply["argv"][3:], apply["version"], apply["exit"]) == (["v1.31.2", "-y"], "1.31.2", 0)
            upgraded = [c for c in calls["fourth"] if c["argv"][:3] == ["kubeadm", "upgrade", "node"]]
            assert [(c["version"], c["exit"]) for c in upgraded] == [("1.31.2", 0)]
            assert apply["time"] < upgraded[0]["time"]
            # second, then third, join as control planes, once each, one at a time: each with a
            # certificate key uploaded just for it.
            joins = {}
            for mid in ("second", "third"):
                [join] = kubeadm(calls[mid], "join")
                doc = join_doc(join)
                assert join["exit"] == 0 and join["version"] == "1.31.2"
                assert len(doc["controlPlane"]["certificateKey"]) == 64
                assert doc["discovery"]["bootstrapToken"]["apiServerEndpoint"] == f"{VIP}:6443"
                joins[mid] = join["time"]
            uploads = sorted(
                (c["time"] for cs in calls.values() for c in cs if c["argv"][:4] == ["kubeadm", "init", "phase",
                                                                                      "upload-certs"]),
            )
            assert len(uploads) == 2
            assert apply["time"] < uploads[0] < joins["second"] < uploads[1] < joins["third"]
            # The worker group `extra` is gone: fifth drained from a control plane, `kubeadm reset`
            # on it, its node deleted, in that order, once each.
            # (The upgrade, which comes before any scaling, drained and uncordoned fifth too: the
            # drain that removes it is the last one.)
            drained_on, drained = kubectl(calls, "drain", "fifth")[-1]
            [deleted] = [c for _, c in kubectl(calls, "delete", "fifth") if c["argv"][4:5] == ["node"]]
            [reset] = kubeadm(calls["fifth"], "reset")
            assert drained_on in ("first", "second", "third")
            assert reset["exit"] == 0 and drained["exit"] == 0 and deleted["exit"] == 0
            assert drained["time"] < reset["time"] < deleted["time"]
            assert not [c for _, c in kubectl(calls, "uncordon", "fifth") if c["time"] > drained["time"]]
            assert not [m for m, cs in calls.items() if m != "fifth" and kubeadm(cs, "reset")]
            # The API answers through the VIP, held by exactly one of the three control planes.
            cps = {m: machines[m] for m in ("first", "second", "third")}
            assert len(_vip_holders(cps, key, VIP)) == 1
            assert _readyz(VIP) == "ok"

            # Clean-up a user relies on, checked together so one run reports every miss.
            problems = []
            # fifth is released, not deleted (it is the user's server): kubelet stopped, orbiter's
            # Kubernetes files gone, the packages orbiter installed (and held) removed.
            with pytest.raises(AuthFailed):  # handed back as it came: orbiter's key no longer opens it
                connect(machines["fifth"], key)
            with connect(machines["fifth"], bootstrap_private) as s:
                assert s.run("systemctl is-active kubelet").stdout.strip() in ("inactive", "unknown")
                assert s.run("ls /etc/kubernetes 2>&1; true").stdout.strip().endswith("No such file or directory")
                left = s.run("dpkg-query -W -f='${Package} ${Status}\\n' kubeadm kubelet kubectl containerd"
                             " 2>/dev/null | grep ' installed$'; true").stdout.strip()
            if left:
                problems.append(f"packages left on the released fifth: {' | '.join(left.splitlines())}")
            # Every bootstrap token orbiter made (the init token and one per join) was deleted after use.
            tokens = [next(d for d in docs if d["kind"] == "InitConfiguration")["bootstrapTokens"][0]["token"]]
            tokens += [join_doc(j)["discovery"]["bootstrapToken"]["token"]
                       for m in ("fourth", "fifth", "second", "third") for j in kubeadm(calls[m], "join")]
            token_deletes = [
                (m, c["argv"][-1], c.get("exit")) for m, cs in calls.items() for c in cs
                if c["argv"][:3] == ["kubeadm", "token", "delete"]
            ]
            deleted_ids = {tid for _, tid, status in token_deletes if status == 0}
            undeleted = [t.split(".")[0] for t in tokens if t.split(".")[0] not in deleted_ids]
            if undeleted:
                problems.append(f"tokens never deleted: {undeleted}; deletes (machine, id, exit): {token_deletes}")
            assert not problems, "\n".join(problems)
        finally:
            await stop_orb(client, orb, wid)
