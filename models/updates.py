"""Update policies in desired.yml: which versions orbiter may move a cluster to on its own (by a
commit of its own, so git stays the one source of truth), which OS packages it applies to machines,
and which versions of itself a worker started with `--self-update` may install.

Pure: the choice of a version is a function of the version desired.yml names, the versions the
package source offers and the kind's upgrade rules (KindSpec.choose_versions).
"""

import re
from datetime import timedelta
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import Field, StrictStr, field_validator

from .base import Model, Spec
from .duration import Duration, parse_duration

VersionPolicy = Literal["patch", "minor", "none"]
OsPolicy = Literal["security", "all", "none"]
MIN_CHECK = timedelta(seconds=1)


class Updates(Spec):
    """`updates: {policy: patch, check: 6h}`: how far orbiter moves the cluster's version by itself."""

    policy: VersionPolicy = "none"
    check: Duration = "6h"  # how often the package source is asked (also with policy none: status shows it)

    @field_validator("check")
    @classmethod
    def _check(cls, value: str) -> str:
        if parse_duration(value) < MIN_CHECK:
            raise ValueError(f"{value} is too short: check at most once a second (6h is the default)")
        return value


class OsUpdates(Spec):
    """`osUpdates: {policy: security, reboot: auto}`: OS packages applied member by member inside the
    maintenance windows; `reboot: auto` reboots machines that need it (/var/run/reboot-required),
    one at a time, also when orbiter did not install what asked for the reboot."""

    policy: OsPolicy = "none"
    reboot: Literal["auto", "never"] = "auto"

    @property
    def acts(self) -> bool:
        return self.policy != "none" or self.reboot == "auto"


class OrbiterUpdates(Spec):
    """`spec.orbiter: {version: ">=0.2,<0.3", updates: patch}`: the versions of orbiter the orb runs
    on; a worker started with `--self-update` installs the newest one allowed."""

    version: StrictStr = ">=0"  # a PEP 440 version specifier
    updates: Literal["patch", "none"] = "none"

    @field_validator("version")
    @classmethod
    def _specifier(cls, value: str) -> str:
        try:
            SpecifierSet(value)
        except InvalidSpecifier:
            raise ValueError(f"{value!r} is not a version range: write one like \">=0.2,<0.3\"") from None
        return value


# -- versions ---------------------------------------------------------------------------------------

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


def upstream(apt_version: str) -> str:
    """ "3.4.23-4+b6" -> "3.4.23"; "1:2.0-1" -> "2.0"; "1.31.4-1.1" -> "1.31.4"."""
    return apt_version.split(":", 1)[-1].rsplit("-", 1)[0]


def semver(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of "3.4.23", "v1.31.2" or an apt version; None for anything else."""
    m = _SEMVER.match(upstream(version.strip()))
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


class VersionChoice(Model):
    """What the package source offers beyond the cluster's version, by how far each step goes:
    written as desired.yml writes versions ("3.5.1", "v1.31.4")."""

    patch: str | None = None  # the newest newer patch of the same minor
    minor: str | None = None  # the newest version one minor up the kind's rules allow

    def for_policy(self, policy: VersionPolicy) -> str | None:
        """What a policy takes: minor prefers one minor up, and takes a patch when there is none."""
        if policy == "patch":
            return self.patch
        if policy == "minor":
            return self.minor or self.patch
        return None

    @property
    def available(self) -> str | None:
        """The furthest the kind could go in one step, whatever the policy (what status reports)."""
        return self.minor or self.patch


def one_step(current: str, offered: list[str], prefix: str = "") -> VersionChoice:
    """The usual rule of a semver kind: the newest patch of the same minor, and the newest version of
    the next minor (never two minors, never another major, never down). Unparsable versions and the
    current one are ignored."""
    have = semver(current)
    if have is None:
        return VersionChoice()
    seen = {v for v in (semver(o) for o in offered) if v is not None and v > have and v[0] == have[0]}
    patches = [v for v in seen if v[1] == have[1]]
    minors = [v for v in seen if v[1] == have[1] + 1]

    def text(v: tuple[int, int, int] | None) -> str | None:
        return None if v is None else prefix + ".".join(map(str, v))

    return VersionChoice(patch=text(max(patches, default=None)), minor=text(max(minors, default=None)))


SECURITY = " (security)"  # how an upgradable package from a security archive is listed


def os_packages(upgradable: list[str] | None, policy: OsPolicy) -> list[str]:
    """The package names a policy applies of a node's upgradable list ("name=version[ (security)]")."""
    if policy == "none":
        return []
    return [entry.split("=", 1)[0] for entry in upgradable or [] if policy == "all" or entry.endswith(SECURITY)]


class UpdatesStatus(Model):
    """A cluster's version updates in current.yml and `orbiter status`: reported with any policy."""

    policy: VersionPolicy = "none"
    version: str  # what desired.yml names
    available: str | None = None  # the newest version one step away the package source offers
    takes: str | None = None  # what the policy takes of it (None: nothing, or policy none)
    source: str = ""  # where the versions were seen
    checked: str | None = None  # ISO 8601, UTC
    committed: str | None = None  # orbiter's commit moving desired.yml to `takes`
    note: str | None = None  # why nothing was committed although the policy takes a version
    error: str | None = None  # the last check failed: why
    offered: list[str] = Field(default_factory=list)  # every version the source offers, newest first


class OrbiterStatus(Model):
    """orbiter's own versions as the orb sees them: the workers polling its task queue, and the last
    self-update (current.yml and `orbiter status`)."""

    workers: list[str] = []  # "orbiter 0.2.1 (build 0.2.1+ab12cd34ef56) on host pid 123"
    update: str | None = None  # the last self-update's one line: done, or rolled back and why
    at: str | None = None


class SelfUpdateReport(Model):
    """A worker's report of a self-update to the orbs it serves (signal `orbiter_update`)."""

    line: str
    at: str
    ok: bool


__all__ = ["MIN_CHECK", "OrbiterStatus", "OrbiterUpdates", "OsPolicy", "OsUpdates", "SelfUpdateReport",
           "Updates", "UpdatesStatus", "VersionChoice", "VersionPolicy", "one_step", "semver", "upstream"]


def needs_os_work(upgradable: list[str] | None, reboot_required: bool | None, os: "OsUpdates | None") -> bool:
    """Whether a machine has OS updates its cluster's policy applies, or a reboot it allows."""
    if os is None:
        return False
    return bool(os_packages(upgradable, os.policy)) or (os.reboot == "auto" and bool(reboot_required))
