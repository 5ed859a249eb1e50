"""Helpers for end-to-end etcd tests: a watched repo, the client bundle, etcdctl from the host."""

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from temporalio.client import Client

from orbiter.activities.providers.local import LocalMachines
from orbiter.models.current import ClusterStatus, OrbStatus
from orbiter.models.gitops import PokeInput
from orbiter.models.kinds.etcd.messages import client_bundle_secret
from orbiter.models.providers import machine_name
from orbiter.models.secrets import read_secret
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import MASTER_KEY, GitRepo
from .net import subnet

E2E_PROVIDER = "lab"
E2E_SUBNET = subnet(80)

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: 1h
  driftInterval: {drift}
  maxParallel: 5
  providers:
    lab:
      kind: local
      subnet: {subnet}
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"
      members: {{provider: lab, pool: etcd, nodes: {nodes}}}
{extra}"""


def desired(orb: str, nodes: int, extra: str = "", subnet: str = E2E_SUBNET, drift: str = "10m") -> str:
    return DESIRED.format(orb=orb, nodes=nodes, extra=extra, subnet=subnet, drift=drift)


@contextlib.contextmanager
def e2e_machines(subnet: str = E2E_SUBNET) -> Iterator[LocalMachines]:
    """The provider the flow's desired.yml names; every machine of it is gone afterwards."""
    provider = LocalMachines(E2E_PROVIDER, subnet)
    try:
        yield provider
    finally:
        for machine in provider.list_status():
            provider.delete(machine["id"])
        with contextlib.suppress(Exception):
            provider.destroy_network()


def current(repo: GitRepo) -> OrbStatus:
    return OrbStatus.from_yaml(repo.remote_file("current.yml"))


async def poke(client: Client, wid: str) -> None:
    await client.get_workflow_handle(wid).signal(GitOpsWorkflow.poke, PokeInput())


async def wait_cluster(repo: GitRepo, commit: str, phase: str = "Ready", timeout: float = 600) -> ClusterStatus:
    """current.yml shows the cluster in `phase` having applied `commit`; fail fast on Blocked."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        status = current(repo).clusters.get("meta")
        last = status
        if status and status.phase == phase and (status.commit == commit or phase == "Blocked"):
            return status
        if status and status.phase == "Blocked" and phase != "Blocked" and status.desired_commit == commit:
            raise AssertionError(f"cluster Blocked: {status.error}")
        await asyncio.sleep(1)
    raise AssertionError(f"cluster not {phase} at {commit[:8]} in {timeout}s; last: {last}")


class Etcdctl:
    """etcdctl on the host with the client bundle orbiter wrote (`orbiter secret read`)."""

    def __init__(self, repo: GitRepo, cluster: str, workdir: Path) -> None:
        bundle = yaml.safe_load(read_secret(MASTER_KEY, repo.remote_file("secrets.yml"), client_bundle_secret(cluster)))
        self.endpoints = ",".join(bundle["endpoints"])
        self.last_error = ""
        self.files = {}
        for part in ("ca", "cert", "key"):
            path = workdir / f"etcd-{part}.pem"
            path.write_text(bundle[part])
            path.chmod(0o600)
            self.files[part] = str(path)

    def __call__(self, *args: str, check: bool = True, timeout: float = 15) -> str:
        cmd = [
            "etcdctl",
            f"--endpoints={self.endpoints}",
            f"--cacert={self.files['ca']}",
            f"--cert={self.files['cert']}",
            f"--key={self.files['key']}",
            "--dial-timeout=3s",
            *args,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={"ETCDCTL_API": "3"})
        self.last_error = out.stderr
        if check and out.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout


# -- crash and fault tests (tests/test_etcd_crash.py) -----------------------------------------


async def wait_step(repo: GitRepo, prefix: str, timeout: float = 600) -> ClusterStatus:
    """current.yml reports the cluster's step starting with `prefix`; fail fast on Blocked."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = current(repo).clusters.get("meta") if repo.remote_file("current.yml") else None
        if last and (last.step or "").startswith(prefix):
            return last
        if last and last.phase == "Blocked":
            raise AssertionError(f"cluster Blocked waiting for step {prefix!r}: {last.error}")
        await asyncio.sleep(0.2)
    raise AssertionError(f"step {prefix!r} not reported in {timeout}s; last: {last}")


def started_members(etcdctl: Etcdctl) -> list[dict]:
    """`etcdctl member list` as JSON; an added member that never started has no name."""
    import json

    return json.loads(etcdctl("member", "list", "-w", "json"))["members"]


async def stop_orb(client: Client, orb: str, gitops_id: str, machines: LocalMachines) -> None:
    """Terminate the GitOps, cluster and node agent workflows of a test orb (absent ones are fine)."""
    ids = [gitops_id, f"cluster/{orb}/meta"] + [f"node/{orb}/meta/{m['id']}" for m in machines.list_status()]
    ids += [f"node/{orb}/meta/{machine_name(orb, 'meta', 'etcd', i)}" for i in range(9)]
    for wid in dict.fromkeys(ids):
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wid).terminate("test over")
