"""Member certificates renewed `renewBefore` their expiry without waiting for another change: the
idle wait's timer asks for a reconcile whose `renew certificates` step issues the new ones and
rolls the members one at a time, health-gated. Not held for a maintenance window: an expired
certificate is an outage, a restart per member is not."""

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.duration import parse_duration
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.kinds.etcd.spec import EtcdCluster, EtcdState

from ...runbook import Step
from .reconcile import EtcdReconcile

REQUEST = "renew certificates"
DEFAULT_RENEW_BEFORE = "30d"  # activities/pki.py RENEW_BEFORE


def renewal_due(spec: EtcdCluster, kind: EtcdState) -> datetime | None:
    """When the first member certificate enters its renewal period; None: none is known."""
    expiries = [datetime.fromisoformat(m.cert_expiry) for m in kind.members if m.joined and m.cert_expiry]
    if not spec.tls or not expiries:
        return None
    before = spec.certificates.renew_before if spec.certificates else DEFAULT_RENEW_BEFORE
    return min(expiries) - parse_duration(before)


class RenewCertificates(Step[EtcdReconcile]):
    id = "renew-certificates"

    def plan(self, view: View) -> list[PlannedStep]:
        if REQUEST not in view.commands:
            return []
        members = [n.machine for n in view.nodes if n.joined]
        return [self.item(REQUEST, "issue member and client certificates near expiry again, then roll the members"
                          " one at a time with a health gate", machines=members)]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        await r.certs()
        for member in [m for m in r.members if m.joined]:
            await r.roll(member)
        r.ctx.state.requests = [c for c in r.ctx.state.requests if c != REQUEST]
