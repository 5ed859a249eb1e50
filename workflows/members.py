"""A ClusterWorkflow's bookkeeping of its members: machines found again after a fresh start, the
nodes current.yml lists, and operator commands (replace, reboot) waiting for a reconcile."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.machines import find_machines
    from orbiter.models.cluster import ClusterState, DesiredUpdate, MachineAction, MachineCommand
    from orbiter.models.current import NodeStatus
    from orbiter.models.kinds import KINDS
    from orbiter.models.provision import FindMachinesInput


async def find_members(orb: str, cluster: str, state: ClusterState, desired: DesiredUpdate) -> None:
    """A workflow that starts afresh (an orb taken off again, orbiter upgraded) first asks the
    providers for machines they already hold for this cluster: they stay its members."""
    assert state.kind is not None
    kind = KINDS[desired.spec.kind]
    for path, ref in desired.spec.pools():
        if not desired.providers[ref.provider].can("creates-machines"):
            continue  # its machines are listed in desired.yml: nothing to find
        found = await workflow.execute_activity(
            find_machines,
            FindMachinesInput(orb=orb, cluster=cluster, kind=kind.name,
                              provider_name=ref.provider, provider=desired.providers[ref.provider], pool=ref.pool,
                              secrets=desired.secrets),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=5),
            summary=f"machines of {cluster} in pool {ref.pool}",
        )
        role, group = desired.spec.member_role(path)
        for name in found.machine_ids:
            state.kind.members.append(kind.member(name=name, provider=ref.provider, pool=ref.pool, role=role,
                                                  group=group))


def sync_nodes(state: ClusterState) -> None:
    """status.nodes lists every member (also one whose step was cut short before it was
    observed), so current.yml and the plan see the members the workflow has."""
    members = state.kind.members if state.kind else []
    seen = {n.machine: n for n in state.status.nodes}
    nodes: list[NodeStatus] = []
    for m in members:
        node = seen.get(m.name)
        if node is None:
            machine = state.machines.get(m.name)
            node = NodeStatus(machine=m.name, ip=machine.ip if machine else "", role=m.role, group=m.group,
                              pool=m.pool, provider=m.provider)
        node.joined = m.joined
        nodes.append(node)
    state.status.nodes = nodes


def command_refused(state: ClusterState, action: MachineAction, machine: str) -> str | None:
    desired = state.desired
    if desired is None or action not in KINDS[desired.spec.kind].commands:
        takes = sorted(name for name, kind in KINDS.items() if action in kind.commands)
        return f"{action} works on {', '.join(takes)} clusters"
    if desired.spec.destroyed:
        return "the cluster is being destroyed"
    members = [m.name for m in state.kind.members] if state.kind else []
    if machine not in members:
        return f"{machine} is not a machine of this cluster (machines: {', '.join(members) or 'none'})"
    return None


def add_command(state: ClusterState, action: MachineAction, machine: str) -> str:
    command = MachineCommand(action=action, machine=machine)
    if command not in state.commands:
        state.commands.append(command)
    state.retry_requested = True  # a reconcile runs even if the cluster is Ready
    return {
        "replace": f"replacing {machine}: a new machine joins, then {machine} leaves",
        "reboot": f"rebooting {machine}: drain, reboot, wait until Ready, uncordon",
    }[action]
