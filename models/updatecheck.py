"""Messages of the update activities: what a package source offers, orbiter's version commit, and
OS updates applied to one machine."""

from .base import Model
from .machines import Machine
from .providers import Provider
from .refs import RepoRef, SecretsRef


class OfferedVersions(Model):
    versions: list[str]  # apt versions of the package, newest first
    source: str  # where they were seen, for the commit message and status


class MachineOsFacts(Model):
    upgradable: list[str] = []  # "name=version[ (security)]"
    reboot_required: bool = False
    error: str | None = None  # the machine did not answer: its facts are unknown this time


class CheckUpdatesInput(Model):
    cluster: str
    provider_name: str
    provider: Provider
    package: str | None  # the kind's version package; None: the kind has no version updates
    machines: list[Machine]  # the cluster's machines: asked over SSH where the provider serves nothing
    secrets: SecretsRef
    refresh_os: bool = False  # fetch each machine's package lists and list its OS updates


class CheckUpdatesResult(Model):
    offered: OfferedVersions | None = None
    os: dict[str, MachineOsFacts] = {}  # machine id -> facts (refresh_os only)


class CommitVersionInput(Model):
    repo: RepoRef
    cluster: str
    old: str  # as desired.yml writes it
    new: str
    message: str


class CommitVersionResult(Model):
    commit: str | None = None  # orbiter's commit; None: nothing committed (see note)
    note: str | None = None  # dropped because ..., or already there


class OsUpdateInput(Model):
    machine: Machine
    secrets: SecretsRef
    packages: list[str] = []  # names to upgrade; empty: only look


class OsUpdateResult(Model):
    upgradable: list[str]  # what apt still offers afterwards
    reboot_required: bool
