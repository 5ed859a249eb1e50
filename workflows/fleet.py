"""The machines of one cluster: acquire them, converge them through node agents, release them.

Any cluster kind uses this; it never knows which provider made a machine. Node agents are child
workflows that outlive a continue-as-new of their cluster (parent close policy ABANDON) and
report back by signal to the cluster's workflow id.
"""

import asyncio
import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.machines import acquire_machines, prepare_packages, release_machine
    from orbiter.models.cluster import DesiredUpdate, MemberRecord
    from orbiter.models.current import NodeStatus
    from orbiter.models.desired import Provider
    from orbiter.models.ids import node_workflow_id
    from orbiter.models.machines import Machine
    from orbiter.models.node import NodeAgentInput, NodeAgentUpdate
    from orbiter.models.nodespec import NodeSpec
    from orbiter.models.provision import (
        AcquireMachinesInput,
        PreparePackagesInput,
        PreparePackagesResult,
        ReleaseMachineInput,
        remote_pins,
    )

    from .blocked import Blocked
    from .node_agent import NodeAgentWorkflow

if TYPE_CHECKING:
    from .cluster import ClusterWorkflow

# Unreachable machines and busy hosts are retried with backoff; the budget ends in Blocked.
MACHINE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
)


# workflow.patched id: remote providers' package pins are computed here, not in an activity.
PATCH_PACKAGES_IN_WORKFLOW = "fleet-packages-in-workflow"


def spec_digest(spec: NodeSpec) -> str:
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()[:16]


class Fleet:
    def __init__(self, cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
        self.cluster = cluster
        self.state = cluster.state
        self.desired = desired

    def provider(self, name: str) -> Provider:
        return self.desired.providers[name]

    async def packages(self, provider: str, wanted: dict[str, str]) -> PreparePackagesResult:
        """Exact apt versions for wanted upstream versions. Only a local provider serves packages (an
        activity); other machines install from their own mirrors, pinned to `<version>*`."""
        if self.provider(provider).kind != "local" and workflow.patched(PATCH_PACKAGES_IN_WORKFLOW):
            return PreparePackagesResult(versions=remote_pins(wanted))
        return await workflow.execute_activity(
            prepare_packages,
            PreparePackagesInput(provider_name=provider, provider=self.provider(provider), packages=wanted),
            # The first run on a host builds the base image and downloads packages: minutes, with
            # heartbeats, so a crashed worker's attempt is retried within half a minute.
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=MACHINE_RETRY,
            summary=f"packages {', '.join(f'{n} {v}' for n, v in sorted(wanted.items()))} for {provider}",
        )

    async def acquire(self, provider: str, pool: str, ids: list[str]) -> list[Machine]:
        """Machines by id, created or taken into use; host keys seen before stay pinned."""
        known = {m: self.state.machines[m].host_key for m in ids if m in self.state.machines}
        result = await workflow.execute_activity(
            acquire_machines,
            AcquireMachinesInput(
                provider_name=provider,
                provider=self.provider(provider),
                pool=pool,
                machine_ids=ids,
                secrets=self.desired.secrets,
                host_keys={k: v for k, v in known.items() if v},
            ),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=MACHINE_RETRY,
            summary=f"machines {', '.join(ids)}",
        )
        for machine in result.machines:
            self.state.machines[machine.id] = machine
        return result.machines

    async def converge(self, specs: dict[str, NodeSpec], parallel: int | None = None) -> None:
        """Each machine to its spec through its node agent, at most `parallel` at once."""
        limit = asyncio.Semaphore(parallel or self.desired.max_parallel)

        async def one(machine_id: str, spec: NodeSpec) -> None:
            async with limit:
                await self._converge_one(machine_id, spec)

        await asyncio.gather(*(one(m, s) for m, s in specs.items()))

    async def _converge_one(self, machine_id: str, spec: NodeSpec) -> None:
        machine = self.state.machines[machine_id]
        started = machine_id in self.state.node_generations
        generation = self.state.node_generations.get(machine_id, 0) + 1
        self.state.node_generations[machine_id] = generation
        cluster = self.cluster.input
        if started:
            handle = workflow.get_external_workflow_handle(node_workflow_id(cluster.orb, cluster.cluster, machine_id))
            await handle.signal(
                NodeAgentWorkflow.apply,
                NodeAgentUpdate(spec=spec, generation=generation, secrets=self.desired.secrets, machine=machine),
            )
        else:
            await workflow.start_child_workflow(
                NodeAgentWorkflow.run,
                NodeAgentInput(
                    orb=cluster.orb,
                    cluster=cluster.cluster,
                    machine=machine,
                    spec=spec,
                    generation=generation,
                    secrets=self.desired.secrets,
                    drift_interval_seconds=self.desired.drift_interval_seconds,
                    parent_workflow_id=workflow.info().workflow_id,
                ),
                id=node_workflow_id(cluster.orb, cluster.cluster, machine_id),
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

    async def release(
        self, member: MemberRecord, units: list[str], files: list[str], packages: list[str], data_dirs: list[str]
    ) -> None:
        """Stop the node agent, then delete the machine (local) or undo orbiter's work on it (static)."""
        machine = self.state.machines.get(member.name)
        if member.name in self.state.node_generations:
            cluster = self.cluster.input
            handle = workflow.get_external_workflow_handle(node_workflow_id(cluster.orb, cluster.cluster, member.name))
            try:
                await handle.signal(NodeAgentWorkflow.shutdown)
            except Exception:  # noqa: BLE001 - an agent that already ended needs no shutdown
                workflow.logger.info("node agent of %s already gone", member.name)
        if machine is not None:
            await workflow.execute_activity(
                release_machine,
                ReleaseMachineInput(
                    provider_name=member.provider,
                    provider=self.provider(member.provider),
                    machine=machine,
                    secrets=self.desired.secrets,
                    units=units,
                    files=files,
                    packages=packages,
                    data_dirs=data_dirs,
                ),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=MACHINE_RETRY,
                summary=f"release {member.name}",
            )
        for table in (self.state.machines, self.state.node_generations, self.state.node_reports):
            table.pop(member.name, None)

    def node_status(self, member: MemberRecord, role: str) -> NodeStatus:
        machine = self.state.machines.get(member.name)
        report = self.state.node_reports.get(member.name)
        return NodeStatus(
            machine=member.name,
            ip=machine.ip if machine else "",
            role=role,
            pool=member.pool,
            provider=member.provider,
            hostKey=machine.host_key if machine else None,
            error=report.error if report and not report.ok else None,
            units=report.units if report else {},
            drift=self.state.drift.get(member.name, []),
        )
