"""orbiter machines: the machines providers keep on this host (local machines: systemd-nspawn),
and with --repo-dir those the providers of an orb hold elsewhere (GCE instances)."""

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from temporalio.client import Client

from orbiter.activities.providers import ProviderError, runtime_classes
from orbiter.models.claims import CLAIM_FILE
from orbiter.models.ids import cluster_workflow_id
from orbiter.workflows.cluster import ClusterWorkflow

from .common import Output, OutputOpt, console, fail, print_json
from .connection import run_with_client

app = typer.Typer(help="Machines providers keep on this host (local machines: systemd-nspawn)",
                  no_args_is_help=True)


def host_machines() -> list[dict[str, str]]:
    try:
        return [row for runtime in runtime_classes() for row in runtime.host_machines()]
    except ProviderError as err:
        fail(str(err))


def _delete(rows: list[dict[str, str]]) -> list[str]:
    removed = []
    by_provider = {}
    for runtime in runtime_classes():
        for row in runtime.host_machines():
            by_provider[(row["provider"], row["id"])] = runtime
    for row in rows:
        by_provider[(row["provider"], row["id"])].delete_host_machine(row["provider"], row["id"])
        removed.append(f"{row['provider']}/{row['id']}")
    return removed


def orb_machines(repo_dir: Path) -> list[dict[str, str]]:
    """Machines the providers of the orb in a checkout hold elsewhere, asked with its secrets."""
    from orbiter.activities.providers import runtime_for
    from orbiter.models.load import DesiredStateError, load_desired
    from orbiter.models.secrets import SecretsError, read_secret
    from orbiter.worker.masterkey import load_master_key

    desired = repo_dir / "desired.yml"
    if not desired.exists():
        fail(f"{desired} does not exist")
    try:
        orb = load_desired(desired.read_text(), str(desired))
        secrets = repo_dir / "secrets.yml"
        text = secrets.read_text() if secrets.exists() else None
        master = load_master_key()
        rows = []
        for name, spec in orb.spec.providers.items():
            runtime = runtime_for(name, spec)
            rows += runtime.orb_machines(orb.metadata.name, lambda secret: read_secret(master, text, secret))
        return rows
    except (DesiredStateError, SecretsError, ProviderError) as err:
        fail(str(err).splitlines()[0])


RepoDirOpt = Annotated[Path | None, typer.Option(
    "--repo-dir", help="also the machines the providers of the orb in this checkout hold elsewhere (GCE)")]


@app.command("ls")
def ls(output: OutputOpt = Output.table, repo_dir: RepoDirOpt = None) -> None:
    """List the machines providers keep on this host, with state and IP; with --repo-dir also those
    the orb's providers hold elsewhere, with their zone."""
    machines = host_machines() + (orb_machines(repo_dir) if repo_dir is not None else [])
    if output == Output.json:
        print_json(machines)
        return
    table = Table("provider", "machine", "orb", "cluster", "pool", "zone", "ip", "state")
    for m in machines:
        table.add_row(m["provider"], m["id"], m.get("orb") or "-", m.get("cluster") or "-", m.get("pool") or "",
                      m.get("zone") or "-", m.get("ip") or "", m.get("state") or "")
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
    """Delete machines on this host that no running cluster workflow owns."""
    owned = run_with_client(_owned)
    orphans = [m for m in host_machines() if (m["provider"], m["id"]) not in owned]
    if not orphans:
        console.print("no machine to collect")
        return
    names = ", ".join(f"{m['provider']}/{m['id']}" for m in orphans)
    if not yes and not typer.confirm(f"delete {names}?"):
        raise typer.Exit(1)
    try:
        removed = _delete(orphans)
    except ProviderError as err:
        fail(str(err))
    console.print(f"deleted {', '.join(removed)}", highlight=False)


@app.command("rm")
def rm_command(
    machines: Annotated[list[str] | None, typer.Argument(help="PROVIDER/ID of machines to delete")] = None,
    all_: Annotated[bool, typer.Option("--all", help="delete every machine and network on this host")] = False,
) -> None:
    """Delete machines on this host now, whoever owns them (their clusters will see them gone)."""
    if not machines and not all_:
        fail("name machines as PROVIDER/ID, or pass --all")
    found = host_machines()
    names = {f"{m['provider']}/{m['id']}" for m in found}
    if missing := set(machines or []) - names:
        fail(f"no machine {', '.join(sorted(missing))} on this host (see `orbiter machines ls`)")
    wanted = found if all_ else [m for m in found if f"{m['provider']}/{m['id']}" in set(machines or [])]
    try:
        removed = _delete(wanted)
        if all_:
            for runtime in runtime_classes():
                runtime.clean_host()
    except ProviderError as err:
        fail(str(err))
    console.print(f"deleted {', '.join(removed) or 'nothing'}", highlight=False)


def _cluster_running(orb: str, cluster: str) -> bool | None:
    """Whether the orb's cluster workflow runs; None when no Temporal server answers to ask."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    from orbiter.models.secrets import SecretsError
    from orbiter.worker.client import ConnectError, connect

    async def ask() -> bool | None:
        try:
            client = await connect()
        except (ConnectError, SecretsError):
            return None
        try:
            desc = await client.get_workflow_handle(cluster_workflow_id(orb, cluster)).describe()
        except RPCError:
            return False
        return desc.status == WorkflowExecutionStatus.RUNNING

    return asyncio.run(ask())


@app.command("release")
def release_command(
    machine: Annotated[str, typer.Argument(help="PROVIDER/ID of a machine on this host")],
    force: Annotated[bool, typer.Option("--force", help="release it: without --force, only say what it would undo")]
    = False,
) -> None:
    """Release a machine whose orb is gone: say what it undoes, and with --force do it.

    A machine's orb releases it itself (scale down, destroy). This is for one left behind: its
    orb's repository or workflows are gone, and its claim keeps every other orb away from it."""
    found = {f"{m['provider']}/{m['id']}": m for m in host_machines()}
    row = found.get(machine)
    if row is None:
        fail(f"no machine {machine} on this host (see `orbiter machines ls`); a static machine is released by"
             f" removing {CLAIM_FILE} on it as root")
    orb, cluster = row.get("orb") or "", row.get("cluster") or ""
    owner = f"orb {orb} (cluster {cluster})" if orb else "no orb (a machine from before claims)"
    console.print(f"{machine} is claimed by {owner}; releasing it deletes the machine, its disk and its address",
                  highlight=False)
    if not force:
        fail("nothing done: pass --force to release it", code=1)
    # Without a Temporal server to ask, --force is the operator's word that the orb is gone.
    if orb and _cluster_running(orb, cluster):
        fail(f"the workflow of orb {orb}'s cluster {cluster} is running: let it release {machine} (scale down or"
             f" destroyed: true), or terminate {cluster_workflow_id(orb, cluster)} first")
    try:
        _delete([row])
    except ProviderError as err:
        fail(str(err))
    console.print(f"released {machine}", highlight=False)
