"""A regional internal TCP load balancer in front of a cluster's machines (the API servers).

Created in dependency order (address, health check and its firewall rule, an instance group per
zone of the pool, backend service, forwarding rule) and removed in reverse; every resource has a
name derived from orb, cluster and purpose and a description that says whose it is, so a retry
after a crash at any line finds what is there and makes only what is missing. A resource of that
name that another cluster owns is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from google.cloud import compute_v1

from orbiter.models.loadbalancers import LoadBalancerInput, LoadBalancerMembersInput, LoadBalancerMembersResult

from ..base import MachineClaimed
from . import instances, names
from .api import Api, GceError, attempt_key, request_id

# Where GCE's health checkers connect from (its documented ranges): the members must let them in.
HEALTH_CHECK_RANGES = ["35.191.0.0/16", "130.211.0.0/22"]
HEALTHY_TIMEOUT = 300.0
Progress = Callable[[str], None]


class Balancer:
    def __init__(self, api: Api, input: LoadBalancerInput) -> None:
        self.api, self.input = api, input
        self.attempt = attempt_key()
        self.orb, self.cluster = input.orb, input.cluster
        self.tag = names.base(input.orb, input.cluster)
        self.name = f"{self.tag}-{input.name}"
        self.region = api.region
        self.zones = api.spec.pool_zones(input.pool)
        self.network = f"projects/{api.project}/global/networks/{api.spec.network}"
        self.subnetwork = (
            f"projects/{api.project}/regions/{self.region}/subnetworks/{api.spec.subnetwork or api.spec.network}"
        )

    def desc(self, what: str) -> str:
        return names.description(f"{what} of load balancer {self.input.name}", self.orb, self.cluster)

    def group(self, zone: str) -> str:
        return f"{self.name}-{names.zone_suffix(zone)}"

    def link(self, scope: str, kind: str, name: str) -> str:
        return f"projects/{self.api.project}/{scope}/{kind}/{name}"

    def _mine(self, what: str, found: Any) -> Any:
        if found is not None and names.owner(found.description) != (self.orb, self.cluster):
            raise MachineClaimed(
                f"provider {self.api.provider}: {what} exists and is not cluster {self.cluster}'s of"
                f" orb {self.orb} ({found.description or 'no description'}): delete or rename it"
            )
        return found

    def _ensure(
        self, what: str, get: Callable[[], Any], insert: Callable[[str], compute_v1.Operation], progress: Progress
    ) -> Any:
        """get -> insert when missing (exists_ok: a retry that lost the answer) -> get."""
        what = f"provider {self.api.provider}: {what}"
        found = self._mine(what, self.api.get(what, get))
        if found is None:
            progress(f"creating {what.split(': ', 1)[1]}")
            rid = request_id("insert", what, self.orb, self.cluster, self.attempt)
            self.api.change(what, lambda: insert(rid), progress, exists_ok=True)
            found = self._mine(what, self.api.get(what, get))
            if found is None:
                raise GceError(what, "notFound", "created, but GCE does not show it yet", True, 404)
        return found

    def _remove(
        self, what: str, get: Callable[[], Any], delete: Callable[[str], compute_v1.Operation], progress: Progress
    ) -> None:
        what = f"provider {self.api.provider}: delete {what}"
        found = self.api.get(what, get)
        if found is None or names.owner(found.description) != (self.orb, self.cluster):
            return  # gone already, or not ours to delete
        progress(what.split(": ", 1)[1])
        rid = request_id("delete", str(found.id), found.name)
        self.api.change(what, lambda: delete(rid), progress, missing_ok=True)

    # -- create -------------------------------------------------------------------------------
    def ensure(self, progress: Progress) -> str:
        api, p, r, n = self.api, self.api.project, self.region, self.name
        address = self._ensure(
            f"address {n}",
            lambda: api.addresses.get(project=p, region=r, address=n),
            lambda rid: api.unary(
                api.addresses.insert_unary,
                project=p,
                region=r,
                request_id=rid,
                address_resource=(
                    compute_v1.Address(
                        name=n, address_type="INTERNAL", subnetwork=self.subnetwork, description=self.desc("address")
                    )
                ),
            ),
            progress,
        )
        health = self._ensure(
            f"health check {n}",
            lambda: api.health_checks.get(project=p, region=r, health_check=n),
            lambda rid: api.unary(
                api.health_checks.insert_unary,
                project=p,
                region=r,
                request_id=rid,
                health_check_resource=(
                    compute_v1.HealthCheck(
                        name=n,
                        type_="TCP",
                        description=self.desc("health check"),
                        check_interval_sec=2,
                        timeout_sec=2,
                        healthy_threshold=1,
                        unhealthy_threshold=2,
                        tcp_health_check=compute_v1.TCPHealthCheck(port=self.input.port),
                    )
                ),
            ),
            progress,
        )
        hc_rule = f"{n}-hc"
        self._ensure(
            f"firewall rule {hc_rule}",
            lambda: api.firewalls.get(project=p, firewall=hc_rule),
            lambda rid: api.unary(
                api.firewalls.insert_unary,
                project=p,
                request_id=rid,
                firewall_resource=compute_v1.Firewall(
                    name=hc_rule,
                    network=self.network,
                    direction="INGRESS",
                    target_tags=[self.tag],
                    source_ranges=HEALTH_CHECK_RANGES,
                    description=self.desc("health check firewall rule"),
                    allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=[str(self.input.port)])],
                ),
            ),
            progress,
        )
        groups = []
        for zone in self.zones:
            g = self.group(zone)
            groups.append(
                self._ensure(
                    f"instance group {g} (zone {zone})",
                    lambda z=zone, g=g: api.instance_groups.get(project=p, zone=z, instance_group=g),
                    lambda rid, z=zone, g=g: api.unary(
                        api.instance_groups.insert_unary,
                        project=p,
                        zone=z,
                        request_id=rid,
                        instance_group_resource=compute_v1.InstanceGroup(
                            name=g, network=self.network, description=self.desc("instance group")
                        ),
                    ),
                    progress,
                )
            )
        backends = [
            compute_v1.Backend(
                group=self.link(f"zones/{names.last(g.zone)}", "instanceGroups", g.name), balancing_mode="CONNECTION"
            )
            for g in groups
        ]
        service = self._ensure(
            f"backend service {n}",
            lambda: api.backend_services.get(project=p, region=r, backend_service=n),
            lambda rid: api.unary(
                api.backend_services.insert_unary,
                project=p,
                region=r,
                request_id=rid,
                backend_service_resource=compute_v1.BackendService(
                    name=n,
                    load_balancing_scheme="INTERNAL",
                    protocol="TCP",
                    network=self.network,
                    health_checks=[self.link(f"regions/{r}", "healthChecks", health.name)],
                    backends=backends,
                    description=self.desc("backend service"),
                ),
            ),
            progress,
        )
        have = {names.last(b.group) for b in service.backends}
        if missing := [b for b in backends if names.last(b.group) not in have]:
            # A zone added to the pool: its group joins the service.
            patched = compute_v1.BackendService(backends=[*service.backends, *missing], fingerprint=service.fingerprint)
            api.change(
                f"provider {api.provider}: backend service {n}",
                lambda: api.unary(
                    api.backend_services.patch_unary,
                    project=p,
                    region=r,
                    backend_service=n,
                    backend_service_resource=patched,
                ),
                progress,
            )
        self._ensure(
            f"forwarding rule {n}",
            lambda: api.forwarding_rules.get(project=p, region=r, forwarding_rule=n),
            lambda rid: api.unary(
                api.forwarding_rules.insert_unary,
                project=p,
                region=r,
                request_id=rid,
                forwarding_rule_resource=compute_v1.ForwardingRule(
                    name=n,
                    I_p_address=address.address,
                    I_p_protocol="TCP",
                    ports=[str(self.input.port)],
                    load_balancing_scheme="INTERNAL",
                    network=self.network,
                    subnetwork=self.subnetwork,
                    backend_service=self.link(f"regions/{r}", "backendServices", n),
                    description=self.desc("forwarding rule"),
                ),
            ),
            progress,
        )
        return address.address

    # -- members ------------------------------------------------------------------------------
    def members(self, input: LoadBalancerMembersInput, progress: Progress) -> LoadBalancerMembersResult:
        api, p = self.api, self.api.project
        wanted: dict[str, compute_v1.Instance] = {}
        for name in input.machines:
            found = instances.find(api, name)
            if found is None:
                raise GceError(
                    f"provider {api.provider}: instance {name}",
                    "notFound",
                    "no such instance to put behind the load balancer",
                    True,
                    404,
                )
            wanted[name] = found
        result = LoadBalancerMembersResult()
        for zone in self.zones:
            g = self.group(zone)
            what = f"provider {api.provider}: instance group {g} (zone {zone})"
            listed = api.get(
                what,
                lambda z=zone, g=g: list(
                    api.instance_groups.list_instances(
                        project=p,
                        zone=z,
                        instance_group=g,
                        instance_groups_list_instances_request_resource=compute_v1.InstanceGroupsListInstancesRequest(
                            instance_state="ALL"
                        ),
                    )
                ),
            )
            if listed is None:
                raise GceError(what, "notFound", "the load balancer's instance group is missing", True, 404)
            have = {names.last(i.instance) for i in listed}
            here = {n: i for n, i in wanted.items() if names.last(i.zone) == zone}
            add = sorted(set(here) - have)
            drop = sorted(have - set(wanted))
            if add:
                refs = [compute_v1.InstanceReference(instance=here[n].self_link) for n in add]
                rid = request_id("add", g, self.attempt, *add)
                api.change(
                    what,
                    lambda z=zone, g=g, refs=refs, rid=rid: api.unary(
                        api.instance_groups.add_instances_unary,
                        project=p,
                        zone=z,
                        instance_group=g,
                        request_id=rid,
                        instance_groups_add_instances_request_resource=compute_v1.InstanceGroupsAddInstancesRequest(
                            instances=refs
                        ),
                    ),
                    progress,
                )
                result.added += add
            if drop:
                refs = [compute_v1.InstanceReference(instance=self.link(f"zones/{zone}", "instances", n)) for n in drop]
                rid = request_id("remove", g, self.attempt, *drop)
                api.change(
                    what,
                    lambda z=zone, g=g, refs=refs, rid=rid: api.unary(
                        api.instance_groups.remove_instances_unary,
                        project=p,
                        zone=z,
                        instance_group=g,
                        request_id=rid,
                        instance_groups_remove_instances_request_resource=(
                            compute_v1.InstanceGroupsRemoveInstancesRequest(instances=refs)
                        ),
                    ),
                    progress,
                )
                result.removed += drop
        if input.wait_healthy and wanted:
            self.wait_healthy(set(wanted), progress)
        return result

    def wait_healthy(self, wanted: set[str], progress: Progress) -> None:
        """Until one of the members answers the health check: clients reach the service through it."""
        api, p, r = self.api, self.api.project, self.region
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while True:
            healthy: set[str] = set()
            for zone in self.zones:
                group = compute_v1.ResourceGroupReference(
                    group=self.link(f"zones/{zone}", "instanceGroups", self.group(zone))
                )
                health = api.get(
                    f"provider {api.provider}: health of {self.name}",
                    lambda g=group: api.backend_services.get_health(
                        project=p, region=r, backend_service=self.name, resource_group_reference_resource=g
                    ),
                )
                for status in health.health_status if health else []:
                    if status.health_state == "HEALTHY":
                        healthy.add(names.last(status.instance))
            if healthy & wanted:
                return
            if time.monotonic() > deadline:
                raise GceError(
                    f"provider {api.provider}: load balancer {self.name}",
                    "unhealthy",
                    f"no member answers on port {self.input.port} after {HEALTHY_TIMEOUT:.0f}s",
                    True,
                )
            progress(f"waiting for {', '.join(sorted(wanted))} to answer the health check of {self.name}")
            time.sleep(2)

    # -- remove -------------------------------------------------------------------------------
    def remove(self, progress: Progress) -> None:
        api, p, r, n = self.api, self.api.project, self.region, self.name
        self._remove(
            f"forwarding rule {n}",
            lambda: api.forwarding_rules.get(project=p, region=r, forwarding_rule=n),
            lambda rid: api.unary(
                api.forwarding_rules.delete_unary, project=p, region=r, forwarding_rule=n, request_id=rid
            ),
            progress,
        )
        self._remove(
            f"backend service {n}",
            lambda: api.backend_services.get(project=p, region=r, backend_service=n),
            lambda rid: api.unary(
                api.backend_services.delete_unary, project=p, region=r, backend_service=n, request_id=rid
            ),
            progress,
        )
        for zone in self.zones:
            g = self.group(zone)
            self._remove(
                f"instance group {g} (zone {zone})",
                lambda z=zone, g=g: api.instance_groups.get(project=p, zone=z, instance_group=g),
                lambda rid, z=zone, g=g: api.unary(
                    api.instance_groups.delete_unary, project=p, zone=z, instance_group=g, request_id=rid
                ),
                progress,
            )
        hc_rule = f"{n}-hc"
        self._remove(
            f"firewall rule {hc_rule}",
            lambda: api.firewalls.get(project=p, firewall=hc_rule),
            lambda rid: api.unary(api.firewalls.delete_unary, project=p, firewall=hc_rule, request_id=rid),
            progress,
        )
        self._remove(
            f"health check {n}",
            lambda: api.health_checks.get(project=p, region=r, health_check=n),
            lambda rid: api.unary(api.health_checks.delete_unary, project=p, region=r, health_check=n, request_id=rid),
            progress,
        )
        self._remove(
            f"address {n}",
            lambda: api.addresses.get(project=p, region=r, address=n),
            lambda rid: api.unary(api.addresses.delete_unary, project=p, region=r, address=n, request_id=rid),
            progress,
        )
