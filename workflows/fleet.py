"""The machines of one cluster: acquire them, converge them through node agents, release them.

Any cluster kind uses this; it never knows which provider made a machine, only what the
provider can do. Node agents are child workflows that outlive a continue-as-new of their
cluster (parent close policy ABANDON) and report back by signal to the cluster's workflow id.
"""

import asyncio
import hashlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.machines import acquire_machines, prepare_packages, release_machine
    from orbiter.models.claims import claim_text
    from orbiter.models.current import NodeStatus
    from orbiter.models.ids import node_workflow_id
    from orbiter.models.kinds import MemberBase
    from orbiter.models.kinds.base import Leftovers
    from orbiter.models.machines import Machine
    from orbiter.models.node import NodeAgentInput, NodeAgentUpdate
    from orbiter.models.nodespec import NodeSpec
    from orbiter.models.provision import (
        AcquireMachinesInput,
        PreparePackagesInput,
        PreparePackagesResult,
        ReleaseMachineInput,
    )

from .context import Blocked, ClusterContext
from .node_agent import NodeAgentWorkflow

# Unreachable machines and busy hosts are retried with backoff; the budget ends in Blocked.
MACHINE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
)


def spec_digest(spec: NodeSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


class Fleet:
    def __init__(self, ctx: ClusterContext) -> None:
        self.ctx = ctx
        self.state = ctx.state

    async def packages(self, provider: str, wanted: dict[str, str]) -> PreparePackagesResult:
        """Exact apt versions for wanted upstream versions. A provider that serves packages prepares
        them (an activity); the others' machines install from their own mirrors, pinned here."""
        spec = self.ctx.provider(provider)
        if not spec.can("serves-packages"):
            return PreparePackagesResult(versions=spec.package_pins(wanted))
        return await workflow.execute_activity(
            prepare_packages,
            PreparePackagesInput(provider_name=provider, provider=spec, packages=wanted),
            # The first run on a host builds the base image and downloads packages: minutes, with
            # heartbeats (worker/heartbeats.py), so a crashed worker's attempt is retried within seconds.
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=MACHINE_RETRY,
            summary=f"packages {', '.join(f'{n} {v}' for n, v in sorted(wanted.items()))} for {provider}",
        )

    async def acquire(self, provider: str, pool: str, ids: list[str]) -> list[Machine]:
        """Machines by id, created or taken into use; host keys seen before stay pinned."""
        known = {m: self.state.machines[m].host_key for m in ids if m in self.state.machines}
        result = await workflow.execute_activity(
            acquire_machines,
            AcquireMachinesInput(
                orb=self.ctx.orb,
                cluster=self.ctx.name,
                kind=self.ctx.desired.spec.kind,
                provider_name=provider,
                provider=self.ctx.provider(provider),
                pool=pool,
                machine_ids=ids,
                secrets=self.ctx.desired.secrets,
                host_keys={k: v for k, v in known.items() if v},
                ports=self.ctx.desired.spec.member_ports(),
            ),
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=MACHINE_RETRY,
            summary=f"machines {', '.join(ids)}",
        )
        for machine in result.machines:
            self.state.machines[machine.id] = machine
        return result.machines

    async def converge(self, specs: dict[str, NodeSpec], parallel: int | None = None) -> None:
        """Each machine to its spec through its node agent, at most `parallel` at once. Every spec
        carries the cluster's claim: the agent writes it, and stops on another orb's."""
        limit = asyncio.Semaphore(parallel or self.ctx.desired.max_parallel)
        claim = claim_text(self.ctx.orb, self.ctx.name, self.ctx.desired.spec.kind)
        specs = {m: s.model_copy(update={"claim": claim}) for m, s in specs.items()}

        async def one(machine_id: str, spec: NodeSpec) -> None:
            async with limit:
                await self._converge_one(machine_id, spec)

        await asyncio.gather(*(one(m, s) for m, s in specs.items()))

    async def _converge_one(self, machine_id: str, spec: NodeSpec) -> None:
        machine = self.state.machines[machine_id]
        started = machine_id in self.state.node_generations
        generation = self.state.node_generations.get(machine_id, 0) + 1
        self.state.node_generations[machine_id] = generation
        agent_id = node_workflow_id(self.ctx.orb, self.ctx.name, machine_id)
        if started:
            await workflow.get_external_workflow_handle(agent_id).signal(
                NodeAgentWorkflow.apply,
                NodeAgentUpdate(spec=spec, generation=generation, secrets=self.ctx.desired.secrets, machine=machine),
            )
        else:
            await workflow.start_child_workflow(
                NodeAgentWorkflow.run,
                NodeAgentInput(
                    orb=self.ctx.orb,
                    cluster=self.ctx.name,
                    machine=machine,
                    spec=spec,
                    generation=generation,
                    secrets=self.ctx.desired.secrets,
                    drift_interval_seconds=self.ctx.desired.drift_interval_seconds,
                    parent_workflow_id=self.ctx.workflow_id,
                ),
                id=agent_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"node agent of {machine_id}",
            )
        await workflow.wait_condition(
            lambda: (r := self.state.node_reports.get(machine_id)) is not None and r.generation >= generation
        )
        report = self.state.node_reports[machine_id]
        if not report.ok:
            raise Blocked(f"machine {machine_id}: {report.error}")
        if report.host_key and machine.host_key != report.host_key:
            self.state.machines[machine_id] = machine.model_copy(update={"host_key": report.host_key})

    async def release(self, member: MemberBase, leaves: Leftovers) -> None:
        """Stop the node agent, then release the machine through its provider (deleted, or what
        orbiter put on it undone: the kind's leftovers, and the provider's claim)."""
        machine = self.state.machines.get(member.name)
        if member.name in self.state.node_generations:
            handle = workflow.get_external_workflow_handle(node_workflow_id(self.ctx.orb, self.ctx.name, member.name))
            try:
                await handle.signal(NodeAgentWorkflow.shutdown)
            except Exception:  # noqa: BLE001 - an agent that already ended needs no shutdown
                workflow.logger.info("node agent of %s already gone", member.name)
        if machine is not None:
            await workflow.execute_activity(
                release_machine,
                ReleaseMachineInput(
                    provider_name=member.provider,
                    provider=self.ctx.provider(member.provider),
                    machine=machine,
                    secrets=self.ctx.desired.secrets,
                    units=list(leaves.units),
                    files=list(leaves.files),
                    packages=list(leaves.packages),
                    data_dirs=list(leaves.data_dirs),
                ),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=MACHINE_RETRY,
                summary=f"release {member.name}",
            )
        for table in (self.state.machines, self.state.node_generations, self.state.node_reports):
            table.pop(member.name, None)

    def node_status(self, member: MemberBase, role: str) -> NodeStatus:
        machine = self.state.machines.get(member.name)
        report = self.state.node_reports.get(member.name)
        return NodeStatus(
            machine=member.name,
            ip=machine.ip if machine else "",
            role=role,
            group=member.group,
            pool=member.pool,
            provider=member.provider,
            joined=member.joined,
            hostKey=machine.host_key if machine else None,
            error=report.error if report and not report.ok else None,
            units=report.units if report else {},
            drift=self.state.drift.get(member.name, []),
            upgradable=report.upgradable if report else None,
            rebootRequired=report.reboot_required if report else None,
        )
