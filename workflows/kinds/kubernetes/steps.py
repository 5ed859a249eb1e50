"""The kubernetes runbook's steps, in the order they run.

packages -> upgrade (a version change, minor by minor: control planes one at a time, then
workers in batches) -> machines -> node software (containerd, kubelet/kubeadm/kubectl held,
sysctls, keepalived) -> init on the first control plane (once: an admin.conf means done) -> the
CNI -> control planes join one at a time -> workers join in batches -> health gate -> operator
reboots -> workers removed (from the end: drain, kubeadm reset, delete the node, release) ->
control planes removed one at a time, each behind a health gate -> observe. Every step observes
before it acts, so a resumed reconcile repeats nothing.
"""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kinds.kubernetes import uncordon
    from orbiter.activities.machines import machine_boot_id, reboot_machine
    from orbiter.models.kinds import PlannedStep, Refused, View
    from orbiter.models.kinds.kubernetes import node
    from orbiter.models.kinds.kubernetes.messages import NodeActionInput
    from orbiter.models.kinds.kubernetes.spec import CONTROL_PLANE, CONTROL_PLANE_GROUP, WORKER, K8sMember
    from orbiter.models.kinds.kubernetes.versions import check_skew
    from orbiter.models.provision import BootIdInput, RebootMachineInput

from ...osupdates import OsUpdates
from ...runbook import Step
from . import balancer, plan
from .reconcile import KUBE_RETRY, KubernetesReconcile
from .upgrade import Upgrade

R = KubernetesReconcile


def refusals(view: View) -> None:
    """Changes kubeadm cannot make, refused before any step runs."""
    spec = plan.spec_of(view)
    have = plan.running_versions(view)
    if have and (refused := check_skew(have[-1], spec.version)):
        raise Refused(refused)
    if plan.joined(view) and view.applied is not None:
        was, now = view.applied.control_plane_endpoint, spec.control_plane_endpoint
        if was != now:
            def text(e: object) -> str:
                return "none" if e is None else e.model_dump_json(exclude_none=True)  # type: ignore[attr-defined]

            raise Refused(f"controlPlaneEndpoint of {view.cluster} changed from {text(was)} to {text(now)}: kubeadm"
                          " fixes the endpoint when a cluster is created (certificates, kubeconfigs); put it back")
    for name in plan.replacing(view):
        cp = next((n for n in view.nodes if n.machine == name and n.role == CONTROL_PLANE), None)
        if cp is not None and spec.control_plane_endpoint is None:
            raise Refused(f"replace {name}: a cluster without controlPlaneEndpoint is reached at its control plane's"
                          " address, which a replacement cannot keep: set controlPlaneEndpoint when creating a cluster")


class Packages(Step[R]):
    id = "packages"

    def plan(self, view: View) -> list[PlannedStep]:
        refusals(view)
        spec = plan.spec_of(view)
        providers = ", ".join(dict.fromkeys(ref.provider for _, ref in spec.groups()))
        return [self.item("packages", f"kubelet, kubeadm, kubectl {spec.version} and containerd for {providers}",
                          changes=False)]

    async def run(self, r: R, item: PlannedStep) -> None:
        for provider in dict.fromkeys(ref.provider for _, ref in r.spec.groups()):
            wanted = {p: r.spec.version.lstrip("v") for p in node.KUBE_PACKAGES}
            wanted[node.CONTAINERD] = "*"
            if r.vip is not None:
                wanted |= {p: "*" for p in node.KEEPALIVED_PACKAGES}
            prepared = await r.fleet.packages(provider, wanted)
            r.versions[provider], r.apt_sources[provider] = prepared.versions, prepared.apt_source


class Machines(Step[R]):
    """Member records first (durable before any machine exists), then the machines, and for a VIP
    the interface that carries each control plane's address."""

    id = "machines"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item(f"machines {', '.join(names)}", f"{len(names)} machine(s) for {group}", machines=names,
                          group=group) for group, names in plan.new_machines(view)]

    async def run(self, r: R, item: PlannedStep) -> None:
        assert item.group is not None
        ref = dict(r.spec.groups())[item.group]
        role = CONTROL_PLANE if item.group == CONTROL_PLANE_GROUP else WORKER
        for name in item.machines:
            if r.member(name) is None:
                r.members.append(K8sMember(name=name, provider=ref.provider, pool=ref.pool, role=role,
                                           group=item.group))
        await r.acquire([m for m in r.members if m.name not in r.ctx.state.machines])
        await r.network_facts()


