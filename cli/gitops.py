"""takeoff, poke, status: the commands around the GitOps loop."""

import asyncio
import contextlib
from typing import Annotated

import typer
from rich.table import Table
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from orbiter.activities.repo import normalize_url
from orbiter.models.current import ClusterStatus, OrbStatus
from orbiter.models.gitops import GitOpsInput, PokeInput, SyncInput, SyncResult
from orbiter.models.ids import TASK_QUEUE, cluster_workflow_id, gitops_workflow_id
from orbiter.models.refs import RepoRef
from orbiter.workflows.cluster import error_line
from orbiter.workflows.gitops import GitOpsWorkflow

from .common import Output, OutputOpt, console, fail, print_json
from .connection import gitops_id, orb_of, run_with_client
from .updates import print_updates, with_workers

RepoOpt = Annotated[str, typer.Option("--repo", help="git URL: a path, file://, ssh:// or git@host:path")]
OptionalRepoOpt = Annotated[str | None, typer.Option("--repo", help="the watched repository (default: the only one)")]
BranchOpt = Annotated[str, typer.Option("--branch", help="branch holding desired.yml")]
RepoKeyOpt = Annotated[str | None, typer.Option("--repo-key", envvar="ORBITER_REPO_KEY_FILE",
                                                help="deploy key file for SSH URLs")]
KnownHostsOpt = Annotated[str | None, typer.Option("--known-hosts", envvar="ORBITER_REPO_KNOWN_HOSTS",
                                                   help="known_hosts file pinning the git server's host key")]


def repo_ref(repo: str, branch: str, key: str | None, known_hosts: str | None) -> RepoRef:
    return RepoRef(url=normalize_url(repo), branch=branch, key_file=key, known_hosts_file=known_hosts)


async def start_gitops(client: Client, ref: RepoRef) -> str:
    """Start the GitOps workflow of a repo (or find it running) and return its id."""
    wid = gitops_workflow_id(ref.url, ref.branch)
    await client.start_workflow(
        GitOpsWorkflow.run, GitOpsInput(repo=ref), id=wid, task_queue=TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"watching {ref.url} ({ref.branch})",
    )
    return wid


def takeoff(repo: RepoOpt, branch: BranchOpt = "main", repo_key: RepoKeyOpt = None,
            known_hosts: KnownHostsOpt = None) -> None:
    """Start watching a repository: every push to BRANCH is reconciled. A second takeoff is a no-op."""
    ref = repo_ref(repo, branch, repo_key, known_hosts)

    async def body(client: Client) -> None:
        wid = gitops_workflow_id(ref.url, ref.branch)
        try:
            desc = await client.get_workflow_handle(wid).describe()
            if desc.status == WorkflowExecutionStatus.RUNNING:
                console.print(f"already watching {ref.url} ({ref.branch}) as workflow {wid}", highlight=False)
                return
        except RPCError:
            pass
        await start_gitops(client, ref)
        console.print(f"watching {ref.url} ({ref.branch}) as workflow {wid}", highlight=False)

    run_with_client(body)


def poke(repo: OptionalRepoOpt = None, branch: BranchOpt = "main",
         wait: Annotated[bool, typer.Option("--wait", help="wait until the pushed commit is applied; "
                                            "exit 1 if a cluster is Blocked, Paused or awaiting an approval or"
                                            " window, or the commit or its plan rejected")] = False,
         timeout: Annotated[float, typer.Option("--timeout", help="seconds --wait waits at most")] = 3600,
         output: OutputOpt = Output.table) -> None:
    """Check the repository now instead of at the next poll (for git hooks and CI jobs)."""

    async def body(client: Client) -> tuple[str, SyncResult | None]:
        wid = await gitops_id(client, repo, branch)
        handle = client.get_workflow_handle(wid)
        try:
            if not wait:
                await handle.signal(GitOpsWorkflow.poke, PokeInput())
                return wid, None
            return wid, await asyncio.wait_for(handle.execute_update(GitOpsWorkflow.sync, SyncInput()), timeout)
        except TimeoutError:
            fail(f"{wid}: not settled within {timeout:g}s; `orbiter status` shows where it is")
        except (RPCError, WorkflowUpdateFailedError) as err:
            message = err.message if isinstance(err, RPCError) else str(err.cause or err)
            fail(f"cannot poke {wid}: {message}; is the repository watched (`orbiter takeoff`)?")

    wid, result = run_with_client(body)
    if result is None:
        console.print(f"poked {wid}", highlight=False)
        return
    print_status(result.status, output)
    if not result.ok:
        raise typer.Exit(1)


