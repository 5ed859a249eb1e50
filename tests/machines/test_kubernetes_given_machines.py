"""A Kubernetes cluster on machines you give orbiter: real servers if named, else local stand-ins.

Real mode, when ORBITER_E2E_MACHINES is set (see README.md, "Tests"):
  ORBITER_E2E_MACHINES       comma-separated IPs: the first is the control plane, the rest workers (2 or more)
  ORBITER_E2E_BOOTSTRAP_KEY  a private key (no passphrase) that logs in to all of them
  ORBITER_E2E_USER           root (default) or a user with passwordless sudo
  ORBITER_E2E_VERSION        default v1.31.2
  ORBITER_E2E_VIP            optional: controlPlaneEndpoint {vip: ...} (keepalived on the control plane)
  ORBITER_E2E_REPOSITORY     optional apt line; default: orbiter's own (pkgs.k8s.io), packages.repository unset
Stand-in mode otherwise (what CI runs): three local systemd-nspawn machines on 10.85.0.0/24 play the
static servers, exactly as in test_examples_applied (tests/static_machines.py), with the kubeadm,
kubelet and kubectl stand-ins served at the version from an apt repository on their bridge.

The flow is the same in both modes and asserts only what holds for real Kubernetes too (no
stand-in invocation logs): a static provider lists the machines, the bootstrap key is added with
`orbiter secret add`; 1 control plane + all workers come up Ready at the version (current.yml and
`kubectl get nodes` on the control plane), the admin kubeconfig is a sealed secret naming the
endpoint; one worker is removed (drained, reset, released: its kubelet stopped, /etc/kubernetes
gone); `destroyed: true` resets every machine. Static machines are released, never deleted.

orbiter replaces the bootstrap key on each machine by its own maintenance key; at the end the test
puts the bootstrap key's authorized_keys lines back and removes orbiter's key ("hand back"). In real
mode a failing run still pushes `destroyed: true` and hands the machines back; it deletes nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shlex
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest
import yaml

from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.ssh import AuthFailed, connect, generate_ed25519
from orbiter.models.current import ClusterStatus, OrbStatus
from orbiter.models.kinds.kubernetes.messages import kubeconfig_secret
from orbiter.models.machines import Machine
from orbiter.models.providers import default_secret_names
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import parse_secrets_file, read_secret

from ..conftest import MASTER_KEY, GitRepo
from ..support.etcd_flows import poke
from ..support.flows import takeoff
from ..support.machines_fixture import _sweep
from ..support.net import host, subnet
from ..support.static_machines import prepare_server, static_servers
from ..workflows.test_cli import ainvoke

pytestmark = [pytest.mark.machines, pytest.mark.slow]

PROVIDER = "given"
CLUSTER = "e2e"
NAMES = default_secret_names(PROVIDER)
CP_POOL, WORKER_POOL = "controlplanes", "workers"
DEFAULT_VERSION = "v1.31.2"
POLL = "10s"
# Stand-in mode: the local provider whose machines play the static servers, on a subnet of its own.
STANDIN_HOST_PROVIDER = "given-hosts"
STANDIN_SUBNET = subnet(85)
STANDIN_IPS = {"cp": host(STANDIN_SUBNET, 2), "w1": host(STANDIN_SUBNET, 3), "w2": host(STANDIN_SUBNET, 4)}
# Upper bounds; real machines download packages and images.
UP_TIMEOUT, DOWN_TIMEOUT, DESTROY_TIMEOUT = 1800, 900, 900
ADMIN = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
# The kernel's hostname, /etc/hostname's first line and /etc/hosts' 127.0.1.1 line: one line each.
NAMES_NOW = (
    'hostname; echo "$(head -n1 /etc/hostname 2>/dev/null)";'
    " echo \"$(grep -m1 '^127\\.0\\.1\\.1[[:space:]]' /etc/hosts)\""
)
# The authorized_keys file of the login user (also behind sudo), as orbiter finds it.
AUTHORIZED = 'home=$(getent passwd "${SUDO_USER:-$(id -un)}" | cut -d: -f6); f="$home/.ssh/authorized_keys";'


@dataclass
class Target:
    """The machines the flow runs on: id -> IP, the first the control plane, the rest workers."""

    real: bool
    ips: dict[str, str]
    user: str
    bootstrap_private: str
    version: str
    vip: str | None = None
    repository: str | None = None
    host_keys: dict[str, str] = field(default_factory=dict)  # pinned by the pre-flight check

    @property
    def control_plane(self) -> str:
        return next(iter(self.ips))

    @property
    def workers(self) -> list[str]:
        return list(self.ips)[1:]

    @property
    def endpoint(self) -> str:
        return f"https://{self.vip or self.ips[self.control_plane]}:6443"

    def machine(self, mid: str) -> Machine:
        return Machine(id=mid, provider=PROVIDER,
                       pool=CP_POOL if mid == self.control_plane else WORKER_POOL, ip=self.ips[mid],
                       user=self.user, key_secret=NAMES["maintenance"], host_key=self.host_keys.get(mid))

    def machines(self, ids: list[str] | None = None) -> dict[str, Machine]:
        return {mid: self.machine(mid) for mid in (ids if ids is not None else self.ips)}


def _version() -> str:
    version = os.environ.get("ORBITER_E2E_VERSION") or DEFAULT_VERSION
    return version if version.startswith("v") else "v" + version


def real_target() -> Target | None:
    """The machines named by ORBITER_E2E_*, or None for stand-in mode."""
    listed = os.environ.get("ORBITER_E2E_MACHINES", "").strip()
    if not listed:
        return None
    ips = [ip.strip() for ip in listed.split(",") if ip.strip()]
    if len(ips) < 2:
        pytest.fail("ORBITER_E2E_MACHINES: give at least 2 IPs (control plane first, then workers)")
    key = os.environ.get("ORBITER_E2E_BOOTSTRAP_KEY", "")
    if not key or not Path(key).expanduser().is_file():
        pytest.fail("ORBITER_E2E_BOOTSTRAP_KEY: the path of a private key that logs in to every machine")
    ids = ["cp"] + [f"w{i}" for i in range(1, len(ips))]
    return Target(real=True, ips=dict(zip(ids, ips, strict=True)), user=os.environ.get("ORBITER_E2E_USER") or "root",
                  bootstrap_private=Path(key).expanduser().read_text(), version=_version(),
                  vip=os.environ.get("ORBITER_E2E_VIP") or None,
                  repository=os.environ.get("ORBITER_E2E_REPOSITORY") or None)


@contextlib.contextmanager
def given_machines(request: pytest.FixtureRequest) -> Iterator[Target]:
    """Real mode: the user's machines as they are. Stand-in mode: three local servers, gone afterwards."""
    target = real_target()
    if target is not None:
        yield target
        return
    request.getfixturevalue("local_provider")  # root, systemd-nspawn and the machines session lock
    _sweep(LocalMachines(STANDIN_HOST_PROVIDER, STANDIN_SUBNET))  # leftovers of a killed earlier run
    version = _version()
    private, public = generate_ed25519()
    with static_servers(STANDIN_HOST_PROVIDER, STANDIN_SUBNET, STANDIN_IPS, public, [f"{version[1:]}-1.1"]) as (
        created, apt,
    ):
        with ThreadPoolExecutor(len(created)) as ex:
            list(ex.map(lambda m: prepare_server(m, private), created.values()))
        yield Target(real=False, ips=dict(STANDIN_IPS), user="root", bootstrap_private=private, version=version,
                     repository=apt.source_line())


