"""The kubernetes runbook's planning: which machines each step acts on, from a View alone.

The same functions serve `orbiter plan` and the workflow, so they must only read the View:
nodes as current.yml lists them (in pool order, each with its role, group and whether it
joined), the desired spec, the spec last applied and the operator commands waiting.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.current import NodeStatus
    from orbiter.models.kinds import View
    from orbiter.models.kinds.kubernetes.spec import CONTROL_PLANE, CONTROL_PLANE_GROUP, WORKER, KubernetesCluster
    from orbiter.models.kinds.kubernetes.versions import intermediate_minors, parse_version


def spec_of(view: View) -> KubernetesCluster:
    return view.spec


def replacing(view: View) -> set[str]:
    return {c.split(" ", 1)[1] for c in view.commands if c.startswith("replace ")}


def rebooting(view: View) -> list[str]:
    return [c.split(" ", 1)[1] for c in view.commands if c.startswith("reboot ")]


def in_group(view: View, group: str) -> list[NodeStatus]:
    """A group's nodes that stay: those `orbiter replace` marked are on their way out."""
    leaving = replacing(view)
    return [n for n in view.nodes if n.group == group and n.machine not in leaving]


def new_machines(view: View) -> list[tuple[str, list[str]]]:
    """(group, machine names) of the machines a reconcile adds, per group, in pool order."""
    spec = spec_of(view)
    used = {n.machine for n in view.nodes}
    out = []
    for group, ref in spec.groups():
        missing = ref.nodes - len(in_group(view, group))
        if missing > 0:
            names = view.new_machines(ref, used, missing)
            used |= set(names)
            out.append((group, names))
    return out


def kept(view: View, group: str) -> list[str]:
    """Names of a group's machines that stay, existing ones first, then those this reconcile adds."""
    spec = spec_of(view)
    size = spec.control_plane.nodes if group == CONTROL_PLANE_GROUP else spec.workers[group].nodes
    added = dict(new_machines(view)).get(group, [])
    return ([n.machine for n in in_group(view, group)] + added)[:size]


def joined(view: View) -> set[str]:
    return {n.machine for n in view.nodes if n.joined}


def first_control_plane(view: View) -> str:
    cps = [n.machine for n in view.nodes if n.role == CONTROL_PLANE] + dict(new_machines(view)).get(
        CONTROL_PLANE_GROUP, [])
    return cps[0]


def surplus(view: View, role: str) -> list[str]:
    """Machines of a role beyond their group's size, of a group no longer desired or replaced, from the end."""
    spec = spec_of(view)
    groups = [CONTROL_PLANE_GROUP] if role == CONTROL_PLANE else list(spec.workers)
    stay = {name for group in groups for name in kept(view, group)}
    return [n.machine for n in reversed(view.nodes) if n.role == role and n.machine not in stay]


def running_versions(view: View) -> list[str]:
    """The versions joined nodes run, lowest first ("v1.30.6")."""
    return sorted({n.version for n in view.nodes if n.joined and n.version}, key=parse_version)


def hops(view: View) -> list[str]:
    """The versions an upgrade passes through: each intermediate minor's pattern ("v1.30.*"), then
    the desired version; [] when every joined node runs the desired version."""
    spec = spec_of(view)
    have = running_versions(view)
    if have in ([], [spec.version]):
        return []
    return ["v" + p for p in intermediate_minors(have[0], spec.version)] + [spec.version]


def shown(version: str) -> str:
    """"v1.30.*" as a person reads it: "v1.30"."""
    return version[:-2] if version.endswith(".*") else version


def workers_to_upgrade(view: View) -> list[str]:
    """Joined workers an upgrade moves: not those this reconcile removes (they leave drained)."""
    leaving = set(surplus(view, WORKER))
    return [n.machine for n in view.nodes if n.role == WORKER and n.joined and n.machine not in leaving]
