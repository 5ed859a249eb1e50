"""Firewall rules a cluster's members need: what the kind says they send each other (between the
cluster's instances, by its network tag) and SSH from where orbiter runs. Made with the first
instance, removed before the last one goes (so a crash in between never leaves a rule behind)."""

from __future__ import annotations

from collections.abc import Callable

from google.cloud import compute_v1

from orbiter.models.kinds.base import PortRule

from . import names
from .api import Api, attempt_key, request_id


def wanted(api: Api, orb: str, cluster: str, ports: list[PortRule]) -> list[compute_v1.Firewall]:
    tag = names.base(orb, cluster)
    network = f"global/networks/{api.spec.network}"
    rules = [compute_v1.Firewall(
        name=f"{tag}-ssh", network=network, direction="INGRESS", target_tags=[tag],
        source_ranges=list(api.spec.ssh_source_ranges), description=names.description("ssh", orb, cluster),
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])])]
    if ports:
        rules.append(compute_v1.Firewall(
            name=f"{tag}-members", network=network, direction="INGRESS", target_tags=[tag], source_tags=[tag],
            description=names.description("members", orb, cluster),
            allowed=[compute_v1.Allowed(I_p_protocol=p.protocol, ports=list(p.ports)) for p in ports]))
    return rules


def _same(have: compute_v1.Firewall, want: compute_v1.Firewall) -> bool:
    def key(rule: compute_v1.Firewall) -> tuple:
        return (sorted((a.I_p_protocol, tuple(a.ports)) for a in rule.allowed), sorted(rule.source_ranges),
                sorted(rule.source_tags), sorted(rule.target_tags))

    return key(have) == key(want)


def ensure(api: Api, orb: str, cluster: str, ports: list[PortRule], progress: Callable[[str], None]) -> None:
    """Each rule as wanted: inserted when missing, patched when the kind's ports changed."""
    for rule in wanted(api, orb, cluster, ports):
        what = f"provider {api.provider}: firewall rule {rule.name}"
        have = api.get(what, lambda r=rule: api.firewalls.get(project=api.project, firewall=r.name))
        if have is None:
            rid = request_id("insert-firewall", rule.name, attempt_key())
            api.change(what, lambda r=rule, i=rid: api.unary(api.firewalls.insert_unary, 
                project=api.project, firewall_resource=r, request_id=i), progress, exists_ok=True)
        elif names.owner(have.description) == (orb, cluster) and not _same(have, rule):
            api.change(what, lambda r=rule: api.unary(api.firewalls.patch_unary, 
                project=api.project, firewall=r.name, firewall_resource=r), progress)


def remove(api: Api, orb: str, cluster: str, progress: Callable[[str], None]) -> None:
    """Every rule of the cluster, those gone already counted as removed; another's of the same name stays."""
    tag = names.base(orb, cluster)
    for name in (f"{tag}-members", f"{tag}-ssh"):
        what = f"provider {api.provider}: delete firewall rule {name}"
        have = api.get(what, lambda n=name: api.firewalls.get(project=api.project, firewall=n))
        if have is None or names.owner(have.description) != (orb, cluster):
            continue
        rid = request_id("delete", str(have.id), name)
        api.change(what, lambda n=name, i=rid: api.unary(api.firewalls.delete_unary, 
            project=api.project, firewall=n, request_id=i), progress, missing_ok=True)
