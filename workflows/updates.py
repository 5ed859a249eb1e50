"""A ClusterWorkflow's update check: on a durable timer (`updates.check`, default 6h) it asks the
package source which versions of the kind's package it offers and, with an OS update policy, each
machine for its OS updates. It never changes a machine itself:

- a version the cluster's policy takes becomes a commit of orbiter's to desired.yml (the version
  line only), which then runs through the normal path: plan, approval `upgrade`, windows;
- OS updates and reboots become a reconcile of the commit in force, whose runbook plans them as
  steps (workflows/osupdates.py), so approvals, windows and health gates apply as to any step.

With policy none it only reports (current.yml `updates`, `orbiter status`).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.gitupdate import commit_version_update
    from orbiter.activities.updates import check_updates
    from orbiter.models.cluster import ClusterState
    from orbiter.models.duration import parse_duration
    from orbiter.models.errors import error_line
    from orbiter.models.gitops import PokeInput
    from orbiter.models.node import NodeReport
    from orbiter.models.updatecheck import CheckUpdatesInput, CommitVersionInput
    from orbiter.models.updates import UpdatesStatus, needs_os_work, upstream

from .gates import now_iso

CHECK_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(seconds=30),
                          maximum_attempts=3)
OFFERED_KEPT = 10
CHECKS_BEFORE_CONTINUE_AS_NEW = 500  # an idle cluster checking every 3s continues as new every 25 minutes


def set_os_facts(state: ClusterState, machine: str, upgradable: list[str] | None, reboot: bool | None) -> None:
    """A machine's OS facts into current.yml's node and into its last report (which the kinds'
    observe steps rebuild nodes from), so the freshest word is kept whoever said it."""
    if upgradable is None and reboot is None:
        return
    for node in state.status.nodes:
        if node.machine == machine:
            node.upgradable, node.reboot_required = upgradable, reboot
    report = state.node_reports.get(machine)
    if report is not None:
        state.node_reports[machine] = report.model_copy(update={"upgradable": upgradable, "reboot_required": reboot})


def note_os_facts(state: ClusterState, report: NodeReport) -> None:
    """A node agent's round reported them (from its one observe round trip)."""
    set_os_facts(state, report.machine_id, report.upgradable, report.reboot_required)


@dataclass
class UpdateHooks:
    paused: Callable[[], bool]
    report: Callable[[], Awaitable[None]]


class UpdateChecks:
    def __init__(self, cluster: str, state: ClusterState, hooks: UpdateHooks) -> None:
        self.cluster, self.state, self.hooks = cluster, state, hooks
        self.checks = 0
        self.rollover = False  # this run made enough checks: the workflow continues as new

    def due_in(self) -> timedelta | None:
        """Time until the next check; None: nothing to check (no desired state, nothing applied yet)."""
        desired, status = self.state.desired, self.state.status
        if desired is None or status.commit is None or desired.spec.destroyed:
            return None
        interval = parse_duration(desired.spec.updates.check)
        seen = status.updates
        if seen is None or seen.checked is None or (seen.policy, seen.version) != (
                desired.spec.updates.policy, desired.spec.current_version() or ""):
            return timedelta(0)  # never checked, or checked for another version or policy: status would be stale
        return datetime.fromisoformat(seen.checked) + interval - workflow.now()

    async def run_due(self) -> None:
        """The check that fell due while the cluster was idle (never during a reconcile); after
        many, `rollover` asks the workflow to continue as new."""
        await self.check()
        self.checks += 1
        if self.checks >= CHECKS_BEFORE_CONTINUE_AS_NEW:
            self.rollover = True

    def settled(self) -> bool:
        """Ready at the commit in force: orbiter adds no change of its own to a change under way."""
        desired, status = self.state.desired, self.state.status
        return (desired is not None and status.phase == "Ready" and status.commit == desired.commit
                and not self.hooks.paused())

    async def check(self) -> None:
        desired = self.state.desired
        assert desired is not None
        spec = desired.spec
        previous = self.state.status.updates
        before = self._snapshot()
        status = UpdatesStatus(policy=spec.updates.policy, version=spec.current_version() or "", checked=now_iso())
        package = spec.version_package()
        os = desired.os_updates
        refresh = os is not None and os.acts  # also for reboot: auto alone (the listing says reboot-required)
        members = self.state.kind.members if self.state.kind else []
        machines = [self.state.machines[m.name] for m in members if m.name in self.state.machines]
        provider = spec.pools()[0][1].provider
        if package is not None or refresh:
            try:
                result = await workflow.execute_activity(
                    check_updates,
                    CheckUpdatesInput(cluster=self.cluster, provider_name=provider,
                                      provider=desired.providers[provider], package=package, machines=machines,
                                      secrets=desired.secrets, refresh_os=refresh),
                    start_to_close_timeout=timedelta(minutes=10),
                    retry_policy=CHECK_RETRY,
                    summary=f"update check of {self.cluster}",
                )
            except ActivityError as err:
                status.error = error_line(err)
                result = None
            if result is not None:
                for machine, facts in result.os.items():
                    if facts.error is None:
                        set_os_facts(self.state, machine, facts.upgradable, facts.reboot_required)
                if result.offered is not None:
                    choice = spec.choose_versions(result.offered.versions)
                    status.available, status.takes = choice.available, choice.for_policy(spec.updates.policy)
                    status.source = result.offered.source
                    status.offered = list(dict.fromkeys(upstream(v) for v in result.offered.versions))[:OFFERED_KEPT]
        if previous is not None and (previous.takes, previous.version) == (status.takes, status.version):
            status.committed, status.note = previous.committed, previous.note
        self.state.status.updates = status
        if status.takes and status.takes != status.version and not (status.committed or status.note) and self.settled():
            await self._commit(status)
        if self.settled() and any(needs_os_work(n.upgradable, n.reboot_required, os) for n in self.state.status.nodes
                                  if n.joined):
            self.state.retry_requested = True  # a reconcile of the commit in force plans the OS update steps
        if self._snapshot() != before:  # a check that finds the same makes no write-back of its own
            await self.hooks.report()

    def _snapshot(self) -> dict:
        return self.state.status.model_dump(mode="json", exclude={"updates": {"checked"}})

    async def _commit(self, status: UpdatesStatus) -> None:
        """The policy's version as orbiter's commit; the GitOps workflow is poked to read it at once."""
        desired = self.state.desired
        assert desired is not None and status.takes is not None
        kind = desired.spec.kind
        message = (f"orbiter: update {self.cluster} {kind} {status.version} -> {status.takes}"
                   f" (policy {status.policy}, offered by {status.source})\n\n"
                   f"clusters.{self.cluster}.updates.policy is {status.policy}: orbiter moves the version to the newest"
                   f" one the policy allows.\nSet it to none to keep versions as you write them.\n")
        try:
            result = await workflow.execute_activity(
                commit_version_update,
                CommitVersionInput(repo=desired.secrets.repo, cluster=self.cluster, old=status.version,
                                   new=status.takes, message=message),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=CHECK_RETRY,
                summary=f"commit {self.cluster} {kind} {status.takes}",
            )
        except ActivityError as err:
            status.error = error_line(err)
            return
        status.committed, status.note = result.commit, result.note
        if result.commit is not None:
            try:
                await workflow.get_external_workflow_handle(desired.gitops_workflow_id).signal(
                    "poke", PokeInput(reason=f"version update of {self.cluster}"))
            except Exception:  # noqa: BLE001 - the next poll reads the commit all the same
                workflow.logger.info("poke after the version update of %s failed", self.cluster)
