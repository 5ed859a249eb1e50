"""pause, resume, retry: operator controls sent to a cluster workflow as updates."""

from typing import Annotated

import typer
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from orbiter.models.cluster import ControlInput, ControlResult

from .common import console, fail
from .connection import cluster_id, run_with_client

ClusterArg = Annotated[str, typer.Argument(help="cluster name, or ORB/CLUSTER when several orbs share it")]


def _control(action: str, cluster: str) -> None:
    async def body(client: Client) -> ControlResult:
        wid = await cluster_id(client, cluster)
        try:
            return await client.get_workflow_handle(wid).execute_update(
                action, ControlInput(reason="cli"), result_type=ControlResult)
        except (RPCError, WorkflowUpdateFailedError) as err:
            fail(f"cannot {action} {wid}: {getattr(err, 'message', err)}")

    result = run_with_client(body)
    console.print(f"{cluster}: {result.message} (phase {result.phase})", highlight=False)


def pause(cluster: ClusterArg) -> None:
    """Hold the cluster: no new step starts until `orbiter resume` (the running one finishes)."""
    _control("pause", cluster)


def resume(cluster: ClusterArg) -> None:
    """Let a paused cluster go on reconciling."""
    _control("resume", cluster)


def retry(cluster: ClusterArg) -> None:
    """Run a Blocked cluster's reconcile again, after you fixed what blocked it."""
    _control("retry", cluster)
