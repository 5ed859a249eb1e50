"""The benchfile runbook: machines, members (every member converged at once, up to
maxParallel), observe. Members whose file is already as wanted are skipped, so a no-op push
costs no node agent round."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.kinds import PlannedStep, View

    from .spec import ROLE, BenchCluster, BenchMember, BenchState, member_spec

from orbiter.workflows.context import ClusterContext
from orbiter.workflows.fleet import Fleet, spec_digest
from orbiter.workflows.runbook import Runbook, Step


class BenchReconcile:
    def __init__(self, ctx: ClusterContext) -> None:
        self.ctx = ctx
        self.fleet = Fleet(ctx)
        self.spec: BenchCluster = ctx.desired.spec  # type: ignore[assignment]
        if ctx.state.kind is None:
            ctx.state.kind = BenchState()
        self.kind: BenchState = ctx.state.kind  # type: ignore[assignment]


class Machines(Step[BenchReconcile]):
    id = "machines"

    def plan(self, view: View) -> list[PlannedStep]:
        spec: BenchCluster = view.spec
        have = [n.machine for n in view.nodes]
        names = view.new_machines(spec.members, set(have), spec.members.nodes - len(have))
        return [self.item(f"take {len(names)} machines", "first contact: the maintenance key in", machines=names)] \
            if names else []

    async def run(self, r: BenchReconcile, item: PlannedStep) -> None:
        known = {m.name for m in r.kind.members}
        for name in item.machines:
            if name not in known:
                r.kind.members.append(BenchMember(name=name, provider=r.spec.members.provider,
                                                  pool=r.spec.members.pool, role=ROLE))
        await r.fleet.acquire(r.spec.members.provider, r.spec.members.pool, item.machines)


class Members(Step[BenchReconcile]):
    id = "members"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("members", "every member's file, through its node agent", changes=False)]

    async def run(self, r: BenchReconcile, item: PlannedStep) -> None:
        specs = {m.name: member_spec(r.ctx.name, r.spec, m.name) for m in r.kind.members}
        todo = {n: s for n, s in specs.items() if spec_digest(s) != next(
            m.spec_digest for m in r.kind.members if m.name == n)}
        await r.fleet.converge(todo)
        for m in r.kind.members:
            m.spec_digest, m.joined = spec_digest(specs[m.name]), True


class Observe(Step[BenchReconcile]):
    id = "observe"

    def plan(self, view: View) -> list[PlannedStep]:
        return [self.item("observe", "the node agents' last reports into current.yml", changes=False)]

    async def run(self, r: BenchReconcile, item: PlannedStep) -> None:
        nodes = []
        for m in r.kind.members:
            node = r.fleet.node_status(m, ROLE)
            node.ready = m.joined and node.error is None
            nodes.append(node)
        r.ctx.state.status.nodes = nodes
        await r.ctx.report()


class BenchRunbook(Runbook[BenchReconcile]):
    steps = (Machines(), Members(), Observe())
    destroy_steps = ()

    def start(self, ctx: ClusterContext) -> BenchReconcile:
        return BenchReconcile(ctx)
