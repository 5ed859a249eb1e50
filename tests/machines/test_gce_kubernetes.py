"""Issue 12: examples/gce-kubernetes.yml applied through GitOps against the Compute API stand-in
(tests/standins/gce), whose instances are real machines with the kubeadm stand-ins.

Three control planes behind the load balancer orbiter creates (address, health check, instance
groups, backend service, forwarding rule), two workers. The example is used as it ships but for
what this host needs: metadata.name (unique per run), spec.pollInterval, the provider's endpoint
(the stand-in), and clusters.prod.packages.repository (the machines' mirror, which serves the
kubeadm/kubelet/kubectl stand-ins; this host has no internet). Then: the endpoint is the
forwarding rule's address and the API answers through it; a worker scale-down deletes its
instance; `orbiter replace` of a control plane puts the new one into the instance group and takes
the old one out before it is deleted; `destroyed: true` leaves the project empty.
"""

import asyncio
import contextlib
import copy
import time
import uuid
from pathlib import Path

import pytest
import yaml

from orbiter.activities.ssh import connect
from orbiter.models.current import ClusterStatus, OrbStatus
from orbiter.models.kinds.kubernetes import kubeadm_api
from orbiter.models.machines import Machine
from orbiter.models.providers import default_secret_names
from orbiter.models.providers.gce import USER, instance_name
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret

from ..conftest import MASTER_KEY, GitRepo
from ..standins import read_invocations
from ..support.etcd_flows import poke
from ..support.flows import takeoff, wait_for
from ..support.gce import add_credentials, gce_standin, instances, project
from ..support.net import subnet
from ..workflows.test_cli import ainvoke
from ..workflows.test_replay import RECORD
from ..workflows.test_replay import _save as save_history
from .test_kubernetes_e2e import _readyz

pytestmark = [pytest.mark.machines, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gce-kubernetes.yml"
SUBNET = subnet(89)
CLUSTER, PROVIDER = "prod", "gce"
VERSION = "1.31.2"


def example(orb: str, endpoint: str, repository: str, workers: int | None = None, destroyed: bool = False) -> str:
    """The shipped example with the edits this host needs (and a day-two edit when asked)."""
    original = yaml.safe_load(EXAMPLE.read_text())
    doc = copy.deepcopy(original)
    doc["metadata"]["name"] = orb
    doc["spec"]["pollInterval"] = "1h"
    doc["spec"]["providers"][PROVIDER]["endpoint"] = endpoint
    doc["spec"]["clusters"][CLUSTER].setdefault("packages", {})["repository"] = repository
    cluster = doc["spec"]["clusters"][CLUSTER]
    assert cluster["controlPlaneEndpoint"] == {"loadBalancer": True} and cluster["controlPlane"]["nodes"] == 3
    assert cluster["version"] == f"v{VERSION}"
    if workers is not None:
        cluster["workers"]["default"]["nodes"] = workers
    if destroyed:
        cluster["destroyed"] = True
    return "# examples/gce-kubernetes.yml; name, pollInterval, endpoint and packages.repository set by the test\n" + (
        yaml.safe_dump(doc, sort_keys=False))


def prod(repo: GitRepo) -> ClusterStatus | None:
    text = repo.remote_file("current.yml")
    return OrbStatus.from_yaml(text).clusters.get(CLUSTER) if text else None


async def wait_prod(repo: GitRepo, commit: str, phase: str = "Ready", timeout: float = 900) -> ClusterStatus:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = prod(repo)
        if last is not None and last.phase == phase and last.commit == commit:
            return last
        if last is not None and last.phase == "Blocked" and last.desired_commit == commit:
            raise AssertionError(f"{CLUSTER} Blocked at step {last.step!r}: {last.error}")
        await asyncio.sleep(2)
    raise AssertionError(f"{CLUSTER} not {phase} at {commit[:8]} within {timeout:.0f}s; last: {last}")


async def stop_orb(client, orb: str, gitops_id: str | None, names: list[str]) -> None:
    ids = ([gitops_id] if gitops_id else []) + [f"cluster/{orb}/{CLUSTER}"] + [
        f"node/{orb}/{CLUSTER}/{m}" for m in names]
    for wid in ids:
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wid).terminate("test over")


def members(gce) -> set[str]:
    """The instances in the load balancer's instance groups, by name."""
    return {link.rsplit("/", 1)[1] for g in gce.store.all("instanceGroups") for link in g.get("_members", [])}


