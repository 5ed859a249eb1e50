"""current.yml: what orbiter observed, written back to the repo so git history is the audit log."""

from typing import Literal

import yaml
from pydantic import Field

from .backups import BackupInfo, RestoreRecord
from .base import Model
from .change import ApprovalStatus, ChangeRecord, Override
from .nodespec import Change, UnitState
from .updates import OrbiterStatus, UpdatesStatus

# libyaml's safe loader and dumper (same documents, same text) when PyYAML has them: the pure
# Python ones take seconds on the current.yml of a thousand nodes.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

Phase = Literal["Pending", "Reconciling", "AwaitingApproval", "AwaitingWindow", "Ready", "Blocked", "Paused",
                "Destroying", "Destroyed"]


class Rejected(Model):
    """A commit whose desired.yml was invalid; the previous desired state stays in force."""

    commit: str
    file: str
    line: int | None = None  # none for a file that is missing; current.yml then leaves it out
    message: str


class NodeStatus(Model):
    machine: str
    ip: str
    role: str
    group: str | None = None  # a kind's group of the node (Kubernetes: controlPlane or a worker group)
    version: str | None = None
    ready: bool = False
    host_key: str | None = Field(None, alias="hostKey")
    pool: str | None = None
    provider: str | None = None
    cordoned: bool | None = None
    joined: bool = False  # a member of the cluster (etcd member, Kubernetes node), not only a machine
    healthy: bool | None = None
    leader: bool | None = None
    db_size: int | None = Field(None, alias="dbSize")
    db_size_in_use: int | None = Field(None, alias="dbSizeInUse")
    alarms: list[str] = []  # a kind's alarms on the member (etcd: NOSPACE, CORRUPT)
    cert_expiry: str | None = Field(None, alias="certExpiry")  # the member certificate's notAfter
    error: str | None = None
    drift: list[Change] = []
    units: dict[str, UnitState] = {}
    # OS updates the machine's apt offers ("openssl 3.0.15-1~deb12u1 (security)"), and whether it
    # asks for a reboot (/var/run/reboot-required): None until its node agent or a check said so.
    upgradable: list[str] | None = None
    reboot_required: bool | None = Field(None, alias="rebootRequired")


class ClusterStatus(Model):
    kind: str
    phase: Phase = "Pending"
    commit: str | None = None  # the last commit fully applied
    desired_commit: str | None = Field(None, alias="desiredCommit")
    plan: list[str] = []  # the steps of the reconcile that runs (or ran last), as `orbiter plan` names them
    done: list[str] = []  # those of them that finished, in order
    step: str | None = None
    commands: list[str] = []  # operator commands waiting for the next reconcile: "reboot w1"
    error: str | None = None
    orphaned: bool = False
    endpoints: list[str] = []
    approval: ApprovalStatus | None = None  # the last plan that asked for approval
    override: Override | None = None  # the last `orbiter apply-now`
    history: list[ChangeRecord] = []  # the latest reconciles, newest last (git log of current.yml has all)
    nodes: list[NodeStatus] = []
    warnings: list[str] = []  # about the desired spec (a version with a known bug)
    backup: BackupInfo | None = None  # the latest backup of the cluster's data
    restore: RestoreRecord | None = None  # the latest restore
    updates: UpdatesStatus | None = None  # versions the package source offers, and what orbiter did about them


class OrbStatus(Model):
    api_version: Literal["orbiter.dev/v1"] = Field("orbiter.dev/v1", alias="apiVersion")
    kind: Literal["OrbStatus"] = "OrbStatus"
    orb: str | None = None
    commit: str | None = None  # the last valid desired commit taken into force
    rejected: Rejected | None = None
    error: str | None = None  # e.g. the git remote cannot be reached
    clusters: dict[str, ClusterStatus] = {}
    orbiter: OrbiterStatus | None = None  # the workers' versions and the last self-update

    def to_yaml(self) -> str:
        data = self.model_dump(by_alias=True, exclude_none=True, mode="json")
        data = {"apiVersion": data.pop("apiVersion"), "kind": data.pop("kind"), "orb": self.orb,
                "commit": self.commit, "rejected": data.pop("rejected", None), **data}
        header = "# Written by orbiter: the observed state of this orb. Do not edit.\n"
        return header + yaml.dump(data, Dumper=_DUMPER, sort_keys=False, width=120)

    @classmethod
    def from_yaml(cls, text: str | None) -> "OrbStatus":
        if not text or not text.strip():
            return cls()
        return cls.model_validate(yaml.load(text, Loader=_LOADER) or {})

    def status_json(self, progress: dict[str, str] | None = None) -> dict:
        """The stable interface of `orbiter status -o json`. `progress` is the latest line of each
        cluster's running activity (read live by the CLI, never written to current.yml)."""
        progress = progress or {}
        return {
            "orb": self.orb,
            "commit": self.commit,
            "orbiter": self.orbiter.model_dump(mode="json") if self.orbiter else None,
            "rejected": self.rejected.model_dump() if self.rejected else None,
            "clusters": [
                {
                    "name": name,
                    "kind": c.kind,
                    "phase": c.phase,
                    "commit": c.commit,
                    "error": c.error,
                    "step": c.step,
                    "progress": progress.get(name),
                    "desiredCommit": c.desired_commit,
                    "approval": c.approval.model_dump(mode="json") if c.approval else None,
                    "override": c.override.model_dump(mode="json") if c.override else None,
                    "warnings": c.warnings,
                    "backup": c.backup.model_dump(mode="json", exclude_none=True) if c.backup else None,
                    "restore": c.restore.model_dump(mode="json", exclude_none=True) if c.restore else None,
                    "updates": c.updates.model_dump(mode="json", exclude={"offered"}) if c.updates else None,
                    "nodes": [
                        {"machine": n.machine, "ip": n.ip, "role": n.role, "version": n.version, "ready": n.ready,
                         "dbSize": n.db_size, "dbSizeInUse": n.db_size_in_use, "alarms": n.alarms,
                         "certExpiry": n.cert_expiry, "upgradable": n.upgradable or [],
                         "rebootRequired": bool(n.reboot_required)}
                        for n in c.nodes
                    ],
                }
                for name, c in sorted(self.clusters.items())
            ],
        }
