"""GitOpsWorkflow: one per repo and branch; polls git, starts cluster workflows, writes current.yml.

It is the only writer to the repository, so concurrent cluster reports never race each other in
git: they land in this workflow's state and leave in one batched commit.
"""

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.git import poll_remote, read_desired, write_back
    from orbiter.activities.machines import ensure_provider_keys
    from orbiter.activities.temporal_ops import TemporalOps
    from orbiter.models.cluster import DesiredUpdate, SignalClusterInput
    from orbiter.models.current import ClusterStatus, OrbStatus
    from orbiter.models.desired import Orb, change_control, cluster_providers, os_updates
    from orbiter.models.duration import parse_duration
    from orbiter.models.errors import error_line
    from orbiter.models.gitops import (
        OBSERVED_MESSAGE,
        REJECTED_MESSAGE,
        ClusterReport,
        GitOpsInput,
        GitOpsState,
        OrbInfo,
        PokeInput,
        PollRemoteInput,
        ReadDesiredInput,
        ReadDesiredResult,
        SyncInput,
        SyncResult,
        WriteBackInput,
    )
    from orbiter.models.ids import cluster_workflow_id
    from orbiter.models.provision import EnsureKeysInput
    from orbiter.models.refs import SecretsRef
    from orbiter.models.selfupdate import OrbiterPolicy
    from orbiter.models.updates import OrbiterStatus, SelfUpdateReport

from .history import bound, history_full
from .notify import Notifier

# Reports that arrive within this window leave in one commit.
BATCH_WINDOW = timedelta(seconds=1)
# A cluster arriving at one of these is news an operator waits for: written without the window.
SETTLED = {"Ready", "Blocked", "Paused", "Destroyed", "AwaitingApproval", "AwaitingWindow"}
ITERATIONS_BEFORE_CONTINUE_AS_NEW = 500
GIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10), maximum_attempts=3
)