class NodeSoftware(Step[R]):
    id = "node-software"

    def plan(self, view: View) -> list[PlannedStep]:
        new = [name for _, names in plan.new_machines(view) for name in names]
        what = f"on {', '.join(new)}" if new else "kept as desired on every machine"
        return [self.item("node software", f"containerd, kubelet, kubeadm, kubectl and kernel settings {what}",
                          changes=bool(new))]

    async def run(self, r: R, item: PlannedStep) -> None:
        await r.acquire([m for m in r.members if m.name not in r.ctx.state.machines])
        await r.network_facts()
        await r.converge([m for m in r.members if r.changed(m)])


class Init(Step[R]):
    id = "init"

    def plan(self, view: View) -> list[PlannedStep]:
        if plan.joined(view):
            return []
        first = plan.first_control_plane(view)
        return [self.item(f"init {first}", "kubeadm init on the first control plane; the admin kubeconfig becomes"
                          " a secret", machines=[first])]

    async def run(self, r: R, item: PlannedStep) -> None:
        first = r.control_planes[0]
        if not first.joined:
            await r.init(first)
        await balancer.serving(r, wait_healthy=True)  # the others join through it


class Cni(Step[R]):
    id = "cni"

    def plan(self, view: View) -> list[PlannedStep]:
        spec = plan.spec_of(view)
        manifest = spec.cni.manifest or f"upstream {spec.networking.network}"
        first = not plan.joined(view)
        changed = view.applied is not None and view.applied.cni.manifest != spec.cni.manifest
        return [self.item(f"cni {spec.networking.network}", f"kubectl apply {manifest} (a repository file again"
                          " when its content changed)", changes=first or changed)]

    async def run(self, r: R, item: PlannedStep) -> None:
        await r.cni()


class JoinControlPlane(Step[R]):
    id = "join-control-plane"

    def plan(self, view: View) -> list[PlannedStep]:
        done = plan.joined(view) | {plan.first_control_plane(view)}
        return [self.item(f"join control plane {name}", "kubeadm join --control-plane with a fresh token and"
                          " certificate key", machines=[name])
                for name in plan.kept(view, CONTROL_PLANE_GROUP) if name not in done]

    async def run(self, r: R, item: PlannedStep) -> None:
        member = r.member(item.machines[0])
        if member is not None and not member.joined:
            await r.join([member], control_plane=True)
        await balancer.serving(r)


class JoinWorkers(Step[R]):
    id = "join-workers"

    def plan(self, view: View) -> list[PlannedStep]:
        spec = plan.spec_of(view)
        done = plan.joined(view)
        pending = [name for group in spec.workers for name in plan.kept(view, group) if name not in done]
        size = max(1, view.max_parallel)
        batches = [pending[i: i + size] for i in range(0, len(pending), size)]
        return [self.item(f"join workers {', '.join(batch)}", "kubeadm join, a token each, in parallel",
                          machines=batch) for batch in batches]

    async def run(self, r: R, item: PlannedStep) -> None:
        members = [m for name in item.machines if (m := r.member(name)) is not None and not m.joined]
        if members:
            await r.join(members, control_plane=False)


class HealthGate(Step[R]):
    id = "health-gate"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("health gate", "every node Ready; on each control plane the API server's /readyz and"
                          " its etcd member", changes=False)]

    async def run(self, r: R, item: PlannedStep) -> None:
        await r.health_gate()


