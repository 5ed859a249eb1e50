"""Messages of the load balancer activities: a provider's TCP load balancer in front of a cluster's
machines (the Kubernetes API servers), found by the names it derives from orb, cluster and purpose."""

from .base import Model
from .providers import Provider
from .refs import SecretsRef


class LoadBalancerInput(Model):
    orb: str
    cluster: str
    name: str  # what it balances, part of its resources' names: "api"
    port: int  # the port it forwards, and health-checks on the members
    provider_name: str
    provider: Provider
    pool: str  # where its members come from (their zones)
    secrets: SecretsRef


class LoadBalancerResult(Model):
    address: str  # what clients connect to


class LoadBalancerMembersInput(Model):
    balancer: LoadBalancerInput
    machines: list[str]  # ids of every machine it should forward to; others leave it
    wait_healthy: bool = False  # return once one member answers through it


class LoadBalancerMembersResult(Model):
    added: list[str] = []
    removed: list[str] = []