@workflow.defn
class GitOpsWorkflow:
    @workflow.init
    def __init__(self, input: GitOpsInput) -> None:
        self.repo = input.repo
        self.state = input.state or GitOpsState()
        self.poked = False
        self.urgent = False
        # Polls started and finished in this run: `sync` waits for one that began after it.
        self.polls_started = 0
        self.polls_finished = 0
        self.head: str | None = None
        self.notifier = Notifier()

    @workflow.run
    async def run(self, input: GitOpsInput) -> None:
        bound()  # first: whether this run bounds its history (workflows/history.py)
        iterations = 0
        poll_due = True
        while True:
            if poll_due or self.poked:
                self.poked = False
                await self._poll()
            if self.state.dirty:
                # Let reports that arrive together leave in one commit, unless a cluster settled.
                if not self.urgent:
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(lambda: self.urgent, timeout=BATCH_WINDOW)
                self.urgent = False
                await self._write_back()
            iterations += 1
            if iterations >= ITERATIONS_BEFORE_CONTINUE_AS_NEW or history_full():
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self.notifier.drain()
                workflow.continue_as_new(GitOpsInput(repo=self.repo, state=self.state))
            interval = timedelta(seconds=self.state.poll_interval_seconds)
            try:
                await workflow.wait_condition(lambda: self.poked or self.state.dirty, timeout=interval)
                poll_due = False
            except TimeoutError:
                poll_due = True

    async def _poll(self) -> None:
        self.polls_started += 1
        try:
            await self._poll_once()
        finally:
            self.polls_finished += 1

    async def _poll_once(self) -> None:
        try:
            head = await workflow.execute_activity(
                poll_remote,
                PollRemoteInput(repo=self.repo),
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=GIT_RETRY,
                summary="poll remote",
            )
        except ActivityError as err:
            self._set_error(f"cannot poll {self.repo.url}: {error_line(err)}")
            return
        self.head = head.commit
        if head.commit == self.state.last_seen_commit:
            return
        try:
            result = await workflow.execute_activity(
                read_desired,
                ReadDesiredInput(repo=self.repo, commit=head.commit),
                start_to_close_timeout=timedelta(seconds=120),
                retry_policy=GIT_RETRY,
                summary=f"read desired.yml at {head.commit[:8]}",
            )
        except ActivityError as err:
            self._set_error(f"cannot read {head.commit[:12]}: {error_line(err)}")
            return
        self.state.last_seen_commit = head.commit
        self.state.last_applied = result.applied or result.commit
        self._set_error(None)
        await self._take(result)

    def _set_error(self, error: str | None) -> None:
        if self.state.status.error != error:
            self.state.status.error = error

    async def _take(self, result: ReadDesiredResult) -> None:
        status = self.state.status
        applied = result.applied or result.commit
        if result.digest == self.state.desired_digest:
            return  # e.g. our own write-back commit: nothing orbiter acts on changed
        if applied == self.state.desired_commit and result.orb is not None:
            # Our own write-back changed secrets.yml (secrets orbiter made): nothing new from anyone.
            self.state.desired_digest, self.state.read_commit = result.digest, result.commit
            return
        if result.orb is None:
            if status.rejected is None or status.rejected.commit != applied:
                status.rejected = result.rejected
                self.state.desired_digest = result.digest
                self.state.dirty = True
                self._notify_rejected(result)
            return
        orb = result.orb
        # Keys are generated once per provider; a commit that adds none costs no activity.
        if not set(orb.spec.providers) <= set(self.state.keyed_providers):
            keys = await workflow.execute_activity(
                ensure_provider_keys,
                EnsureKeysInput(
                    providers=orb.spec.providers,
                    secrets=SecretsRef(repo=self.repo, commit=result.commit, extra=dict(self.state.pending_secrets)),
                ),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=GIT_RETRY,
                summary="ensure provider keys",
            )
            self.state.pending_secrets.update(keys.sealed_secrets)
            self.state.keyed_providers = sorted(orb.spec.providers)
        self.state.orb = orb
        self.state.desired_commit = applied
        self.state.read_commit = result.commit
        self.state.desired_digest = result.digest
        self.state.desired_subject = result.subject
        self.state.poll_interval_seconds = parse_duration(orb.spec.poll_interval).total_seconds()
        status.orb = orb.metadata.name
        status.commit = applied
        status.rejected = None
        for name, cluster in orb.spec.clusters.items():
            current = status.clusters.get(name)
            if current is None or current.kind != cluster.kind:
                status.clusters[name] = ClusterStatus(kind=cluster.kind)
        # Clusters are independent: tell them all at once.
        await asyncio.gather(*(self._signal_cluster(orb, name, applied) for name in orb.spec.clusters))
        for name, cluster_status in status.clusters.items():
            cluster_status.orphaned = name not in orb.spec.clusters
        self.state.dirty = True

    def _notify_rejected(self, result: ReadDesiredResult) -> None:
        """Told with the sinks of the last valid desired.yml: the rejected one cannot be trusted."""
        orb, rejected, read = self.state.orb, result.rejected, self.state.read_commit
        if orb is None or not orb.spec.notify or rejected is None or self.state.desired_commit is None or read is None:
            return
        self.state.notices += 1
        where = f"{rejected.file}:{rejected.line}" if rejected.line else rejected.file
        self.notifier.send(self.state.notices, orb.spec.notify,
                           SecretsRef(repo=self.repo, commit=read, extra=dict(self.state.pending_secrets)),
                           "Rejected", orb.metadata.name,
                           f"commit {rejected.commit[:12]} rejected, {self.state.desired_commit[:12]} stays in force:"
                           f" {where}: {rejected.message}", commit=rejected.commit)

    async def _signal_cluster(self, orb: Orb, name: str, commit: str) -> None:
        cluster = orb.spec.clusters[name]
        providers = cluster_providers(orb, cluster)
        update = DesiredUpdate(
            commit=commit,
            gitops_workflow_id=workflow.info().workflow_id,
            spec=cluster,
            providers=providers,
            secrets=SecretsRef(repo=self.repo, commit=self.state.read_commit or commit,
                               extra=dict(self.state.pending_secrets)),
            drift_interval_seconds=parse_duration(orb.spec.drift_interval).total_seconds(),
            max_parallel=orb.spec.max_parallel,
            control=change_control(orb, cluster),
            notify=orb.spec.notify,
            subject=self.state.desired_subject,
            backup_store=orb.spec.backup_store,
            os_updates=os_updates(orb, cluster),
        )
        try:
            await workflow.execute_activity(
                TemporalOps.signal_cluster,
                SignalClusterInput(
                    orb=orb.metadata.name, cluster=name, gitops_workflow_id=workflow.info().workflow_id, update=update
                ),
                start_to_close_timeout=timedelta(seconds=30),
                summary=f"signal {cluster_workflow_id(orb.metadata.name, name)}",
            )
        except ActivityError as err:
            # Refused (another repository manages this orb): the cluster shows why, nothing else stops.
            status = self.state.status.clusters[name]
            status.phase, status.error = "Blocked", error_line(err)

    async def _write_back(self) -> None:
        message = OBSERVED_MESSAGE
        if self.state.status.rejected:
            message = REJECTED_MESSAGE + self.state.status.rejected.commit[:12]
        sealed = dict(self.state.pending_secrets)
        self.state.dirty = False
        try:
            result = await workflow.execute_activity(
                write_back,
                WriteBackInput(
                    repo=self.repo, status=self.state.status, sealed_secrets=sealed, message=message
                ),
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=GIT_RETRY,
                summary="write current.yml",
            )
        except ActivityError as err:
            # Never drop a write-back: keep it pending and try again on the next round.
            self.state.dirty = True
            self._set_error(f"cannot write back to {self.repo.url}: {error_line(err)}")
            return
        for name, value in sealed.items():
            self.state.committed_secrets[name] = value
            if self.state.pending_secrets.get(name) == value:
                del self.state.pending_secrets[name]
        if result.commit and result.parent == self.state.last_seen_commit:
            # Our own commit on top of what we read holds the same desired.yml: skip reading it.
            # When it went on top of a user's commit instead, the next poll reads that one.
            self.state.last_seen_commit = result.commit

    @workflow.signal
    def poke(self, input: PokeInput | None = None) -> None:
        self.poked = True

    @workflow.signal
    def report(self, report: ClusterReport) -> None:
        status = report.status.model_copy()
        status.orphaned = self.state.orb is not None and report.cluster not in self.state.orb.spec.clusters
        previous = self.state.status.clusters.get(report.cluster)
        if previous != status:
            self.state.status.clusters[report.cluster] = status
            self.state.dirty = True
            if status.phase in SETTLED and (previous is None or previous.phase != status.phase):
                self.urgent = True
        for name, sealed in report.sealed_secrets.items():
            if self.state.pending_secrets.get(name, self.state.committed_secrets.get(name)) != sealed:
                self.state.pending_secrets[name] = sealed
                self.state.dirty = True

    @workflow.query
    def status(self) -> OrbStatus:
        return self.state.status

    @workflow.query
    def about(self) -> OrbInfo:
        orb = self.state.orb
        return OrbInfo(orb=orb.metadata.name if orb else None, repo=self.repo, commit=self.state.read_commit,
                       receiver_secret=orb.spec.receiver.secret if orb and orb.spec.receiver else None)

    @workflow.update
    async def sync(self, input: SyncInput) -> SyncResult:
        """Poll now and return once every cluster settled at what that poll found: one call for
        `git push && orbiter poke --wait` in a CI job, instead of polling `status`."""
        started = self.polls_started
        self.poked = True
        await workflow.wait_condition(lambda: self.polls_finished > started and self._settled())
        status = self.state.status
        target = self.state.desired_commit
        ok = status.error is None and status.rejected is None and all(
            (c := status.clusters[name]).phase in ("Ready", "Destroyed") and c.commit == target
            for name in self._clusters()
        )
        return SyncResult(commit=self.state.last_applied or self.head, status=status, ok=ok)

    def _clusters(self) -> list[str]:
        return list(self.state.orb.spec.clusters) if self.state.orb else []

    def _settled(self) -> bool:
        """Nothing more will happen for the last poll's commit without a new push or an operator."""
        status = self.state.status
        if status.error is not None or self.head is None:
            return True
        if status.rejected is not None and status.rejected.commit == self.state.last_applied:
            return True
        target = self.state.desired_commit
        for name in self._clusters():
            c = status.clusters.get(name)
            if c is None:
                return False
            done = c.phase in ("Ready", "Destroyed") and c.commit == target
            # A paused cluster applies nothing until resumed; a blocked one waits for an operator, as
            # does a plan awaiting approval or a window; a rejected plan is settled for good.
            waiting = c.phase in ("Blocked", "AwaitingApproval", "AwaitingWindow") and c.desired_commit == target
            rejected = c.approval is not None and c.approval.commit == target and c.approval.state == "rejected"
            stuck = c.phase == "Paused" or waiting or rejected
            if not (done or stuck):
                return False
        return True

    # -- orbiter's own updates (worker/selfupdate.py) ------------------------------------------
    @workflow.query
    def orbiter_policy(self) -> OrbiterPolicy:
        """The orb's spec.orbiter: what a `--self-update` worker may install."""
        return OrbiterPolicy(spec=self.state.orb.spec.orbiter if self.state.orb else None)

    @workflow.signal
    def orbiter_update(self, report: SelfUpdateReport) -> None:
        """A self-update done or rolled back: into current.yml and `orbiter status`."""
        self.state.status.orbiter = OrbiterStatus(update=report.line, at=report.at)
        self.state.dirty = True
