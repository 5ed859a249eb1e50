"""A converged machine's drift rounds cost its cluster nothing: the node agent reports a round to
its parent only when the round changed something or saw something the last report did not say.
A hand edit put back is reported (drift), and so is the quiet round after it."""

import asyncio
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from orbiter.models.machines import Machine
from orbiter.models.node import ConvergeNodeInput, ConvergeNodeResult, NodeAgentInput, NodeReport
from orbiter.models.nodespec import Change, NodeObserved, NodeSpec
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.workflows.node_agent import NodeAgentWorkflow

from ..support.flows import wait_for
from .test_replay import RECORD, _save

HAND_EDITS: list[Change] = []  # what the next round finds changed by hand (and puts back)


@activity.defn(name="converge_node")
async def fake_converge_node(input: ConvergeNodeInput) -> ConvergeNodeResult:
    """The machine as the real activity would see it: converged, unless a hand edit is pending."""
    changes = list(HAND_EDITS)
    HAND_EDITS.clear()
    return ConvergeNodeResult(observed=NodeObserved(hostname=input.spec.hostname), changes=changes, host_key="k")


@workflow.defn(name="ReportCollector", sandboxed=False)
class ReportCollector:
    """Stands in for the ClusterWorkflow: it only keeps the node reports it receives."""

    def __init__(self) -> None:
        self.reports: list[NodeReport] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="node_report")
    def node_report(self, report: NodeReport) -> None:
        self.reports.append(report)

    @workflow.query
    def received(self) -> list[NodeReport]:
        return self.reports


async def test_quiet_drift_rounds_send_no_report_and_a_hand_edit_does(client: Client):
    queue = f"drift-{uuid.uuid4().hex[:6]}"
    machine = Machine(id="m1", provider="rack", pool="p", ip="10.0.0.1", key_secret="k", host_key="k")
    agent_input = NodeAgentInput(
        orb="o", cluster="c", machine=machine, spec=NodeSpec(hostname="m1"), generation=1,
        secrets=SecretsRef(repo=RepoRef(url="/nowhere"), commit="0" * 40), drift_interval_seconds=0.2,
        parent_workflow_id=f"parent/{queue}")
    async with Worker(client, task_queue=queue, workflows=[NodeAgentWorkflow, ReportCollector],
                      activities=[fake_converge_node], max_concurrent_activities=1):
        parent = await client.start_workflow(ReportCollector.run, id=f"parent/{queue}", task_queue=queue)
        agent = await client.start_workflow(NodeAgentWorkflow.run, agent_input, id=f"node/{queue}", task_queue=queue,
                                            execution_timeout=timedelta(minutes=5))
        try:
            async def rounds() -> int:
                return (await agent.query(NodeAgentWorkflow.status)).rounds_done

            await wait_for(lambda: rounds_at_least(rounds, 6), timeout=60, what="six rounds")
            reports = await parent.query(ReportCollector.received)
            assert [(r.generation, r.drift) for r in reports] == [(1, False)]  # the first round only

            HAND_EDITS.append(Change(kind="file", target="/etc/x", detail="changed by hand"))
            await wait_for(lambda: reports_at_least(parent, 3), timeout=60, what="the drift and the round after")
            done = await rounds()
            await wait_for(lambda: rounds_at_least(rounds, done + 4), timeout=60, what="four more rounds")
            reports = await parent.query(ReportCollector.received)
            assert [(r.drift, [c.target for c in r.changes]) for r in reports] == [
                (False, []), (True, ["/etc/x"]), (False, [])]
            if RECORD:  # the quiet-drift path for the determinism guard (test_replay.py)
                await _save(client, "node_agent_quiet_drift", agent.id, "NodeAgentWorkflow")
        finally:
            await agent.terminate()
            await parent.terminate()


async def rounds_at_least(rounds, n: int) -> bool:  # noqa: ANN001 - the coroutine function above
    return await rounds() >= n


async def reports_at_least(parent, n: int) -> bool:  # noqa: ANN001 - a workflow handle
    await asyncio.sleep(0)
    return len(await parent.query(ReportCollector.received)) >= n
