"""controlPlaneEndpoint {loadBalancer: true}: the control planes' provider puts a TCP load balancer in
front of the API servers, and its address is the cluster's endpoint from `kubeadm init` on.

The address is recorded in the kind's state the first time and never changes afterwards (kubeadm
writes it into certificates and kubeconfigs). The first control plane joins the balancer before
`kubeadm init` (so init reaches its API through it), and the balancer is healthy before any other
machine joins through it; later control planes join it once they have joined the cluster, and
leave it before they are drained. Destroy removes it after the machines, in reverse dependency
order. Every piece is found again by name after a crash, so each call here is safe to repeat.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.loadbalancers import ensure_load_balancer, remove_load_balancer, set_load_balancer_members
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.kinds.kubernetes.kubeadm_config import API_PORT
    from orbiter.models.kinds.kubernetes.spec import KubernetesCluster
    from orbiter.models.loadbalancers import LoadBalancerInput, LoadBalancerMembersInput

from ...context import Blocked
from ...runbook import Step
from . import plan

NAME = "api"
LB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30),
                       maximum_attempts=5, non_retryable_error_types=["SecretsError"])


def balancer_input(r: Any) -> LoadBalancerInput:
    spec: KubernetesCluster = r.spec
    provider = spec.control_plane.provider
    return LoadBalancerInput(orb=r.ctx.orb, cluster=r.name, name=NAME, port=API_PORT, provider_name=provider,
                             provider=r.ctx.provider(provider), pool=spec.control_plane.pool,
                             secrets=r.ctx.desired.secrets)


async def ensure(r: Any) -> None:
    """Create what is missing of the balancer; its address becomes (and stays) the endpoint."""
    result = await workflow.execute_activity(
        ensure_load_balancer, balancer_input(r), start_to_close_timeout=timedelta(minutes=20),
        retry_policy=LB_RETRY, summary=f"load balancer {NAME}")
    if r.kind.load_balancer is None:
        r.kind.load_balancer = result.address
    elif r.kind.load_balancer != result.address:
        raise Blocked(f"the load balancer of {r.name} answers at {result.address}, but the cluster was created with"
                      f" {r.kind.load_balancer} as its endpoint (kubeadm fixed it): give the balancer that address"
                      " back, or destroy and recreate the cluster")


async def members(r: Any, names: list[str], wait_healthy: bool = False) -> None:
    """The balancer forwards to exactly these control planes."""
    await workflow.execute_activity(
        set_load_balancer_members, LoadBalancerMembersInput(balancer=balancer_input(r), machines=names,
                                                            wait_healthy=wait_healthy),
        start_to_close_timeout=timedelta(minutes=10), retry_policy=LB_RETRY,
        summary=f"load balancer {NAME}: {', '.join(names) or 'no members'}")


async def serving(r: Any, wait_healthy: bool = False) -> None:
    """The joined control planes that stay, behind the balancer (a no-op without one)."""
    if r.spec.load_balanced():
        stay = [m.name for m in r.control_planes if m.joined and m.name not in r.leaving
                and m.name in r.ctx.state.machines]
        await members(r, stay, wait_healthy)


class LoadBalancer(Step[Any]):
    id = "load-balancer"

    def plan(self, view: View) -> list[PlannedStep]:
        spec = plan.spec_of(view)
        if not spec.load_balanced() or spec.destroyed:
            return []
        provider = spec.control_plane.provider
        return [self.item(f"load balancer {NAME}", f"address, health check on {API_PORT}, instance groups, backend"
                          f" service, forwarding rule of provider {provider}: its address is the API endpoint",
                          changes=not plan.joined(view))]

    async def run(self, r: Any, item: PlannedStep) -> None:
        await ensure(r)
        first = r.control_planes[0] if r.control_planes else None
        if first is not None and not first.joined:
            # kubeadm init reaches its own API through the balancer: the first control plane is in it.
            await members(r, [first.name])


class RemoveLoadBalancer(Step[Any]):
    id = "remove-load-balancer"

    def plan(self, view: View) -> list[PlannedStep]:
        spec = plan.spec_of(view)
        if not spec.load_balanced() and not (view.applied is not None and view.applied.load_balanced()):
            return []
        return [self.item(f"remove load balancer {NAME}", "forwarding rule, backend service, instance groups,"
                          " health check, address, in that order")]

    async def run(self, r: Any, item: PlannedStep) -> None:
        await workflow.execute_activity(
            remove_load_balancer, balancer_input(r), start_to_close_timeout=timedelta(minutes=20),
            retry_policy=LB_RETRY, summary=f"remove load balancer {NAME}")
        r.kind.load_balancer = None
