"""orbiter machines: the local provider's machines on this host."""

import contextlib
from typing import Annotated

import typer
from rich.table import Table
from temporalio.client import Client

from orbiter.activities.providers.local import LocalProviderError, all_providers, gc, list_all_local_machines
from orbiter.workflows.cluster import ClusterWorkflow

from .common import Output, OutputOpt, console, fail, print_json
from .connection import run_with_client

app = typer.Typer(help="Machines of local providers (systemd-nspawn on this host)", no_args_is_help=True)


@app.command("ls")
def ls(output: OutputOpt = Output.table) -> None:
    """List the machines of all local providers with state and IP."""
    try:
        machines = list_all_local_machines()
    except LocalProviderError as err:
        fail(str(err))
    if output == Output.json:
        print_json(machines)
        return
    table = Table("provider", "machine", "pool", "ip", "state")
    for m in machines:
        table.add_row(m["provider"], m["id"], m.get("pool") or "", m.get("ip") or "", m.get("state") or "")
    console.print(table)


async def _owned(client: Client) -> set[tuple[str, str]]:
    owned: set[tuple[str, str]] = set()
    query = "WorkflowType = 'ClusterWorkflow' AND ExecutionStatus = 'Running'"
    async for wf in client.list_workflows(query):
        status = await client.get_workflow_handle(wf.id).query(ClusterWorkflow.status)
        owned |= {(n.provider or "", n.machine) for n in status.nodes}
    return owned


@app.command("gc")
def gc_command(yes: Annotated[bool, typer.Option("--yes", help="delete without asking")] = False) -> None:
    """Delete local machines that no running cluster workflow owns."""
    owned = run_with_client(_owned)
    orphans = [m for m in list_all_local_machines() if (m["provider"], m["id"]) not in owned]
    if not orphans:
        console.print("no machine to collect")
        return
    names = ", ".join(f"{m['provider']}/{m['id']}" for m in orphans)
    if not yes and not typer.confirm(f"delete {names}?"):
        raise typer.Exit(1)
    try:
        removed = gc(owned)
    except LocalProviderError as err:
        fail(str(err))
    console.print(f"deleted {', '.join(removed)}", highlight=False)


@app.command("rm")
def rm_command(
    machines: Annotated[list[str] | None, typer.Argument(help="PROVIDER/ID of machines to delete")] = None,
    all_: Annotated[bool, typer.Option("--all", help="delete every local machine and bridge on this host")] = False,
) -> None:
    """Delete local machines now, whoever owns them (their clusters will see them gone)."""
    if not machines and not all_:
        fail("name machines as PROVIDER/ID, or pass --all")
    try:
        found = list_all_local_machines()
        wanted = found if all_ else [m for m in found if f"{m['provider']}/{m['id']}" in set(machines or [])]
        missing = set(machines or []) - {f"{m['provider']}/{m['id']}" for m in found}
        if missing:
            fail(f"no local machine {', '.join(sorted(missing))} (see `orbiter machines ls`)")
        removed = gc({(m["provider"], m["id"]) for m in found if m not in wanted})
        if all_:
            for provider in all_providers():
                with contextlib.suppress(LocalProviderError):
                    provider.destroy_network()
    except LocalProviderError as err:
        fail(str(err))
    console.print(f"deleted {', '.join(removed) or 'nothing'}", highlight=False)
