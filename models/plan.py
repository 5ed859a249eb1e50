"""What orbiter would do for a desired.yml against a current.yml: pure, for `orbiter plan`."""

from .base import Model
from .current import OrbStatus
from .desired import EtcdCluster, KubernetesCluster, Orb, pool_refs


class Action(Model):
    cluster: str
    action: str  # create, scale, upgrade, destroy, orphan, pause, resume
    detail: str


def _counts(cluster: EtcdCluster | KubernetesCluster) -> dict[str, int]:
    return {".".join(path): ref.nodes for path, ref in pool_refs(cluster)}


def _role(path: str) -> str:
    return {"members": "member", "controlPlane": "control-plane"}.get(path, "worker")


def plan(orb: Orb, current: OrbStatus) -> list[Action]:
    actions: list[Action] = []
    for name, cluster in orb.spec.clusters.items():
        status = current.clusters.get(name)
        if cluster.destroyed:
            if status is None or status.phase != "Destroyed":
                actions.append(
                    Action(
                        cluster=name,
                        action="destroy",
                        detail=f"destroy {cluster.kind} cluster {name} and release its machines",
                    )
                )
            continue
        if status is None or status.phase in ("Pending", "Destroyed") or status.commit is None:
            total = sum(_counts(cluster).values())
            actions.append(
                Action(
                    cluster=name,
                    action="create",
                    detail=f"create {cluster.kind} {cluster.version} with {total} machines",
                )
            )
            continue
        if cluster.paused and status.phase != "Paused":
            actions.append(Action(cluster=name, action="pause", detail="hold reconciling"))
        if not cluster.paused and status.phase == "Paused":
            actions.append(Action(cluster=name, action="resume", detail="reconcile again"))
        for path, want in _counts(cluster).items():
            role = _role(path.split(".")[0])
            if isinstance(cluster, KubernetesCluster) and role == "worker":
                pool = cluster.workers[path.split(".")[1]].pool
                have = sum(1 for n in status.nodes if n.role == "worker" and n.pool == pool)
            else:
                have = sum(1 for n in status.nodes if n.role == role)
            if have != want:
                actions.append(Action(cluster=name, action="scale", detail=f"{path}: {have} -> {want}"))
        if isinstance(cluster, KubernetesCluster):
            # A worker group removed from desired.yml: its machines are scaled away.
            kept = {ref.pool for ref in cluster.workers.values()}
            gone: dict[str, int] = {}
            for n in status.nodes:
                if n.role == "worker" and n.pool not in kept:
                    gone[n.pool or "?"] = gone.get(n.pool or "?", 0) + 1
            for pool, have in sorted(gone.items()):
                actions.append(
                    Action(cluster=name, action="scale", detail=f"workers in pool {pool}: {have} -> 0 (group removed)")
                )
        versions = {n.version for n in status.nodes if n.version}
        want_version = cluster.version.lstrip("v")
        stale = sorted(v for v in versions if v.lstrip("v").split("-")[0] != want_version)
        if stale:
            actions.append(Action(cluster=name, action="upgrade", detail=f"{', '.join(stale)} -> {cluster.version}"))
    for name in sorted(set(current.clusters) - set(orb.spec.clusters)):
        actions.append(
            Action(
                cluster=name,
                action="orphan",
                detail="no longer in desired.yml: left running (destroy it with destroyed: true first)",
            )
        )
    return actions
