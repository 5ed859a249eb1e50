"""OS updates as a runbook step any kind uses: per machine with work under the cluster's osUpdates
policy, one machine at a time (so never two members of one quorum together), inside the maintenance
windows (the step is disruptive) and health-gated like a roll: the kind takes the member out
(Kubernetes drains it) and brings it back behind its health gate. Only packages the policy names
are upgraded, and only a machine that asks for it (/var/run/reboot-required) is rebooted, through
its provider.
"""

from datetime import timedelta
from typing import Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.machines import machine_boot_id, reboot_machine
    from orbiter.activities.updates import apply_os_updates
    from orbiter.models.kinds import PlannedStep, View
    from orbiter.models.provision import BootIdInput, RebootMachineInput
    from orbiter.models.updatecheck import OsUpdateInput, OsUpdateResult
    from orbiter.models.updates import needs_os_work, os_packages

from .context import ClusterContext
from .runbook import Step
from .updates import set_os_facts

OS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(seconds=30),
                       maximum_attempts=5, non_retryable_error_types=["AuthFailed", "HostKeyChanged", "SecretsError"])


class Disruptable(Protocol):
    """What a kind's reconcile object offers for a member that goes down for a while."""

    ctx: ClusterContext

    async def before_disruption(self, name: str) -> None:
        """Check the cluster can spare the member, and take it out (Kubernetes: drain)."""

    async def after_disruption(self, name: str) -> None:
        """Bring it back and gate on the cluster's health (Kubernetes: Ready, uncordon)."""


D = TypeVar("D", bound=Disruptable)


class OsUpdates(Step[D]):
    id = "os-updates"
    disruptive = True

    def plan(self, view: View) -> list[PlannedStep]:
        os = view.os_updates
        if os is None or view.spec.destroyed:
            return []
        out = []
        for n in view.nodes:
            if n.joined and needs_os_work(n.upgradable, n.reboot_required, os):
                names = os_packages(n.upgradable, os.policy)
                what = f"upgrade {', '.join(names)}" if names else "no packages"
                reboot = ", reboot" if os.reboot == "auto" else ""
                out.append(self.item(f"os updates {n.machine}", f"{what}{reboot} if it asks for one; out of the"
                                     " cluster and back behind its health gate", machines=[n.machine]))
        return out

    async def run(self, r: D, item: PlannedStep) -> None:
        ctx = r.ctx
        name = item.machines[0]
        machine, os = ctx.state.machines.get(name), ctx.desired.os_updates
        if machine is None or os is None:
            return
        # Looked at afresh: a report may be older than the last update, and a step that finds
        # nothing to do disrupts nothing.
        seen = await self._os(ctx, name, [])
        packages = os_packages(seen.upgradable, os.policy)
        reboot = os.reboot == "auto"
        if packages or (reboot and seen.reboot_required):
            await r.before_disruption(name)
            if packages:
                seen = await self._os(ctx, name, packages)
            if reboot and seen.reboot_required:
                await self._reboot(ctx, name)
                seen = await self._os(ctx, name, [])
            await r.after_disruption(name)
        set_os_facts(ctx.state, name, seen.upgradable, seen.reboot_required)
        await ctx.report()

    async def _os(self, ctx: ClusterContext, name: str, packages: list[str]) -> OsUpdateResult:
        return await workflow.execute_activity(
            apply_os_updates,
            OsUpdateInput(machine=ctx.state.machines[name], secrets=ctx.desired.secrets, packages=packages),
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=OS_RETRY,
            summary=f"{'upgrade ' + ' '.join(packages) if packages else 'os updates'} on {name}",
        )

    async def _reboot(self, ctx: ClusterContext, name: str) -> None:
        """Through the provider; the boot id seen first makes a retried reboot a no-op."""
        machine = ctx.state.machines[name]
        seen = await workflow.execute_activity(
            machine_boot_id, BootIdInput(machine=machine, secrets=ctx.desired.secrets),
            start_to_close_timeout=timedelta(minutes=1), retry_policy=OS_RETRY, summary=f"boot id of {name}")
        await workflow.execute_activity(
            reboot_machine,
            RebootMachineInput(provider_name=machine.provider, provider=ctx.provider(machine.provider),
                               machine=machine, secrets=ctx.desired.secrets, boot_id=seen.boot_id),
            start_to_close_timeout=timedelta(minutes=12),
            retry_policy=OS_RETRY,
            summary=f"reboot {name}",
        )
