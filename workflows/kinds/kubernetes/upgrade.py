"""A Kubernetes version change, minor by minor (kubeadm's skew rules): per hop, control planes
one at a time (`kubeadm upgrade apply` on the first, `kubeadm upgrade node` on the others), then
workers in batches of upgrade.maxUnavailable; each node: kubeadm package, kubeadm upgrade, drain,
kubelet and kubectl packages (the agent restarts kubelet), uncordon, health gate.

Which patch an intermediate minor gets is known only to the package repository, so its hop is a
pattern ("v1.30.*") until the first control plane's kubeadm names the patch it applied.
"""

import asyncio
import fnmatch
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kinds.kubernetes import kubeadm_upgrade, uncordon
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.kinds.kubernetes import node
    from orbiter.models.kinds.kubernetes.messages import KubeadmUpgradeInput, NodeActionInput
    from orbiter.models.kinds.kubernetes.spec import CONTROL_PLANE, K8sMember

from ...runbook import Step
from . import plan
from .reconcile import KUBE_RETRY, KubernetesReconcile


def at(version: str | None, target: str) -> bool:
    """Whether a node runs `target` ("v1.31.2", or a hop's pattern "v1.30.*")."""
    return fnmatch.fnmatchcase(version or "", target)


class Upgrade(Step[KubernetesReconcile]):
    id = "upgrade"
    gate = "upgrade"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        spec = plan.spec_of(view)
        versions = {n.machine: n.version for n in view.nodes}
        cps = [n.machine for n in view.nodes if n.role == CONTROL_PLANE and n.joined]
        workers = plan.workers_to_upgrade(view)
        items: list[PlannedStep] = []
        for hop in plan.hops(view):
            cp_todo = [m for m in cps if not at(versions[m], hop)]
            w_todo = [m for m in workers if not at(versions[m], hop)]
            if not cp_todo and not w_todo:
                continue
            if hop != spec.version:
                items.append(self.item(f"packages {plan.shown(hop)}", f"the highest {plan.shown(hop)} patch the"
                                       " package source offers", version=hop, gate=None, disruptive=False))
            items += [self.item(f"upgrade {m} to {plan.shown(hop)}", "kubeadm upgrade, drain, kubelet and kubectl,"
                                " uncordon, health gate", machines=[m], version=hop) for m in cp_todo]
            size = spec.upgrade.max_unavailable
            for i in range(0, len(w_todo), size):
                batch = w_todo[i: i + size]
                items.append(self.item(f"upgrade {', '.join(batch)} to {plan.shown(hop)}", "kubeadm upgrade node,"
                                       " drain, kubelet and kubectl, uncordon, health gate", machines=batch,
                                       version=hop))
        return items

    async def run(self, r: KubernetesReconcile, item: PlannedStep) -> None:
        hop = item.version
        assert hop is not None
        if not item.machines:
            hop_versions: dict[str, dict[str, str]] = {}
            for provider in dict.fromkeys(m.provider for m in r.members if m.joined):
                prepared = await r.fleet.packages(provider, {p: hop.lstrip("v") for p in node.KUBE_PACKAGES})
                hop_versions[provider] = r.versions[provider] | prepared.versions
            r.hop_versions[hop] = hop_versions
            return
        members = [m for name in item.machines if (m := r.member(name)) is not None and m.joined
                   and not at(m.version, hop)]
        await asyncio.gather(*(self.upgrade_node(r, m, hop) for m in members))

    async def upgrade_node(self, r: KubernetesReconcile, member: K8sMember, hop: str) -> None:
        applied = next((m.version for m in r.control_planes if m.joined and at(m.version, hop)), None)
        apply = member.role == CONTROL_PLANE and applied is None
        version = applied or hop
        new = r.hop_versions.get(hop, r.versions)[member.provider]
        member.apt["kubeadm"] = new["kubeadm"]
        await r.converge([member])
        result = await workflow.execute_activity(
            kubeadm_upgrade,
            KubeadmUpgradeInput(target=r.target(), machine=r.ctx.state.machines[member.name], version=version,
                                apply=apply),
            start_to_close_timeout=timedelta(minutes=15),
            retry_policy=KUBE_RETRY,
            summary=f"kubeadm upgrade {'apply' if apply else 'node'} {member.name}",
        )
        if "*" in version:
            version = result.version  # the patch this hop's repository offered
        await r.drain(member)
        member.apt["kubelet"], member.apt["kubectl"] = new["kubelet"], new["kubectl"]
        await r.converge([member])  # the agent restarts kubelet with its new package
        await workflow.execute_activity(
            uncordon, NodeActionInput(target=r.target(), node=member.name),
            start_to_close_timeout=timedelta(minutes=2), retry_policy=KUBE_RETRY, summary=f"uncordon {member.name}")
        member.version = version
        await r.observe(await r.nodes(wait_ready=[member.name], version=version))
