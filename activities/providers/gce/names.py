"""How orbiter names and marks what it creates in a GCE project, so it finds every piece again
after a crash: instances by name and labels, everything else by a name derived from orb and
cluster and a description that says whose it is (a resource of that name saying otherwise is not
orbiter's, and is never touched)."""

import hashlib
import re

LABEL_ORB, LABEL_CLUSTER, LABEL_POOL = "orbiter-orb", "orbiter-cluster", "orbiter-pool"
MAX_BASE = 50  # leaves room for "-members", "-api-hc", "-api-<zone letter>" within GCE's 63


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def base(orb: str, cluster: str) -> str:
    """The prefix of a cluster's firewall rules and load balancer, and its instances' network tag."""
    readable = f"orbiter-{orb}-{cluster}"
    return readable if len(readable) <= MAX_BASE else f"orbiter-{_short(orb + '/' + cluster)}"


def labels(orb: str, cluster: str, pool: str) -> dict[str, str]:
    return {LABEL_ORB: orb, LABEL_CLUSTER: cluster, LABEL_POOL: pool}


def label_filter(orb: str, cluster: str | None = None) -> str:
    out = f'labels.{LABEL_ORB} = "{orb}"'
    return out + (f' AND labels.{LABEL_CLUSTER} = "{cluster}"' if cluster is not None else "")


def description(what: str, orb: str, cluster: str) -> str:
    return f"orbiter: {what} of orb {orb} cluster {cluster}"


def owner(desc: str | None) -> tuple[str, str] | None:
    """(orb, cluster) from a description orbiter wrote; None for anything else."""
    match = re.match(r"^orbiter: .* of orb (\S+) cluster (\S+)$", desc or "")
    return (match.group(1), match.group(2)) if match else None


def zone_suffix(zone: str) -> str:
    return zone.rsplit("-", 1)[1]


def last(link: str) -> str:
    """The name at the end of a selfLink or a partial URL (compare names, never hosts)."""
    return link.rstrip("/").rsplit("/", 1)[-1]
