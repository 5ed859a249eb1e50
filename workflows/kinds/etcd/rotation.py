"""`orbiter rotate-ca CLUSTER`: a new CA without downtime, in three rolls of one member at a time.

1. add-next: a new CA is made; members and the client bundle trust both (leaves unchanged);
2. switch: member and client certificates are issued from the new CA (the old one still trusted,
   so a member not yet rolled and a client on the old bundle keep working);
3. drop-previous: members and the bundle trust the new CA alone.

A client that re-reads its bundle between requests never meets a certificate it does not trust:
a step's bundle is reported (written back to secrets.yml with current.yml) before its roll, and the
next step restarts no member before that whole roll is over, so clients have a roll's time (a
restart and a health gate per member) to pick it up. The step under way is kept
in the kind state and each step is a no-op once done, so a worker killed in the middle, or a
rotation Blocked by a health gate and retried, goes on where it stopped and makes no third CA.
Not held for a maintenance window or an approval: the operator asked for it now, and no member
is down for longer than a restart.
"""

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from orbiter.models.actions import ActionResult
    from orbiter.models.cluster import ClusterState
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.kinds.etcd.messages import CA_STEPS
    from orbiter.models.kinds.etcd.spec import EtcdCluster, EtcdState

from ...context import ClusterContext
from ...runbook import Step
from .reconcile import EtcdReconcile

REQUEST = "rotate ca"


def refuse(state: ClusterState) -> str | None:
    desired, kind = state.desired, state.kind
    spec: EtcdCluster | None = desired.spec if desired else None  # type: ignore[assignment]
    name = workflow.info().workflow_id.rsplit("/", 1)[-1]
    if spec is None or spec.destroyed:
        return "the cluster has no desired state to act on"
    if not spec.tls:
        return f"cluster {name} runs without TLS (tls: false): it has no CA to rotate"
    if state.paused or spec.paused:
        return "the cluster is paused: resume it first (orbiter resume, or remove paused: true)"
    if isinstance(kind, EtcdState) and (kind.ca_rotation is not None or REQUEST in state.requests):
        return f"a CA rotation of cluster {name} is already under way (see orbiter status)"
    if not any(m.joined for m in (kind.members if isinstance(kind, EtcdState) else [])):
        return "the cluster has no members yet"
    return None


async def request(ctx: ClusterContext) -> ActionResult:
    """Record the request, then wait until the rotation is done (or Blocked: the line says why)."""
    kind: EtcdState = ctx.state.kind  # type: ignore[assignment]
    done = kind.ca_rotations
    ctx.state.requests.append(REQUEST)
    ctx.state.retry_requested = True  # a reconcile runs even if the cluster is Ready or Blocked
    await workflow.wait_condition(lambda: kind.ca_rotations > done or (
        kind.ca_rotation is not None and ctx.state.status.phase == "Blocked"))
    if kind.ca_rotations == done:
        raise ApplicationError(f"CA rotation of {ctx.name} stopped at {kind.ca_rotation}: {ctx.state.status.error};"
                               f" fix it and run orbiter retry {ctx.name}", non_retryable=True)
    return ActionResult(message=f"rotated the CA of {ctx.name}: members, their certificates and the client bundle"
                                " use the new one")


class RotateCA(Step[EtcdReconcile]):
    id = "rotate-ca"

    def plan(self, view: View) -> list[PlannedStep]:
        members = [n.machine for n in view.nodes if n.joined]
        if REQUEST not in view.commands or not members:
            return []
        return [self.item(REQUEST, "a new CA trusted next to the old one, certificates issued from it, then the"
                          " old one dropped: three rolls, one member at a time with a health gate",
                          machines=members)]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        kind, ctx = r.kind, r.ctx
        start = CA_STEPS.index(kind.ca_rotation) if kind.ca_rotation else 0
        for step in CA_STEPS[start:]:
            kind.ca_rotation = step
            await r.certs(ca_step=step)
            await ctx.report()  # the bundle clients need goes to the repo while this step rolls
            for member in [m for m in r.members if m.joined]:
                await r.roll(member)
        kind.ca_rotation = None
        kind.ca_rotations += 1
        ctx.state.requests = [c for c in ctx.state.requests if c != REQUEST]
