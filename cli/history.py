"""`orbiter history`: the commits applied to each cluster, newest first.

Read from current.yml's git history (every version orbiter wrote lists the cluster's latest
reconciles) and from the cluster's live state for the one under way: nothing is kept anywhere
else, and a history survives a worker's restart, a continue-as-new and Temporal's retention.
"""

import subprocess
from typing import Annotated

import typer
from rich.table import Table
from temporalio.client import Client
from temporalio.service import RPCError

from orbiter.activities.repo import GitError, git, git_env, mirror
from orbiter.models.change import ChangeRecord
from orbiter.models.current import OrbStatus
from orbiter.models.gitops import OrbInfo
from orbiter.models.refs import RepoRef
from orbiter.workflows.gitops import GitOpsWorkflow

from .common import Output, OutputOpt, console, fail, print_json
from .connection import orb_of, run_with_client
from .gitops import BranchOpt, OptionalRepoOpt

Key = tuple[str, str, str]  # cluster, commit, started


def current_versions(repo: RepoRef, limit: int) -> list[str]:
    """current.yml as orbiter wrote it, oldest first, read in one `git cat-file --batch`."""
    path = mirror(repo)
    git(repo, "fetch", "-q", "origin", f"+refs/heads/{repo.branch}:refs/heads/{repo.branch}", cwd=path)
    commits = git(repo, "log", f"-n{limit}", "--format=%H", repo.branch, "--", "current.yml", cwd=path).stdout.split()
    if not commits:
        return []
    request = "".join(f"{c}:current.yml\n" for c in reversed(commits)).encode()
    out = subprocess.run(["git", "cat-file", "--batch"], input=request, cwd=path, env=git_env(repo),
                         capture_output=True, check=True, timeout=120).stdout
    texts, pos = [], 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].split()
        if header[-1] == b"missing":
            pos = header_end + 1
            continue
        size = int(header[2])
        texts.append(out[header_end + 1: header_end + 1 + size].decode())
        pos = header_end + 1 + size + 1
    return texts


def collect(versions: list[OrbStatus], cluster: str | None) -> list[tuple[str, ChangeRecord]]:
    """Every reconcile seen in any version, the latest word on each (a later version has its end)."""
    seen: dict[Key, tuple[str, ChangeRecord]] = {}
    order: dict[Key, int] = {}  # first seen: reconciles started in the same millisecond keep their order
    for status in versions:
        for name, c in status.clusters.items():
            if cluster is not None and name != cluster:
                continue
            for record in c.history:
                key = (name, record.commit, record.started)
                seen[key] = (name, record)
                order.setdefault(key, len(order))
    keys = sorted(seen, key=lambda k: (k[2], order[k]), reverse=True)
    return [seen[k] for k in keys]


def history(
    cluster: Annotated[str | None, typer.Argument(help="only this cluster (NAME or ORB/NAME)")] = None,
    repo: OptionalRepoOpt = None, branch: BranchOpt = "main",
    limit: Annotated[int, typer.Option("--limit", help="versions of current.yml to read, newest first")] = 500,
    output: OutputOpt = Output.table,
) -> None:
    """The commits applied to the orb's clusters, newest first: each with the steps that ran, who
    approved it, when it started and ended, and how it ended (Ready, Blocked, Rejected, Superseded).
    Rollback is `git revert` of the commit; `history` shows it apply like any other."""

    async def body(client: Client) -> tuple[OrbInfo, OrbStatus, str | None]:
        wid, only = await orb_of(client, repo, branch, cluster)
        handle = client.get_workflow_handle(wid)
        try:
            return await handle.query(GitOpsWorkflow.about), await handle.query(GitOpsWorkflow.status), only
        except RPCError as err:
            fail(f"cannot ask {handle.id}: {err.message}")

    info, live, only = run_with_client(body)
    if only is not None and only not in live.clusters:
        fail(f"no cluster {only!r} in orb {live.orb} (clusters: {', '.join(live.clusters) or 'none'})")
    try:
        versions = [OrbStatus.from_yaml(text) for text in current_versions(info.repo, limit)]
    except (GitError, subprocess.SubprocessError) as err:
        fail(f"cannot read the history of current.yml in {info.repo.url}: {err}")
    records = collect([*versions, live], only)
    if output == Output.json:
        print_json([{"cluster": name, **r.model_dump(mode="json", by_alias=True)} for name, r in records])
        return
    table = Table("started", "cluster", "commit", "result", "approved by", "steps")
    for name, r in records:
        subject = f" {r.subject}" if r.subject else ""
        table.add_row(r.started, name, f"{r.commit[:12]}{subject}", r.result or "running", r.approved_by or "-",
                      ", ".join(r.steps) or (r.error or "-"))
    console.print(table)
