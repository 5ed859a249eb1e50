"""etcd in desired.yml, and the state its ClusterWorkflow keeps."""

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from orbiter.models.backups import BackupInfo, BackupPolicy
from orbiter.models.base import Model, Spec
from orbiter.models.duration import Duration, parse_duration
from orbiter.models.kinds.base import KindProblem, KindSpec, KindState, MemberBase, PoolRef, PortRule
from orbiter.models.providers import ProviderSpec
from orbiter.models.updates import VersionChoice, one_step

from . import versions
from .messages import CaStep

ROLE = "member"


class EtcdMembers(PoolRef):
    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: int) -> int:
        if not 1 <= value <= 9:
            raise ValueError("must be between 1 and 9")
        return value


class EtcdFlags(Spec):
    """etcd settings orbiter rolls out one member at a time; unset ones keep etcd's defaults."""

    heartbeat_interval: Annotated[StrictInt, Field(ge=10, le=5000)] | None = Field(None, alias="heartbeatInterval")
    election_timeout: Annotated[StrictInt, Field(ge=50, le=50000)] | None = Field(None, alias="electionTimeout")
    snapshot_count: Annotated[StrictInt, Field(ge=1)] | None = Field(None, alias="snapshotCount")
    quota_backend_bytes: Annotated[StrictInt, Field(ge=0)] | None = Field(None, alias="quotaBackendBytes")
    auto_compaction_retention: StrictStr | None = Field(None, alias="autoCompactionRetention")


class CertPolicy(Spec):
    """`certificates: {validity: 365d, renewBefore: 30d}`: member and client certificates are issued
    for `validity` and renewed (member by member, health-gated) `renewBefore` their expiry."""

    validity: Duration = "730d"
    renew_before: Duration = Field("30d", alias="renewBefore")


class RemediationPolicy(Spec):
    """`remediation: {unhealthyAfter: 2m, maxUnhealthy: 1}`: a member unhealthy that long is replaced."""

    unhealthy_after: Duration = Field("2m", alias="unhealthyAfter")
    max_unhealthy: Annotated[StrictInt, Field(ge=1, le=4)] = Field(1, alias="maxUnhealthy")


class DefragPolicy(Spec):
    """`defrag: {every: 24h}`: defragment, member by member, when a database is more than half free."""

    every: Duration


class EtcdCluster(KindSpec):
    kind: Literal["etcd"]
    version: Annotated[StrictStr, Field(pattern=r"^\d+\.\d+\.\d+$")]
    members: EtcdMembers
    tls: StrictBool = True
    flags: EtcdFlags = EtcdFlags()
    backup: BackupPolicy | None = None
    defrag: DefragPolicy | None = None
    certificates: CertPolicy | None = None
    remediation: RemediationPolicy | None = None

    def pools(self) -> list[tuple[tuple[str, ...], PoolRef]]:
        return [(("members",), self.members)]

    def member_role(self, path: tuple[str, ...]) -> tuple[str, str | None]:
        return ROLE, None

    def summary(self) -> str:
        return f"etcd {self.version}"

    def member_ports(self) -> list[PortRule]:
        return [PortRule(ports=["2379", "2380"], why="etcd clients and peers")]

    def backup_policy(self) -> BackupPolicy | None:
        return self.backup

    def warnings(self) -> list[str]:
        return [w] if (w := versions.warning(self.version)) else []

    def problems(self, providers: dict[str, ProviderSpec]) -> list[KindProblem]:
        c = self.certificates
        if c is not None and parse_duration(c.renew_before) >= parse_duration(c.validity):
            return [KindProblem(("certificates", "renewBefore"), f"{c.renew_before} must be shorter than the"
                                f" validity ({c.validity}), or every certificate is renewed at once again")]
        return []
    def current_version(self) -> str | None:
        return self.version

    def version_package(self) -> str | None:
        return "etcd-server"

    def choose_versions(self, offered: list[str]) -> VersionChoice:
        """etcd upgrades one minor at a time and never down (its rolling-upgrade rule: a 3.4 cluster
        takes 3.5 members, not 3.6 ones)."""
        return one_step(self.version, offered)


class EtcdMember(MemberBase):
    # Fixed when the member first starts (ETCD_INITIAL_*), so scaling never restarts a member.
    initial_cluster: str | None = None
    initial_state: Literal["new", "existing"] | None = None
    cert_expiry: str | None = None  # of the member certificate issued last
    cert_applied: str | None = None  # of the one the member was last converged with
    trust_applied: str | None = None  # digest of the CAs it trusted when last converged (None: not tracked yet)


class PendingBackup(Model):
    """A backup asked for and not yet in the store: its id is fixed before the activity runs, so a
    retried or replayed activity writes that one backup, never a second."""

    id: str
    reason: str


class PendingRestore(Model):
    """A restore asked for: its id (fixed before any member is touched) marks each restored member."""

    id: str
    backup: BackupInfo
    by: str = ""
    attempted: bool = False
    started: str | None = None
    ended: str | None = None


class EtcdState(KindState):
    kind: Literal["etcd"] = "etcd"
    members: list[EtcdMember] = []
    backups_taken: int = 0  # the counter backup ids are made from
    pending_backup: PendingBackup | None = None
    backup_running: bool = False
    backup_clock: str | None = None  # workflow time of the last backup: `backup.every` counts from it
    defrag_clock: str | None = None  # of the last scheduled defragmentation
    space_clock: str | None = None  # of the last look for alarms while the cluster rests
    unhealthy_since: dict[str, str] = {}  # member -> workflow time it was first seen unhealthy
    latest_backup: BackupInfo | None = None
    restores: int = 0  # the counter restore ids are made from
    restore: PendingRestore | None = None
    trust: str | None = None  # digest of the CAs members are to trust (see activities/kinds/etcd/certs.py)
    ca_rotation: CaStep | None = None  # the step of `orbiter rotate-ca` under way
    ca_rotations: int = 0  # finished rotations (`orbiter rotate-ca` waits for the count to grow)
