"""pause, resume, retry, replace, reboot, approve, reject, apply-now: operator controls sent to a
cluster workflow as updates (the workflow's validator refuses what does not apply, in one line)."""

import getpass
from typing import Annotated

import typer
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from orbiter.models.change import ApplyNowInput, DecisionInput
from orbiter.models.cluster import ControlInput, ControlResult, MachineCommandInput

from .common import console, fail
from .connection import cluster_id, run_with_client

ClusterArg = Annotated[str, typer.Argument(help="cluster name, or ORB/CLUSTER when several orbs share it")]
PlanOpt = Annotated[str, typer.Option("--plan", help="the plan's hash, as `orbiter status` shows it")]
ByOpt = Annotated[str | None, typer.Option("--by", help="who decides, recorded in current.yml (default: your user)")]
Control = ControlInput | MachineCommandInput | DecisionInput | ApplyNowInput


def _control(action: str, cluster: str, arg: Control | None = None) -> None:
    async def body(client: Client) -> ControlResult:
        wid = await cluster_id(client, cluster)
        try:
            return await client.get_workflow_handle(wid).execute_update(
                action, arg or ControlInput(reason="cli"), result_type=ControlResult)
        except WorkflowUpdateFailedError as err:
            # The cause carries the workflow's refusal (a validator's message); the wrapper says nothing.
            fail(f"cannot {action} {wid}: {getattr(err.cause, 'message', None) or err.cause or err}")
        except RPCError as err:
            fail(f"cannot {action} {wid}: {err.message}")

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


def replace(
    cluster: ClusterArg,
    machine: Annotated[str, typer.Argument(help="the machine to replace, as `orbiter status` lists it")],
) -> None:
    """Replace a machine: a new one from the same pool joins first, then MACHINE is drained, reset
    and released (deleted on local and GCE providers; static pools need a spare machine)."""
    _control("replace", cluster, MachineCommandInput(machine=machine, reason="cli"))


def reboot(
    cluster: ClusterArg,
    machine: Annotated[str, typer.Argument(help="the machine to reboot, as `orbiter status` lists it")],
) -> None:
    """Reboot a machine the safe way: drain its node, reboot it through its provider, wait until the
    node is Ready again, uncordon it."""
    _control("reboot", cluster, MachineCommandInput(machine=machine, reason="cli"))


def approve(cluster: ClusterArg, plan: PlanOpt, by: ByOpt = None) -> None:
    """Approve the plan a cluster awaits approval for (see `orbiter status`): its steps run. A plan
    hash that is not the one awaiting (a newer commit planned again) is refused."""
    _control("approve", cluster, DecisionInput(plan=plan, by=by or getpass.getuser(), reason="cli"))


def reject(cluster: ClusterArg, plan: PlanOpt, by: ByOpt = None) -> None:
    """Reject the plan a cluster awaits approval for: nothing of it runs, the cluster stays at its
    last applied commit until a newer commit (a revert, a fix) is pushed."""
    _control("reject", cluster, DecisionInput(plan=plan, by=by or getpass.getuser(), reason="cli"))


def apply_now(cluster: ClusterArg, by: ByOpt = None) -> None:
    """Run the current commit's disruptive steps now, outside the cluster's maintenance windows
    (once, for this commit; recorded in current.yml like an approval)."""
    _control("apply_now", cluster, ApplyNowInput(by=by or getpass.getuser(), reason="cli"))
