"""etcd's space: a NOSPACE alarm cleared (compact to the current revision, defragment followers one
at a time then the leader with a health gate between, disarm), and defragmentation on a schedule
when the database is more than half free space."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.kinds.etcd import etcd_space
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.kinds.etcd.messages import EtcdSpaceInput, EtcdStatusResult
    from orbiter.models.kinds.etcd.spec import EtcdMember

from ...runbook import Step
from .reconcile import ETCD_RETRY, EtcdReconcile

NOSPACE = "NOSPACE"
REQUEST = "clear space"  # a request the idle watch makes when it sees the alarm
SPACE_TIMEOUT = timedelta(minutes=10)


def alarmed(status: EtcdStatusResult) -> bool:
    return any(NOSPACE in m.alarms for m in status.members)


def mostly_free(status: EtcdStatusResult) -> bool:
    """More than half of some member's database file is free pages: defragmenting pays."""
    return any(m.db_size and m.db_size_in_use is not None and m.db_size_in_use * 2 < m.db_size
               for m in status.members)


async def _space(r: EtcdReconcile, what: str, members: list[EtcdMember]) -> None:
    await workflow.execute_activity(
        etcd_space, EtcdSpaceInput(target=r.target(members), what=what),  # type: ignore[arg-type]
        start_to_close_timeout=SPACE_TIMEOUT, retry_policy=ETCD_RETRY,
        summary=f"{what} {members[0].name}" if what == "defrag" else what)


async def free_space(r: EtcdReconcile) -> None:
    """Compact, defragment member by member (followers first: the leader's pause costs an election
    at most once, at the end), health gate after each, then disarm the alarms."""
    joined = [m for m in r.members if m.joined]
    await _space(r, "compact", joined)
    status = r.fresh or await r.status()
    leaders = {m.name for m in status.members if m.leader}
    for member in sorted(joined, key=lambda m: (m.name in leaders, m.name)):
        await _space(r, "defrag", [member])
        await r.status(wait=True, expect=len(joined), members=joined)
    await _space(r, "disarm", joined)
    r.fresh = None
    await r.observe(await r.status())


class ClearSpace(Step[EtcdReconcile]):
    """Planned when a member shows the NOSPACE alarm (in current.yml, or seen while the cluster rests)."""

    id = "space"

    def plan(self, view: View) -> list[PlannedStep]:
        if not (REQUEST in view.commands or any(NOSPACE in n.alarms for n in view.nodes if n.joined)):
            return []
        return [self.item(REQUEST, "compact to the current revision, defragment followers one at a time then the"
                          " leader (health gate between), disarm the NOSPACE alarm")]

    async def run(self, r: EtcdReconcile, item: PlannedStep) -> None:
        await free_space(r)
        r.ctx.state.requests = [c for c in r.ctx.state.requests if c != REQUEST]
