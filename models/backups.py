"""Backups of a cluster's data: where they are kept (`spec.backupStore`), how often and how many
(a kind's `backup:`), and what is known of each one (its metadata, in current.yml and `orbiter
backups`). Pure data; the stores themselves are in activities/backups/."""

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr

from .base import Model, Spec
from .duration import Duration


class DirBackupStore(Spec):
    """A directory on the host of the worker that takes the backup (shared storage for several
    workers). Object stores follow as more members of `BackupStoreSpec`."""

    kind: Literal["dir"]
    path: Annotated[StrictStr, Field(pattern=r"^/")] = "/var/lib/orbiter/backups"


BackupStoreSpec = Annotated[DirBackupStore, Field(discriminator="kind")]


class BackupPolicy(Spec):
    """`backup: {every: 6h, keep: 14}`: a backup on a schedule (optional), and before every
    disruptive change; the newest `keep` are kept."""

    every: Duration | None = None
    keep: Annotated[StrictInt, Field(ge=1, le=1000)] = 14


class BackupInfo(Model):
    """One backup as `orbiter backups` lists it; the store keeps it next to the snapshot."""

    id: str
    cluster: str
    revision: int
    size: int  # bytes of the snapshot (before encryption)
    sha256: str  # of the snapshot (before encryption)
    taken_at: str  # ISO 8601, UTC
    reason: str  # "orbiter backup", "before roll meta-2", "every 6h"
    member: str | None = None  # the member it was taken from
    keys: int | None = None


class BackupListInput(Model):
    store: BackupStoreSpec
    orb: str
    cluster: str


class BackupListResult(Model):
    backups: list[BackupInfo] = []  # newest first


class RestoreRecord(Model):
    """A restore as current.yml records it."""

    id: str  # the backup restored
    revision: int
    by: str = ""
    started: str
    ended: str | None = None