# --- desired.yml ---------------------------------------------------------------------------------


def desired(orb: str, target: Target, workers: int, destroyed: bool = False) -> str:
    cluster: dict = {
        "kind": "kubernetes",
        "version": target.version,
        "controlPlane": {"provider": PROVIDER, "pool": CP_POOL, "nodes": 1},
        "workers": {"default": {"provider": PROVIDER, "pool": WORKER_POOL, "nodes": workers}},
    }
    if target.vip:
        cluster["controlPlaneEndpoint"] = {"vip": target.vip}
    if target.repository:
        cluster["packages"] = {"repository": target.repository}
    if destroyed:
        cluster["destroyed"] = True
    pools = {CP_POOL: [{"id": target.control_plane, "ip": target.ips[target.control_plane]}],
             WORKER_POOL: [{"id": w, "ip": target.ips[w]} for w in target.workers]}
    doc = {
        "apiVersion": "orbiter.dev/v1",
        "kind": "Orb",
        "metadata": {"name": orb},
        "spec": {
            "pollInterval": POLL,
            "providers": {PROVIDER: {"kind": "static", "remoteUser": target.user, "pools": pools}},
            "clusters": {CLUSTER: cluster},
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


async def wait_phase(repo: GitRepo, commit: str, phase: str, timeout: float) -> ClusterStatus:
    """current.yml shows the cluster in `phase` having applied `commit`; fail at once if rejected or Blocked."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        orb = OrbStatus.from_yaml(repo.remote_file("current.yml"))
        if orb.rejected is not None and orb.rejected.commit == commit:
            raise AssertionError(f"commit rejected: {orb.rejected}")
        last = orb.clusters.get(CLUSTER)
        if last is not None and last.phase == phase and last.commit == commit:
            return last
        if last is not None and last.phase == "Blocked" and last.desired_commit == commit:
            raise AssertionError(f"{CLUSTER} Blocked at step {last.step!r}: {last.error}")
        await asyncio.sleep(2)
    raise AssertionError(f"{CLUSTER} not {phase} at {commit[:8]} within {timeout:.0f}s; last: {last}")


async def stop_orb(client, orb: str, gitops_id: str | None, machine_ids: list[str]) -> None:
    ids = ([gitops_id] if gitops_id else []) + [f"cluster/{orb}/{CLUSTER}"]
    ids += [f"node/{orb}/{CLUSTER}/{m}" for m in machine_ids]
    for wid in ids:
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wid).terminate("test over")


# --- on the machines (blocking: called through asyncio.to_thread) -------------------------------


def public_blob(private_key: str) -> str:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        with contextlib.suppress(paramiko.SSHException, ValueError):
            return cls.from_private_key(io.StringIO(private_key)).get_base64()
    raise AssertionError("the bootstrap key is not an unencrypted ed25519, ecdsa or RSA private key")


@dataclass
class Kept:
    """What the test hands back to a machine's owner at the end."""

    authorized: list[str]  # the bootstrap key's lines in authorized_keys
    hostname: str  # the kernel's
    etc_hostname: str  # the first line of /etc/hostname
    hosts_line: str  # the 127.0.1.1 line of /etc/hosts, "" if none


def preflight(target: Target) -> dict[str, Kept]:
    """Each machine answers the bootstrap key (with sudo if not root) and runs no Kubernetes yet.

    Pins every host key and returns what to hand back: the authorized_keys lines of the bootstrap key
    (orbiter removes them) and the hostname (orbiter names each machine after its id)."""
    blob = public_blob(target.bootstrap_private)
    problems, kept = [], {}
    for mid, machine in target.machines().items():
        try:
            with connect(machine, target.bootstrap_private) as s:
                target.host_keys[mid] = s.host_key
                if (r := s.run("true")).status != 0:
                    problems.append(f"{mid} ({machine.ip}): {r.stderr.strip()[-200:]}")
                    continue
                busy = s.run("systemctl is-active -q kubelet || test -e /etc/kubernetes/kubelet.conf").status == 0
                if busy:
                    problems.append(f"{mid} ({machine.ip}) already runs Kubernetes: the test resets its machines,"
                                    " give it spare ones")
                found = s.run(f"{AUTHORIZED} grep -F {shlex.quote(blob)} \"$f\" 2>/dev/null; true").stdout
                names = s.run(NAMES_NOW, check=True).stdout
                name, etc_name, hosts_line = names.split("\n")[:3]
                kept[mid] = Kept([ln for ln in found.splitlines() if ln.strip()], name.strip(), etc_name.strip(),
                                 hosts_line)
        except Exception as exc:  # noqa: BLE001 - every machine's problem in one message
            problems.append(f"{mid} ({machine.ip}): {exc}")
    assert not problems, "the machines are not ready for the test:\n" + "\n".join(problems)
    return kept


def kubectl_nodes(machine: Machine, key: str) -> dict[str, dict]:
    """`kubectl get nodes -o json` on a control plane: name -> ready, version, control plane label."""
    with connect(machine, key) as s:
        out = s.run(f"{ADMIN} get nodes -o json", timeout=60, check=True).stdout
    nodes = {}
    for n in json.loads(out)["items"]:
        conditions = {c["type"]: c["status"] for c in n["status"].get("conditions", [])}
        nodes[n["metadata"]["name"]] = {
            "ready": conditions.get("Ready") == "True",
            "version": n["status"]["nodeInfo"]["kubeletVersion"],
            "control_plane": CONTROL_PLANE_LABEL in n["metadata"].get("labels", {}),
        }
    return nodes


def machine_state(machine: Machine, key: str) -> dict[str, str]:
    """kubelet's unit state, whether a kubelet process runs, whether /etc/kubernetes exists."""
    with connect(machine, key) as s:
        out = s.run(
            'echo "unit=$(systemctl is-active kubelet 2>/dev/null)";'
            " p=no; for d in /proc/[0-9]*; do [ \"$(cat $d/comm 2>/dev/null)\" = kubelet ] && p=yes; done;"
            ' echo "process=$p"; if [ -e /etc/kubernetes ]; then echo files=yes; else echo files=no; fi',
            check=True,
        ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def kubelet_stopped(state: dict[str, str]) -> bool:
    return state["unit"] not in ("active", "activating", "reloading", "deactivating") and state["process"] == "no"


def hand_back(machine: Machine, opener: str, maintenance_public: str, bootstrap_blob: str,
              kept: Kept) -> None:
    """Put the hostname (and its /etc/hosts line) and the bootstrap key's authorized_keys lines back as
    they were; remove orbiter's maintenance key if a release left it. `opener` logs in."""
    drop = f"-e {shlex.quote(maintenance_public.split()[1])} -e {shlex.quote(bootstrap_blob)}"
    script = (f"set -e; printf '%s\\n' {shlex.quote(kept.etc_hostname or kept.hostname)} > /etc/hostname;"
              f" hostname {shlex.quote(kept.hostname)}; t=$(mktemp); L={shlex.quote(kept.hosts_line)} awk"
              """ '/^127\\.0\\.1\\.1[[:space:]]/ { if (!d && ENVIRON["L"] != "") print ENVIRON["L"]; d = 1; next }"""
              """ { print }' /etc/hosts > "$t" && cat "$t" > /etc/hosts; rm -f "$t";"""
              f' {AUTHORIZED} mkdir -p "$(dirname "$f")"; touch "$f"; t=$(mktemp);'
              f' grep -vF {drop} "$f" > "$t" || true; cat >> "$t"; cat "$t" > "$f"; rm -f "$t"')
    with connect(machine, opener) as s:
        s.run(script, stdin="".join(ln + "\n" for ln in kept.authorized).encode(), check=True)


def hostname(machine: Machine, key: str) -> str | None:
    """The machine's hostname, or None if the key does not open it."""
    try:
        with connect(machine, key) as s:
            return s.run("hostname", check=True).stdout.strip()
    except AuthFailed:
        return None


def in_parallel(fn, items):
    with ThreadPoolExecutor(max(1, len(items))) as ex:
        return list(ex.map(fn, items))


# --- the flow ------------------------------------------------------------------------------------


async def test_kubernetes_on_given_machines(client, worker, repo: GitRepo, request):
    orb = "e2e-" + uuid.uuid4().hex[:6]
    with given_machines(request) as target:
        wid = None
        touched = destroyed = handed_back = False
        kept: dict[str, Kept] = {}
        try:
            kept = await asyncio.to_thread(preflight, target)
            cp, workers = target.control_plane, target.workers
            version = target.version

            # The user's first commit: the bootstrap key, added with the CLI, and all the machines.
            added = await ainvoke("secret", "add", NAMES["bootstrap"], "--repo-dir", str(repo.clone),
                                  input=target.bootstrap_private)
            assert added.exit_code == 0, added.output
            secrets_yml = (repo.clone / "secrets.yml").read_text()
            up = repo.push({"desired.yml": desired(orb, target, len(workers)), "secrets.yml": secrets_yml},
                           f"1 control plane, {len(workers)} workers")
            touched = True
            wid = await takeoff(client, RepoRef(url=repo.url))
            await poke(client, wid)
            status = await wait_phase(repo, up, "Ready", UP_TIMEOUT)

            # Every node Ready at the version with its role, at its machine's address.
            assert sorted((n.machine, n.role, n.ip) for n in status.nodes) == sorted(
                [(cp, "control-plane", target.ips[cp])] + [(w, "worker", target.ips[w]) for w in workers]
            )
            assert all(n.ready and n.version == version and n.cordoned is False for n in status.nodes), status.nodes
            assert status.endpoints == [target.endpoint]
            # The admin kubeconfig: a sealed secret (not plain text in git) naming the endpoint.
            secrets_text = repo.remote_file("secrets.yml") or ""
            assert kubeconfig_secret(CLUSTER) in parse_secrets_file(secrets_text).secrets
            kubeconfig = read_secret(MASTER_KEY, secrets_text, kubeconfig_secret(CLUSTER)).decode()
            assert f"server: {target.endpoint}" in kubeconfig
            assert f"server: {target.endpoint}" not in secrets_text and "client-key-data" not in secrets_text
            key = read_secret(MASTER_KEY, secrets_text, NAMES["maintenance"]).decode()
            # The API agrees: kubectl on the control plane lists them all Ready.
            nodes = await asyncio.to_thread(kubectl_nodes, target.machine(cp), key)
            assert nodes == {
                mid: {"ready": True, "version": version, "control_plane": mid == cp} for mid in target.ips
            }

            # One worker fewer: the last of the pool leaves the cluster and is released.
            gone = workers[-1]
            down = repo.push({"desired.yml": desired(orb, target, len(workers) - 1)}, f"remove worker {gone}")
            await poke(client, wid)
            status = await wait_phase(repo, down, "Ready", DOWN_TIMEOUT)
            staying = [mid for mid in target.ips if mid != gone]
            assert sorted(n.machine for n in status.nodes) == sorted(staying)
            assert all(n.ready and n.version == version for n in status.nodes), status.nodes
            nodes = await asyncio.to_thread(kubectl_nodes, target.machine(cp), key)
            assert sorted(nodes) == sorted(staying) and all(n["ready"] for n in nodes.values()), nodes
            # Released: handed back as it came, the bootstrap key opens it and orbiter's key no longer does.
            released = await asyncio.to_thread(machine_state, target.machine(gone), target.bootstrap_private)
            assert kubelet_stopped(released) and released["files"] == "no", released
            assert await asyncio.to_thread(hostname, target.machine(gone), key) is None

            # Destroyed: every machine reset (released, not deleted: they are the user's).
            end = repo.push({"desired.yml": desired(orb, target, len(workers) - 1, destroyed=True)}, "destroy")
            await poke(client, wid)
            status = await wait_phase(repo, end, "Destroyed", DESTROY_TIMEOUT)
            destroyed = True
            assert status.nodes == [] and status.endpoints == []
            states = dict(zip(target.ips, await asyncio.to_thread(
                in_parallel, lambda m: machine_state(m, target.bootstrap_private), list(target.machines().values())),
                strict=True))
            assert all(kubelet_stopped(s) and s["files"] == "no" for s in states.values()), states

            # Their own hostnames and key lines back (orbiter's release gave the bootstrap key back).
            public = read_secret(MASTER_KEY, secrets_text, NAMES["maintenance_pub"]).decode()
            blob = public_blob(target.bootstrap_private)
            await asyncio.to_thread(in_parallel,
                                    lambda m: hand_back(m, target.bootstrap_private, public, blob, kept[m.id]),
                                    list(target.machines().values()))
            handed_back = True
            for mid, machine in target.machines().items():
                assert await asyncio.to_thread(hostname, machine, target.bootstrap_private) == kept[mid].hostname
                assert await asyncio.to_thread(hostname, machine, key) is None, mid
        finally:
            if target.real and touched:
                await leave_reset(client, repo, orb, wid, target, kept, destroyed, handed_back)
            await stop_orb(client, orb, wid, list(target.ips))


async def leave_reset(client, repo: GitRepo, orb: str, wid: str | None, target: Target,
                      kept: dict[str, Kept], destroyed: bool, handed_back: bool) -> None:
    """Real mode after a failure: destroy the cluster (resets the machines) and hand them back; never raises."""
    problems = []
    if not destroyed and wid is not None:
        try:
            end = repo.push({"desired.yml": desired(orb, target, len(target.workers), destroyed=True)},
                            "test failed: destroy")
            await poke(client, wid)
            await wait_phase(repo, end, "Destroyed", DESTROY_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - reported, the test's own failure is what matters
            problems.append(f"destroy: {exc}")
    if not handed_back:
        try:
            text = repo.remote_file("secrets.yml") or ""
            key = read_secret(MASTER_KEY, text, NAMES["maintenance"]).decode()
            public = read_secret(MASTER_KEY, text, NAMES["maintenance_pub"]).decode()
            blob = public_blob(target.bootstrap_private)
            for mid, machine in target.machines().items():
                if mid not in kept:
                    continue
                opens = await asyncio.to_thread(hostname, machine, key) is not None
                opener = key if opens else target.bootstrap_private
                await asyncio.to_thread(hand_back, machine, opener, public, blob, kept[mid])
        except Exception as exc:  # noqa: BLE001 - as above
            problems.append(f"hand back: {exc}")
    if problems:
        warnings.warn("the machines may not be reset: " + "; ".join(problems), stacklevel=1)
