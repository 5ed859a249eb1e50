"""backup, backups, restore, rotate-ca: a kind's own actions, sent to the cluster workflow as its `action`
update (the kind refuses what does not apply, in one line). Nothing here names a kind."""

import getpass
from typing import Annotated

import typer
from rich.table import Table
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from orbiter.models.actions import ActionInput, ActionResult

from .clusters import ClusterArg
from .common import Output, OutputOpt, console, fail, print_json
from .connection import cluster_id, run_with_client


def send_action(cluster: str, action: str, args: dict[str, str] | None = None) -> ActionResult:
    async def body(client: Client) -> ActionResult:
        wid = await cluster_id(client, cluster)
        try:
            return await client.get_workflow_handle(wid).execute_update(
                "action", ActionInput(action=action, args=args or {}, by=getpass.getuser()), result_type=ActionResult)
        except WorkflowUpdateFailedError as err:
            fail(f"cannot {action} {cluster}: {getattr(err.cause, 'message', None) or err.cause or err}")
        except RPCError as err:
            fail(f"cannot {action} {cluster}: {err.message}")

    return run_with_client(body)


def backup(cluster: ClusterArg) -> None:
    """Take a backup of the cluster's data now (into the orb's backupStore) and print its id."""
    print(send_action(cluster, "backup").message)


def backups(cluster: ClusterArg, output: OutputOpt = Output.table) -> None:
    """The cluster's backups, newest first: id, revision, size, sha256, when and why."""
    listed = send_action(cluster, "backups").data
    if output == Output.json:
        print_json(listed)
        return
    table = Table("id", "revision", "size", "taken at", "reason", "sha256")
    for b in listed:
        table.add_row(b["id"], str(b["revision"]), str(b["size"]), b["taken_at"], b["reason"], b["sha256"][:12])
    console.print(table)


def restore(cluster: ClusterArg,
            backup_id: Annotated[str, typer.Option("--from", help="the backup's id, as `orbiter backups` lists it")]
            ) -> None:
    """Put the cluster's data back as it was in a backup: every member is stopped and restored from
    it, then started; data written after the backup is gone. Waits until it is done."""
    console.print(send_action(cluster, "restore", {"from": backup_id}).message, highlight=False)


def rotate_ca(cluster: ClusterArg) -> None:
    """Replace the cluster's CA without downtime: members trust the old and a new CA, their and the
    client bundle's certificates are issued from the new one, then the old one is dropped (three
    rolls, one member at a time). Clients re-read the client bundle secret to follow. Waits until
    it is done."""
    console.print(send_action(cluster, "rotate-ca").message, highlight=False)
