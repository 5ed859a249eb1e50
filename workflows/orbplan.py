"""What orbiter would do for a desired.yml against a current.yml: each cluster's runbook plan, as
its ClusterWorkflow will make it (`orbiter plan`). Pure but for reading an earlier desired.yml;
not workflow code itself."""

from collections.abc import Callable

from orbiter.models.base import Model
from orbiter.models.current import ClusterStatus, OrbStatus
from orbiter.models.desired import Orb, cluster_providers, os_updates
from orbiter.models.kinds import PlannedStep, Refused, View
from orbiter.models.load import DesiredStateError, load_desired

from .runbooks import RUNBOOKS


class ClusterPlan(Model):
    cluster: str
    kind: str
    steps: list[PlannedStep] = []
    note: str | None = None  # paused, orphaned, refused: why no step runs


class OrbPlan(Model):
    orb: str
    clusters: list[ClusterPlan]

    @property
    def changes(self) -> bool:
        return any(s.changes for c in self.clusters for s in c.steps)

    @property
    def refused(self) -> bool:
        return any(c.note and c.note.startswith("refused:") for c in self.clusters)


def plan_orb(orb: Orb, current: OrbStatus, desired_at: Callable[[str], str | None]) -> OrbPlan:
    """`desired_at(commit)` gives desired.yml at a commit (the spec a cluster last applied)."""
    out = []
    for name, spec in orb.spec.clusters.items():
        status = current.clusters.get(name) or ClusterStatus(kind=spec.kind)
        if spec.paused:
            out.append(ClusterPlan(cluster=name, kind=spec.kind, note="paused: no step runs until resumed"))
            continue
        view = View(orb=orb.metadata.name, cluster=name, spec=spec,
                    applied=_applied(name, spec.kind, status, desired_at), nodes=status.nodes,
                    providers=cluster_providers(orb, spec), commands=status.commands,
                    max_parallel=orb.spec.max_parallel, os_updates=os_updates(orb, spec))
        try:
            out.append(ClusterPlan(cluster=name, kind=spec.kind, steps=RUNBOOKS[spec.kind].plan(view)))
        except Refused as err:
            out.append(ClusterPlan(cluster=name, kind=spec.kind, note=f"refused: {err}"))
    for name in sorted(set(current.clusters) - set(orb.spec.clusters)):
        out.append(ClusterPlan(cluster=name, kind=current.clusters[name].kind,
                               note="orphaned: no longer in desired.yml, left running (destroy it with"
                                    " destroyed: true first)"))
    return OrbPlan(orb=orb.metadata.name, clusters=out)


def _applied(name: str, kind: str, status: ClusterStatus, desired_at: Callable[[str], str | None]) -> object:
    """The cluster's spec at the commit it last applied fully, if that commit can be read."""
    text = desired_at(status.commit) if status.commit else None
    if text is None:
        return None
    try:
        spec = load_desired(text).spec.clusters.get(name)
    except DesiredStateError:
        return None
    return spec if spec is not None and spec.kind == kind else None
