"""Finding the workflows a command talks to."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio.client import Client
from temporalio.service import RPCError

from orbiter.activities.repo import normalize_url
from orbiter.models.ids import gitops_workflow_id
from orbiter.models.secrets import SecretsError
from orbiter.worker.client import ConnectError, connect
from orbiter.workflows.gitops import GitOpsWorkflow

from .common import fail

T = TypeVar("T")


def run_with_client(body: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        client = await connect()
        return await body(client)

    try:
        return asyncio.run(main())
    except (ConnectError, SecretsError) as err:
        fail(str(err))


async def gitops_id(client: Client, repo: str | None, branch: str) -> str:
    """The GitOps workflow of --repo, or the only one running when --repo is not given."""
    if repo:
        return gitops_workflow_id(normalize_url(repo), branch)
    ids = [w.id async for w in client.list_workflows(
        "WorkflowType = 'GitOpsWorkflow' AND ExecutionStatus = 'Running'")]
    if not ids:
        fail("no repository is watched: run `orbiter takeoff --repo URL` first")
    if len(ids) > 1:
        fail(f"{len(ids)} repositories are watched: name one with --repo")
    return ids[0]


async def orb_of(client: Client, repo: str | None, branch: str, cluster: str | None) -> tuple[str, str | None]:
    """The GitOps workflow a command about CLUSTER (a name, or ORB/CLUSTER) asks, and the cluster's
    name in its orb: --repo when given; else the orb the cluster belongs to, so `status ORB/meta`
    works with several repositories watched."""
    name = cluster.split("/", 1)[1] if cluster and "/" in cluster else cluster
    if repo or cluster is None:
        return await gitops_id(client, repo, branch), name
    orb = (await cluster_id(client, cluster)).split("/")[1]
    ids = [w.id async for w in client.list_workflows(
        "WorkflowType = 'GitOpsWorkflow' AND ExecutionStatus = 'Running'")]
    if len(ids) == 1:
        return ids[0], name

    async def about(wid: str) -> str | None:
        try:
            return (await client.get_workflow_handle(wid).query(GitOpsWorkflow.about)).orb
        except RPCError:
            return None

    owners = [wid for wid, o in zip(ids, await asyncio.gather(*(about(w) for w in ids)), strict=True) if o == orb]
    if not owners:
        fail(f"no watched repository holds orb {orb!r}: see `orbiter status --repo URL`")
    return owners[0], name


async def cluster_id(client: Client, cluster: str) -> str:
    """A cluster workflow by `orb/cluster` or by cluster name alone when that is unambiguous."""
    if "/" in cluster:
        orb, name = cluster.split("/", 1)
        return f"cluster/{orb}/{name}"
    ids = [w.id async for w in client.list_workflows(
        f"WorkflowType = 'ClusterWorkflow' AND ExecutionStatus = 'Running' AND OrbiterCluster = '{cluster}'")]
    if not ids:
        fail(f"no cluster named {cluster!r} is running: see `orbiter status`")
    if len(ids) > 1:
        fail(f"several orbs have a cluster {cluster!r}: write ORB/{cluster}")
    return ids[0]
