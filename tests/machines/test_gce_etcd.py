"""Issue 12: an etcd cluster on GCE through GitOps, against the Compute API stand-in whose
instances are real machines (tests/standins/gce).

One cluster, in a row: a quota met at the third insert leaves the cluster Blocked with GCE's
reason in one line, and `orbiter retry` after the quota is raised finishes it (3 members); it is
scaled to 5; then orbiter loses track of it (every workflow gone, as with a lost Temporal
database) while the repository asks for 3 again: the workflow started afresh adopts the 5
instances by their labels and removes the 2 it does not want through etcd's scale-down (member
remove, then the instance deleted); destroyed, the project holds nothing.
"""

import asyncio
import json
import re
import uuid

import pytest

from orbiter.models.providers.gce import instance_name
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo
from ..support.etcd_flows import Etcdctl, current, poke, stop_orb, wait_cluster
from ..support.flows import takeoff, wait_for
from ..support.gce import CREDENTIALS, PROJECT, ZONES, add_credentials, gce_standin, instances, project
from ..support.net import subnet
from ..workflows.test_cli import ainvoke
from ..workflows.test_replay import RECORD
from ..workflows.test_replay import _save as save_history

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(88)

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: 1h
  maxParallel: 5
  providers:
    cloud:
      kind: gce
      project: {project}
      zones: [{zones}]
      credentialsSecret: {credentials}
      endpoint: {endpoint}
      pools:
        etcd: {{machineType: e2-small, diskGB: 10}}
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"
      members: {{provider: cloud, pool: etcd, nodes: {nodes}}}
{extra}"""


def desired(orb: str, endpoint: str, nodes: int, extra: str = "") -> str:
    return DESIRED.format(orb=orb, project=PROJECT, zones=", ".join(ZONES), credentials=CREDENTIALS,
                          endpoint=endpoint, nodes=nodes, extra=extra)


class Machines:
    """What etcd_flows.stop_orb asks of a provider: the machines to stop the node agents of."""

    def __init__(self, standin) -> None:
        self.standin = standin

    def list_status(self) -> list[dict]:
        return [{"id": name} for name in instances(self.standin)]


async def test_etcd_on_gce_quota_scale_lost_track_destroy(client, worker, repo: GitRepo, local_provider, tmp_path,
                                                          caplog, assert_no_leak):
    orb = "g" + uuid.uuid4().hex[:6]
    names = [instance_name(orb, "meta", "etcd", i) for i in range(5)]
    with gce_standin(SUBNET, ["etcd-server", "etcd-client"]) as gce:
        wid = None
        try:
            key = await add_credentials(repo.clone, gce)
            secrets_yml = (repo.clone / "secrets.yml").read_text()

            # A quota that allows two instances: the third insert's operation ends in QUOTA_EXCEEDED.
            gce.faults.instance_quota = 2
            three = repo.push({"desired.yml": desired(orb, gce.endpoint, 3), "secrets.yml": secrets_yml}, "three")
            wid = await takeoff(client, RepoRef(url=repo.url))
            status = await wait_cluster(repo, three, phase="Blocked", timeout=600)
            # The three inserts run at once: whichever came third met the quota, and is named.
            error = re.fullmatch(r"GceError: provider cloud: instance (\S+) \(zone (\S+)\): QUOTA_EXCEEDED: Quota"
                                 r" 'INSTANCES' exceeded\. Limit: 2\.0 in region europe-west6\.", status.error or "")
            assert error and error[1] in names[:3], status.error
            assert error[2] == ZONES[names.index(error[1]) % 2]
            assert sorted(instances(gce)) == sorted(set(names[:3]) - {error[1]})

            # The quota raised, `orbiter retry` finishes the job with the two instances it made.
            gce.faults.instance_quota = None
            retried = await ainvoke("retry", f"{orb}/meta")
            assert retried.exit_code == 0, retried.output
            await wait_for(lambda: current(repo).clusters["meta"].phase != "Blocked", timeout=60, what="retrying")
            status = await wait_cluster(repo, three, timeout=600)
            found = instances(gce)
            assert sorted(found) == names[:3] and all(n.ready for n in status.nodes)
            assert {n.machine: n.ip for n in status.nodes} == {
                n: i["networkInterfaces"][0]["networkIP"] for n, i in found.items()}
            assert [i["zone"].rsplit("/", 1)[1] for _, i in sorted(found.items())] == [ZONES[0], ZONES[1], ZONES[0]]
            first = found[names[0]]
            assert first["labels"] == {"orbiter-orb": orb, "orbiter-cluster": "meta", "orbiter-pool": "etcd"}
            items = {m["key"]: m["value"] for m in first["metadata"]["items"]}
            assert items["enable-oslogin"] == "FALSE" and items["ssh-keys"].startswith("orbiter:ssh-ed25519 ")
            rules = {r["name"]: r for r in gce.store.all("firewalls")}
            members = rules[f"orbiter-{orb}-meta-members"]
            assert members["allowed"] == [{"IPProtocol": "tcp", "ports": ["2379", "2380"]}]
            assert members["sourceTags"] == members["targetTags"] == [f"orbiter-{orb}-meta"]
            assert first["tags"]["items"] == [f"orbiter-{orb}-meta"]
            assert rules[f"orbiter-{orb}-meta-ssh"]["allowed"] == [{"IPProtocol": "tcp", "ports": ["22"]}]
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            etcdctl("put", "/gce", "yes")

            # `orbiter machines ls --repo-dir` asks the provider of the orb in the checkout.
            listed = await ainvoke("machines", "ls", "--repo-dir", str(repo.clone), "-o", "json")
            assert listed.exit_code == 0, listed.output
            rows = {r["id"]: r for r in json.loads(listed.stdout) if r["provider"] == "cloud"}
            assert {n: (r["zone"], r["ip"], r["state"], r["cluster"]) for n, r in rows.items()} == {
                n: (i["zone"].rsplit("/", 1)[1], i["networkInterfaces"][0]["networkIP"], "running", "meta")
                for n, i in found.items()}

            five = repo.push({"desired.yml": desired(orb, gce.endpoint, 5)}, "five")
            await poke(client, wid)
            status = await wait_cluster(repo, five, timeout=600)
            assert sorted(n.machine for n in status.nodes) == names == sorted(instances(gce))

            # orbiter loses track: every workflow of the orb gone (a Temporal database lost), and
            # the repository now asks for 3. Taken off again, it adopts the 5 instances it finds by
            # their labels and takes the 2 it does not want out of etcd before it deletes them.
            await stop_orb(client, orb, wid, Machines(gce))
            back = repo.push({"desired.yml": desired(orb, gce.endpoint, 3)}, "back to three")
            inserts = gce.store.stats.instance_inserts
            wid = await takeoff(client, RepoRef(url=repo.url))
            status = await wait_cluster(repo, back, timeout=600)
            assert len(status.nodes) == 3 and all(n.ready for n in status.nodes)
            removed = [p.split()[-1] for p in status.plan if p.startswith("remove member ")]
            assert len(removed) == 2 and set(removed) <= set(names), status.plan
            assert sorted(instances(gce)) == sorted(n.machine for n in status.nodes)
            assert gce.store.stats.instance_inserts == inserts  # adopted: not one instance made
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            assert etcdctl("get", "/gce", "--print-value-only").strip() == "yes"
            assert len(etcdctl("member", "list").strip().splitlines()) == 3

            gone = repo.push({"desired.yml": desired(orb, gce.endpoint, 3, "      destroyed: true\n")}, "destroy")
            await poke(client, wid)
            status = await wait_cluster(repo, gone, phase="Destroyed", timeout=600)
            assert status.nodes == []
            assert project(gce) == {}  # no instance, no firewall rule
            if RECORD:  # the path of a workflow that adopts what it finds, for the determinism guard
                await save_history(client, "cluster_etcd_gce_adopted", f"cluster/{orb}/meta", "ClusterWorkflow")

            # The service-account key is in no history, log, state file or commit in plain text.
            await stop_orb(client, orb, wid, Machines(gce))
            private_line = json.loads(key)["private_key"].splitlines()[5]
            assert_no_leak([private_line], repos=[repo.remote])
        finally:
            await stop_orb(client, orb, wid or "none", Machines(gce))
        await asyncio.sleep(0)