async def test_gce_kubernetes_example_behind_the_load_balancer(client, worker, repo: GitRepo, local_provider):
    orb = "gk" + uuid.uuid4().hex[:6]
    cps = [instance_name(orb, CLUSTER, "controlplanes", i) for i in range(4)]
    workers = [instance_name(orb, CLUSTER, "workers", i) for i in range(2)]
    wid = None
    packages = ["containerd", "curl", "kmod"]
    example_project = yaml.safe_load(EXAMPLE.read_text())["spec"]["providers"][PROVIDER]["project"]
    with gce_standin(SUBNET, packages, standins=[f"{VERSION}-1.1"], like_a_vm=True, name="gce-k8s",
                     project=example_project) as gce:
        try:
            await add_credentials(repo.clone, gce, "gce_credentials")  # as the example's comment says
            line = gce.backend.mirror_line()
            first = repo.push({"desired.yml": example(orb, gce.endpoint, line),
                               "secrets.yml": (repo.clone / "secrets.yml").read_text()}, "the example")
            wid = await takeoff(client, RepoRef(url=repo.url))
            status = await wait_prod(repo, first)

            [rule] = gce.store.all("forwardingRules")
            lb = rule["IPAddress"]
            assert status.endpoints == [f"https://{lb}:6443"]
            assert sorted((n.machine, n.role) for n in status.nodes) == sorted(
                [(m, "control-plane") for m in cps[:3]] + [(m, "worker") for m in workers])
            assert all(n.ready for n in status.nodes)
            assert members(gce) == set(cps[:3])
            assert _readyz(lb) == "ok"  # through the forwarding rule, to a healthy API server
            found = instances(gce)
            assert {i["zone"].rsplit("/", 1)[1] for i in found.values()} == {"europe-west6-a", "europe-west6-b"}
            assert project(gce) == {
                "addresses": [f"orbiter-{orb}-prod-api"], "backendServices": [f"orbiter-{orb}-prod-api"],
                "firewalls": sorted([f"orbiter-{orb}-prod-api-hc", f"orbiter-{orb}-prod-members",
                                     f"orbiter-{orb}-prod-ssh"]),
                "forwardingRules": [f"orbiter-{orb}-prod-api"], "healthChecks": [f"orbiter-{orb}-prod-api"],
                "instanceGroups": [f"orbiter-{orb}-prod-api-a", f"orbiter-{orb}-prod-api-b"],
                "instances": sorted(found, key=lambda n: (found[n]["zone"], n))}

            # kubeadm init with the balancer's address as the endpoint; every join through it.
            key = read_secret(MASTER_KEY, repo.remote_file("secrets.yml") or "",
                              default_secret_names(PROVIDER)["maintenance"]).decode()
            by_id = {n.machine: Machine(id=n.machine, provider=PROVIDER, pool=n.pool or "", ip=n.ip, user=USER,
                                        key_secret="k", host_key=n.host_key) for n in status.nodes}
            with connect(by_id[cps[0]], key) as cp0:
                [init] = [c for c in read_invocations(cp0) if c["argv"][:2] == ["kubeadm", "init"]
                          and "phase" not in c["argv"]]
            docs = list(yaml.safe_load_all(next(iter(init["configs"].values()))))
            assert kubeadm_api.validate(docs, "v1beta4") == []
            assert next(d for d in docs if d["kind"] == "ClusterConfiguration")["controlPlaneEndpoint"] == f"{lb}:6443"
            for mid in (cps[1], cps[2], *workers):
                with connect(by_id[mid], key) as session:
                    [join] = [c for c in read_invocations(session) if c["argv"][:2] == ["kubeadm", "join"]]
                [doc] = yaml.safe_load_all(next(iter(join["configs"].values())))
                assert doc["discovery"]["bootstrapToken"]["apiServerEndpoint"] == f"{lb}:6443" and join["exit"] == 0

            # A worker fewer: drained, reset, its instance deleted.
            one = repo.push({"desired.yml": example(orb, gce.endpoint, line, workers=1)}, "one worker")
            await poke(client, wid)
            status = await wait_prod(repo, one)
            assert workers[1] not in instances(gce) and workers[1] not in {n.machine for n in status.nodes}

            # orbiter reboot: drained, reset through the API (a new boot), Ready again, uncordoned.
            with connect(by_id[workers[0]], key) as w:
                boot = w.run("cat /proc/sys/kernel/random/boot_id", check=True).stdout.strip()
            rebooting = await ainvoke("reboot", f"{orb}/{CLUSTER}", workers[0])
            assert rebooting.exit_code == 0, rebooting.output

            def rebooted():
                s = prod(repo)
                resets = [op for op in list(gce.store.operations.values()) if op["operationType"] == "reset"]
                return (s and s.phase == "Ready" and s.step is None and s.commands == [] and len(resets) == 1
                        and all(n.ready and n.cordoned is False for n in s.nodes))

            await wait_for(rebooted, timeout=300, interval=2, what=f"{workers[0]} reset and uncordoned")
            with connect(by_id[workers[0]], key) as w:
                assert w.run("cat /proc/sys/kernel/random/boot_id", check=True).stdout.strip() != boot

            # orbiter replace of a control plane: the new one joins the cluster and the instance
            # group, the old one leaves the group, is drained, reset and deleted.
            replaced = await ainvoke("replace", f"{orb}/{CLUSTER}", cps[1])
            assert replaced.exit_code == 0, replaced.output

            def done():
                s = prod(repo)
                names = sorted(n.machine for n in s.nodes) if s else []
                return s and s.phase == "Ready" and s.step is None and names == sorted([cps[0], cps[2], cps[3],
                                                                                          workers[0]])

            await wait_for(done, timeout=600, interval=2, what=f"{cps[1]} replaced by {cps[3]}")
            assert members(gce) == {cps[0], cps[2], cps[3]}
            assert cps[1] not in instances(gce)
            assert _readyz(lb) == "ok"

            gone = repo.push({"desired.yml": example(orb, gce.endpoint, line, workers=1, destroyed=True)}, "destroy")
            await poke(client, wid)
            status = await wait_prod(repo, gone, phase="Destroyed")
            assert status.nodes == [] and status.done[-1] == "remove load balancer api"
            assert project(gce) == {}  # nothing left in the project
            if RECORD:
                await save_history(client, "cluster_kubernetes_gce_lb", f"cluster/{orb}/{CLUSTER}", "ClusterWorkflow")
        finally:
            await stop_orb(client, orb, wid, cps + workers)
