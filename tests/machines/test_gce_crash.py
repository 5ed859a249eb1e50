"""Issue 12, crash safety on GCE: the worker SIGKILLed in the middle of an instance insert, and again
in the middle of the load balancer's creation, against the Compute API stand-in.

A Kubernetes cluster with one control plane behind a load balancer (the stand-in's kubeadm
stand-ins) on a worker subprocess (tests/support/flows.WorkerProcess). The stand-in keeps the
insert's operation RUNNING (as GCE does while an instance is provisioned) and drops the first
insert's answer after acting, so the client sends it again with its requestId; the worker is
killed while that operation runs. Then the load balancer's operations are kept RUNNING and an
address insert's answer is dropped, and the worker is killed while the backend service is being
made. New workers finish the job. Afterwards the project holds exactly the wanted resources, each
made once: the retried insert was recognised by its requestId, and what a killed attempt had made
was found again by name.
"""

import asyncio
import time
import uuid

import pytest

from orbiter.models.providers.gce import instance_name
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo
from ..support.flows import gitops_id, takeoff, wait_for, worker_processes
from ..support.gce import CREDENTIALS, PROJECT, ZONES, add_credentials, gce_standin, project
from ..support.net import subnet
from .test_gce_kubernetes import CLUSTER, VERSION, prod, stop_orb, wait_prod

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(88)  # the etcd module's too: modules of one test worker run one after the other

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: 1h
  providers:
    gce:
      kind: gce
      project: {project}
      zones: [{zones}]
      credentialsSecret: {credentials}
      endpoint: {endpoint}
      pools:
        controlplanes: {{machineType: e2-standard-2}}
  clusters:
    prod:
      kind: kubernetes
      version: v{version}
      controlPlane: {{provider: gce, pool: controlplanes, nodes: 1}}
      controlPlaneEndpoint: {{loadBalancer: true}}
      packages: {{repository: "{repository}"}}
"""


async def test_sigkilled_worker_during_an_insert_and_the_load_balancers_creation(
        client, temporal_server, repo: GitRepo, local_provider, tmp_path):
    orb = "gc" + uuid.uuid4().hex[:6]
    cp0 = instance_name(orb, CLUSTER, "controlplanes", 0)
    wid = None
    with (gce_standin(SUBNET, ["containerd", "curl", "kmod"], standins=[f"{VERSION}-1.1"], like_a_vm=True,
                      name="gce-crash") as gce,
          worker_processes(tmp_path, temporal_server.address) as start_worker):
        try:
            await add_credentials(repo.clone, gce)
            gce.faults.delays["instances"] = 30.0  # an insert's operation stays RUNNING this long
            gce.faults.drops["instances.insert"] = 1  # and its first answer is lost after the insert
            worker = start_worker()
            commit = repo.push({"desired.yml": DESIRED.format(
                orb=orb, project=PROJECT, zones=", ".join(ZONES), credentials=CREDENTIALS, endpoint=gce.endpoint,
                version=VERSION, repository=gce.backend.mirror_line()),
                "secrets.yml": (repo.clone / "secrets.yml").read_text()}, "one control plane behind a balancer")
            wid = await takeoff(client, RepoRef(url=repo.url))

            def inserting() -> bool:
                ops = [op for op in list(gce.store.operations.values()) if op["operationType"] == "insert"
                       and op["targetLink"].endswith(f"/instances/{cp0}")]
                return bool(ops) and ops[0]["status"] == "RUNNING" and gce.store.stats.repeated_request_ids != []

            await wait_for(inserting, timeout=300, interval=0.2, what="the instance insert sent again and running")
            worker.kill()
            killed = time.monotonic()
            gce.faults.delays["instances"] = 0.2

            # The balancer: every operation RUNNING for a while, the address insert's answer lost.
            for collection in ("addresses", "healthChecks", "instanceGroups", "backendServices", "forwardingRules"):
                gce.faults.delays[collection] = 8.0
            gce.faults.drops["addresses.insert"] = 1
            worker = start_worker()

            def making_the_backend_service() -> bool:
                return any(op["operationType"] == "insert" and "/backendServices/" in op["targetLink"]
                           and op["status"] == "RUNNING" for op in list(gce.store.operations.values()))

            await wait_for(making_the_backend_service, timeout=600, interval=0.2, what="the backend service being made")
            step = prod(repo).step if prod(repo) else None
            worker.kill()
            for collection in list(gce.faults.delays):
                gce.faults.delays[collection] = 0.2
            start_worker()
            status = await wait_prod(repo, commit, timeout=900)
            print(f"first kill during the insert, second at {step!r}; Ready {time.monotonic() - killed:.0f}s after"
                  " the first")

            [rule] = gce.store.all("forwardingRules")
            assert status.endpoints == [f"https://{rule['IPAddress']}:6443"]
            assert [n.machine for n in status.nodes] == [cp0] and status.nodes[0].ready
            base = f"orbiter-{orb}-prod"
            assert project(gce) == {
                "addresses": [f"{base}-api"], "backendServices": [f"{base}-api"],
                "firewalls": [f"{base}-api-hc", f"{base}-members", f"{base}-ssh"],
                "forwardingRules": [f"{base}-api"], "healthChecks": [f"{base}-api"],
                "instanceGroups": [f"{base}-api-a", f"{base}-api-b"], "instances": [cp0]}
            created = gce.store.stats.created
            assert len(created) == len(set(created)), created  # none made twice
            repeated = {request for request, _ in gce.store.stats.repeated_request_ids}
            assert {"instances.insert", "addresses.insert"} <= repeated
            assert gce.store.stats.dropped == ["instances.insert", "addresses.insert"]
            assert {link.rsplit("/", 1)[1] for g in gce.store.all("instanceGroups") for link in g["_members"]} == {
                cp0}
        finally:
            await stop_orb(client, orb, wid or gitops_id(repo), [cp0])
        await asyncio.sleep(0)
