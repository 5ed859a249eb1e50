"""Machines belong to one orb: two orbs made with `orbiter init` (same provider and cluster names)
on one worker each get their own machines, one's destroy leaves the other's running with its data,
a repository naming an orb another one manages is refused, and `machines release --force` frees a
machine whose orb is gone."""

import contextlib
import json
import uuid
from pathlib import Path

import pytest
import yaml

from orbiter.activities.providers.local import LocalMachines
from orbiter.models.ids import cluster_workflow_id, gitops_workflow_id
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo
from ..support.etcd_flows import Etcdctl, current, poke, wait_cluster
from ..support.flows import takeoff, wait_for
from ..support.net import subnet
from ..workflows.test_cli import ainvoke, invoke

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(86)


def from_init(tmp_path: Path, directory: str) -> str:
    """desired.yml as `orbiter init DIR` writes it, on this test's subnet and with one member."""
    result = invoke("init", str(tmp_path / directory))
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((tmp_path / directory / "desired.yml").read_text())
    assert (data["spec"]["providers"], list(data["spec"]["clusters"])) == ({"lab": {"kind": "local"}}, ["meta"])
    data["spec"]["pollInterval"] = "1h"
    data["spec"]["providers"]["lab"]["subnet"] = SUBNET
    data["spec"]["clusters"]["meta"]["members"]["nodes"] = 1
    return yaml.safe_dump(data, sort_keys=False)


async def terminate(client, *workflow_ids: str) -> None:
    for wid in workflow_ids:
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(wid).terminate("test over")


async def test_two_orbs_from_init_on_one_worker_keep_their_machines_apart(client, worker, tmp_path: Path):
    suffix = uuid.uuid4().hex[:4]
    names = [f"alpha-{suffix}", f"beta-{suffix}"]
    for name in names:
        (tmp_path / name).mkdir()
    repos = [GitRepo(tmp_path / name) for name in names]
    machines = LocalMachines("lab", SUBNET)
    workflows: list[str] = []
    try:
        commits = [repo.push({"desired.yml": from_init(tmp_path / "init", name)}, "day one")
                   for name, repo in zip(names, repos, strict=True)]
        for repo in repos:
            workflows.append(await takeoff(client, RepoRef(url=repo.url)))
        for repo, commit in zip(repos, commits, strict=True):
            await wait_cluster(repo, commit)
        rows = {m["id"]: m for m in json.loads(invoke("machines", "ls", "-o", "json").stdout)}
        for name in names:
            assert rows[f"{name}-meta-etcd-0"]["orb"] == name and rows[f"{name}-meta-etcd-0"]["cluster"] == "meta"
        alpha_node, beta_node = (current(repo).clusters["meta"].nodes[0] for repo in repos)
        assert alpha_node.ip != beta_node.ip

        beta = Etcdctl(repos[1], "meta", tmp_path)
        beta("put", "/kept", "yes")

        # A third repository naming orb alpha is refused: it would steer alpha's cluster.
        (tmp_path / "impostor").mkdir()
        impostor = GitRepo(tmp_path / "impostor")
        impostor.push({"desired.yml": from_init(tmp_path / "init2", names[0])}, "same orb name")
        workflows.append(await takeoff(client, RepoRef(url=impostor.url)))
        refused = await wait_for(lambda: (s := current(impostor)) and s.clusters.get("meta")
                                 and s.clusters["meta"].error and s.clusters["meta"], timeout=60, what="refusal")
        assert refused.phase == "Blocked"
        assert f"orb {names[0]} is managed from another repository" in refused.error

        # Destroying alpha deletes alpha's machine and nothing of beta's.
        data = yaml.safe_load(repos[0].remote_file("desired.yml"))
        data["spec"]["clusters"]["meta"]["destroyed"] = True
        gone = repos[0].push({"desired.yml": yaml.safe_dump(data, sort_keys=False)}, "destroy alpha")
        await poke(client, workflows[0])
        await wait_cluster(repos[0], gone, phase="Destroyed")
        left = {m["id"]: m for m in machines.list_status()}
        assert f"{names[0]}-meta-etcd-0" not in left
        assert left[f"{names[1]}-meta-etcd-0"]["state"] == "running"
        assert beta("get", "/kept", "--print-value-only").strip() == "yes"
    finally:
        await terminate(client, *workflows, *(cluster_workflow_id(n, "meta") for n in names),
                        *(f"node/{n}/meta/{n}-meta-etcd-0" for n in names))
        for row in machines.list_status():
            machines.delete(row["id"])
        with contextlib.suppress(Exception):
            machines.destroy_network()


async def test_release_force_frees_a_machine_whose_orb_is_gone(client, worker, repo: GitRepo, tmp_path: Path):
    orb = f"gone-{uuid.uuid4().hex[:4]}"
    machines = LocalMachines("lab", SUBNET)
    wid = gitops_workflow_id(repo.url, "main")
    name = f"{orb}-meta-etcd-0"
    try:
        commit = repo.push({"desired.yml": from_init(tmp_path / "init", orb)}, "day one")
        await takeoff(client, RepoRef(url=repo.url))
        await wait_cluster(repo, commit)
        # While its orb runs, release refuses; without --force it only says what it would undo.
        asked = await ainvoke("machines", "release", f"lab/{name}")
        assert asked.exit_code == 1 and f"claimed by orb {orb} (cluster meta)" in asked.stdout
        assert "pass --force" in asked.stderr
        running = await ainvoke("machines", "release", f"lab/{name}", "--force")
        assert running.exit_code == 1 and "is running" in running.stderr
        assert name in {m["id"] for m in machines.list_status()}
        # The orb is gone (its workflows terminated): release --force deletes the machine.
        await terminate(client, wid, cluster_workflow_id(orb, "meta"), f"node/{orb}/meta/{name}")
        done = await ainvoke("machines", "release", f"lab/{name}", "--force")
        assert done.exit_code == 0, done.output
        assert f"released lab/{name}" in done.stdout
        assert name not in {m["id"] for m in machines.list_status()}
        missing = await ainvoke("machines", "release", f"lab/{name}", "--force")
        assert missing.exit_code == 1 and f"no machine lab/{name} on this host" in missing.stderr
    finally:
        await terminate(client, wid, cluster_workflow_id(orb, "meta"), f"node/{orb}/meta/{name}")
        for row in machines.list_status():
            machines.delete(row["id"])
        with contextlib.suppress(Exception):
            machines.destroy_network()