ACTIVE_PHASES = ("Reconciling", "Destroying")


async def live_progress(client: Client, orb: OrbStatus) -> dict[str, str]:
    """The latest progress line of each working cluster's running activity (its heartbeat), and
    the attempt and last error of one being retried: what a long step is doing right now."""

    async def one(name: str) -> tuple[str, str | None]:
        try:
            desc = await client.get_workflow_handle(cluster_workflow_id(orb.orb or "", name)).describe()
        except RPCError:
            return name, None
        lines = []
        for act in desc.raw_description.pending_activities:
            line = ""
            if act.heartbeat_details.payloads:
                with contextlib.suppress(Exception):  # a detail this CLI cannot decode: skip it
                    line = str((await client.data_converter.decode(act.heartbeat_details.payloads))[0])
            if act.attempt > 1:
                why = ""
                if act.HasField("last_failure"):
                    with contextlib.suppress(Exception):
                        why = ": " + error_line(await client.data_converter.decode_failure(act.last_failure))
                line += f"{' ' if line else ''}(attempt {act.attempt}{why})"
            if line:
                lines.append(line)
        return name, "; ".join(lines) or None

    active = [name for name, c in orb.clusters.items() if c.phase in ACTIVE_PHASES]
    found = await asyncio.gather(*(one(name) for name in active))
    return {name: line for name, line in found if line}


async def fetch_status(client: Client, repo: str | None, branch: str) -> OrbStatus:
    return await query_status(client, await gitops_id(client, repo, branch))


async def query_status(client: Client, wid: str) -> OrbStatus:
    try:
        return await client.get_workflow_handle(wid).query(GitOpsWorkflow.status)
    except RPCError as err:
        fail(f"cannot read the status of {wid}: {err.message}")


def status(cluster: Annotated[str | None, typer.Argument(help="show only this cluster (NAME or ORB/NAME)")] = None,
           repo: OptionalRepoOpt = None, branch: BranchOpt = "main", output: OutputOpt = Output.table) -> None:
    """Clusters with phase, commit, nodes and last error; the orb's rejected commit if any."""

    async def body(client: Client) -> tuple[OrbStatus, dict[str, str]]:
        wid, only = await orb_of(client, repo, branch, cluster)
        orb = await query_status(client, wid)
        if only is not None:
            if only not in orb.clusters:
                fail(f"no cluster {only!r} in orb {orb.orb} (clusters: {', '.join(orb.clusters) or 'none'})")
            orb = orb.model_copy(update={"clusters": {only: orb.clusters[only]}})
        orb = await with_workers(client, orb)
        return orb, await live_progress(client, orb)

    orb, progress = run_with_client(body)
    print_status(orb, output, progress)


def step_line(c: ClusterStatus, progress: str | None) -> str:
    """What a cluster is doing, as one line: its error, or its step and the running activity's progress."""
    if c.error:
        return c.error
    return " - ".join(part for part in (c.step, progress) if part)


