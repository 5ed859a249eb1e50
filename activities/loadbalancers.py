"""Load balancer activities: a provider's TCP load balancer in front of a cluster's machines.

A kind asks for one when its provider can("load-balancer") and never knows which provider makes
it. Every call is idempotent: the provider finds its resources again by name, so a retry after a
crash at any line creates nothing twice and removes what is left.
"""

from temporalio import activity

from orbiter.models.loadbalancers import (
    LoadBalancerInput,
    LoadBalancerMembersInput,
    LoadBalancerMembersResult,
    LoadBalancerResult,
)

from .machines import _as_application_errors
from .progress import heartbeating
from .providers import runtime_for


@activity.defn
def ensure_load_balancer(input: LoadBalancerInput) -> LoadBalancerResult:
    with _as_application_errors(), heartbeating() as progress:
        runtime = runtime_for(input.provider_name, input.provider, input.secrets)
        return LoadBalancerResult(address=runtime.ensure_load_balancer(input, progress))


@activity.defn
def set_load_balancer_members(input: LoadBalancerMembersInput) -> LoadBalancerMembersResult:
    lb = input.balancer
    with _as_application_errors(), heartbeating() as progress:
        return runtime_for(lb.provider_name, lb.provider, lb.secrets).set_load_balancer_members(input, progress)


@activity.defn
def remove_load_balancer(input: LoadBalancerInput) -> None:
    with _as_application_errors(), heartbeating() as progress:
        runtime_for(input.provider_name, input.provider, input.secrets).remove_load_balancer(input, progress)


ACTIVITIES = [ensure_load_balancer, set_load_balancer_members, remove_load_balancer]
