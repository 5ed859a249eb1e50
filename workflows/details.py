"""What a cluster says about itself in words: the Web UI's current details of its workflow, and the
one-line message of a notification. Pure functions of the workflow's state."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import ClusterState
    from orbiter.models.notify import Event


def _commit(state: ClusterState) -> str:
    desired = state.desired
    if desired is None:
        return "no commit yet"
    subject = f' "{desired.subject}"' if desired.subject else ""
    return f"{desired.commit[:12]}{subject}"


def current_details(cluster: str, state: ClusterState) -> str:
    """Markdown for the Web UI: the phase, the step, and what the cluster waits for, with the signal
    that ends the wait (More Actions -> Send Signal)."""
    status = state.status
    lines = [f"**{cluster}**: {status.phase} at commit {_commit(state)}"]
    if status.step:
        lines.append(f"**Step:** {status.step}")
    if status.phase == "AwaitingApproval" and status.approval is not None:
        a = status.approval
        lines.append(f"**Waiting for:** approval of plan `{a.plan}`: {', '.join(a.needs)}")
        lines.append(f"**Plan:** {'; '.join(a.steps)}")
        lines.append(f'**To approve:** send signal `approve` with `{{"plan": "{a.plan}", "by": "<your name>"}}`'
                     f" (or `reject`); on the command line `orbiter approve {cluster} --plan {a.plan}`")
    elif status.phase == "AwaitingWindow":
        lines.append(f"**Waiting for:** its maintenance window; to go now send signal `apply_now` with"
                     f' `{{"by": "<your name>"}}`, or `orbiter apply-now {cluster}`')
    elif status.phase == "Blocked":
        lines.append(f"**Blocked:** {status.error}")
        lines.append("**To retry:** send signal `retry` once the cause is fixed, or `orbiter retry " + cluster + "`")
    elif status.phase == "Paused":
        lines.append("**Waiting for:** `orbiter resume` (signal `resume`)")
    return "\n\n".join(lines)


def notice_for(cluster: str, state: ClusterState, changes: list[str]) -> tuple[Event, str] | None:
    """The notification a phase change makes, if any: what changed (`changes`: the steps of the
    plan that change something), at which commit, and why."""
    status = state.status
    commit = _commit(state)
    a = status.approval
    if a is not None and a.state == "rejected" and state.desired is not None and a.commit == state.desired.commit:
        kept = (status.commit or "nothing")[:12]
        return "Rejected", f"plan {a.plan} for {commit} rejected by {a.by}: {cluster} stays at {kept}"
    if status.phase == "Ready":
        done = [s for s in status.done if s in changes] or ["no change"]
        return "Ready", f"{cluster} is Ready at {commit}: {', '.join(done)}"
    if status.phase == "Blocked":
        failed = status.plan[len(status.done)] if len(status.done) < len(status.plan) else None
        where = f" in step {failed!r}" if failed else ""
        return "Blocked", f"{cluster} is Blocked at {commit}{where}: {status.error}"
    if status.phase == "AwaitingApproval" and status.approval is not None:
        a = status.approval
        return "AwaitingApproval", (f"{cluster} awaits approval of plan {a.plan} for {commit}: {', '.join(a.needs)};"
                                    f" orbiter approve {cluster} --plan {a.plan}")
    if status.phase == "Destroyed":
        return "Destroyed", f"{cluster} is destroyed at {commit}: its machines are released"
    return None