class Reboot(Step[R]):
    """`orbiter reboot`: drain, reboot through the provider, wait until Ready, uncordon."""

    id = "reboot"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item(f"reboot {name}", "drain, reboot, wait until Ready, uncordon", machines=[name])
                for name in plan.rebooting(view)]

    async def run(self, r: R, item: PlannedStep) -> None:
        name = item.machines[0]
        member, machine = r.member(name), r.ctx.state.machines.get(name)
        if member is not None and machine is not None:
            if member.reboot_from is None:
                # Recorded before anything happens: a resumed reboot never reboots a second time.
                seen = await workflow.execute_activity(
                    machine_boot_id, BootIdInput(machine=machine, secrets=r.ctx.desired.secrets),
                    start_to_close_timeout=timedelta(minutes=1), retry_policy=KUBE_RETRY, summary=f"boot id of {name}")
                member.reboot_from = seen.boot_id
            if member.joined:
                await r.drain(member)
            await workflow.execute_activity(
                reboot_machine,
                RebootMachineInput(provider_name=member.provider, provider=r.ctx.provider(member.provider),
                                   machine=machine, secrets=r.ctx.desired.secrets, boot_id=member.reboot_from),
                start_to_close_timeout=timedelta(minutes=12),
                retry_policy=KUBE_RETRY,
                summary=f"reboot {name}",
            )
            if member.joined:
                await r.nodes(wait_ready=[name])
                await workflow.execute_activity(
                    uncordon, NodeActionInput(target=r.target(), node=name),
                    start_to_close_timeout=timedelta(minutes=2), retry_policy=KUBE_RETRY, summary=f"uncordon {name}")
            member.reboot_from = None
        r.ctx.state.commands = [c for c in r.ctx.state.commands if not (c.action == "reboot" and c.machine == name)]
        await r.observe_quietly()


class RemoveWorker(Step[R]):
    id = "remove-worker"
    gate = "scaleDown"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item(f"remove worker {name}", "cordon and drain, kubeadm reset, delete the node, release the"
                          " machine", machines=[name]) for name in plan.surplus(view, WORKER)]

    async def run(self, r: R, item: PlannedStep) -> None:
        if (member := r.member(item.machines[0])) is not None:
            await r.remove(member)


class RemoveControlPlane(Step[R]):
    """One at a time, each behind a health gate: never take a member from an etcd that is not whole."""

    id = "remove-control-plane"
    gate = "scaleDown"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item(f"remove control plane {name}", "health gate, then drain, kubeadm reset (its etcd"
                          " member leaves), delete the node, release", machines=[name])
                for name in plan.surplus(view, CONTROL_PLANE)]

    async def run(self, r: R, item: PlannedStep) -> None:
        if (member := r.member(item.machines[0])) is not None:
            await r.health_gate()
            await r.remove(member)


class Observe(Step[R]):
    id = "observe"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("observe", "nodes, versions and readiness into current.yml", changes=False)]

    async def run(self, r: R, item: PlannedStep) -> None:
        await r.observe(await r.nodes())


class Destroy(Step[R]):
    """kubeadm reset everywhere (workers first), machines released; the kubeconfig secret stays."""

    id = "destroy"
    gate = "destroy"

    def plan(self, view: View) -> list[PlannedStep]:
        names = [n.machine for n in view.nodes]
        return [self.item("destroy", f"kubeadm reset and release {', '.join(names) or 'nothing'}; the secrets stay",
                          changes=bool(names), machines=names)]

    async def run(self, r: R, item: PlannedStep) -> None:
        for member in list(reversed(r.workers)) + list(reversed(r.control_planes)):
            if member.joined:
                try:
                    await r.reset(member)
                except Exception:  # noqa: BLE001 - a machine already gone needs no reset
                    workflow.logger.info("kubeadm reset of %s failed; releasing it anyway", member.name)
            await r.release(member)
            r.kind.members = [m for m in r.members if m is not member]
        r.ctx.state.status.nodes = []
        r.ctx.state.status.endpoints = []


STEPS: tuple[Step[R], ...] = (
    Packages(), Upgrade(), Machines(), NodeSoftware(), balancer.LoadBalancer(), Init(), Cni(), JoinControlPlane(),
    JoinWorkers(), HealthGate(), Reboot(), OsUpdates(), RemoveWorker(), RemoveControlPlane(), Observe(),
)
DESTROY_STEPS: tuple[Step[R], ...] = (Destroy(), balancer.RemoveLoadBalancer())