def print_change_control(name: str, c: ClusterStatus) -> None:
    """A plan awaiting approval in full (what `orbiter approve` needs), or the last decision."""
    a = c.approval
    if a is not None and a.state == "awaiting" and c.phase == "AwaitingApproval":
        console.print(f"[yellow]{name} awaits approval[/] of plan [bold]{a.plan}[/] for commit {a.commit[:12]}:"
                      f" {', '.join(a.needs)}", highlight=False)
        for i, step in enumerate(a.steps, 1):
            console.print(f"  {i}. {step}", highlight=False)
        console.print(f"  approve: orbiter approve {name} --plan {a.plan}   reject: orbiter reject {name}"
                      f" --plan {a.plan}", highlight=False)
    elif a is not None:
        console.print(f"{name}: plan {a.plan} (commit {a.commit[:12]}) {a.state} by {a.by} at {a.at}", highlight=False)
    if c.override is not None:
        console.print(f"{name}: commit {c.override.commit[:12]} applied outside its windows by {c.override.by}"
                      f" at {c.override.at}", highlight=False)


def print_data_care(name: str, c: ClusterStatus) -> None:
    """Database sizes, alarms, certificate expiry, the latest backup and restore, where a kind
    reports them."""
    for warning in c.warnings:
        console.print(f"[yellow]{name}: warning: {warning}[/]", highlight=False)
    sized = [n for n in c.nodes if n.db_size is not None]
    if sized:
        console.print(f"{name}: database " + ", ".join(
            f"{n.machine} {n.db_size} bytes ({n.db_size_in_use if n.db_size_in_use is not None else '?'} in use)"
            for n in sized), highlight=False)
    for n in c.nodes:
        if n.alarms:
            console.print(f"[red]{name}: alarm {', '.join(n.alarms)} on {n.machine}[/]", highlight=False)
    expiring = sorted((n.cert_expiry, n.machine) for n in c.nodes if n.cert_expiry)
    if expiring:
        console.print(f"{name}: first certificate to expire: {expiring[0][1]} at {expiring[0][0]}", highlight=False)
    if c.backup is not None:
        b = c.backup
        console.print(f"{name}: latest backup {b.id} (revision {b.revision}, {b.size} bytes, {b.taken_at},"
                      f" {b.reason})", highlight=False)
    if c.restore is not None:
        r = c.restore
        state = f"done {r.ended}" if r.ended else "running"
        console.print(f"{name}: restored from {r.id} (revision {r.revision}) by {r.by or '-'}: {state}",
                      highlight=False)


def print_status(orb: OrbStatus, output: Output, progress: dict[str, str] | None = None) -> None:
    progress = progress or {}
    if output == Output.json:
        print_json(orb.status_json(progress))
        return
    console.print(f"orb [bold]{orb.orb or '?'}[/] at commit {(orb.commit or '-')[:12]}", highlight=False)
    if orb.rejected:
        console.print(f"[red]rejected {orb.rejected.commit[:12]}:[/] {orb.rejected.message}", highlight=False)
    if orb.error:
        console.print(f"[red]error:[/] {orb.error}", highlight=False)
    table = Table("cluster", "kind", "phase", "commit", "nodes", "step / error")
    for name, c in sorted(orb.clusters.items()):
        ready = sum(1 for n in c.nodes if n.ready)
        phase = {"Ready": "[green]Ready[/]", "Blocked": "[red]Blocked[/]"}.get(c.phase, c.phase)
        if c.orphaned:
            phase += " (orphaned)"
        table.add_row(name, c.kind, phase, (c.commit or "-")[:12], f"{ready}/{len(c.nodes)}",
                      step_line(c, progress.get(name)))
    console.print(table)
    print_updates(orb)
    for name, c in sorted(orb.clusters.items()):
        print_change_control(name, c)
        print_data_care(name, c)
    for name, c in sorted(orb.clusters.items()):
        if not c.nodes:
            continue
        nodes = Table("machine", "ip", "role", "version", "ready", title=f"{name} nodes", title_justify="left")
        for n in c.nodes:
            nodes.add_row(n.machine, n.ip, n.role, n.version or "-", "yes" if n.ready else "no")
        console.print(nodes)
