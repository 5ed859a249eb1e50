"""Which version of orbiter a `--self-update` worker may move to: a pure function of the running
version, what the package index offers, what the orbs it serves allow (`spec.orbiter`) and the
versions that already failed here."""

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .base import Model
from .updates import OrbiterUpdates


class OrbiterPolicy(Model):
    """An orb's `spec.orbiter` (query `orbiter_policy` of its GitOps workflow); None: not stated."""

    spec: OrbiterUpdates | None = None


def allowed_by_orbs(policies: list[OrbiterUpdates | None]) -> tuple[SpecifierSet, bool]:
    """The versions every orb allows, and whether orbiter may update itself at all: only when some
    orb asks for it (`updates: patch`) and none says `updates: none` (one worker serves them all)."""
    stated = [p for p in policies if p is not None]
    ranges = SpecifierSet(",".join(p.version for p in stated if p.version.strip()))
    return ranges, bool(stated) and all(p.updates == "patch" for p in stated)


def choose_version(current: str, offered: list[str], policies: list[OrbiterUpdates | None],
                   failed: set[str]) -> str | None:
    """The newest offered patch of the running minor version the orbs allow and that has not failed
    here; None: stay."""
    ranges, enabled = allowed_by_orbs(policies)
    if not enabled:
        return None
    have = Version(current)
    best: Version | None = None
    for text in offered:
        try:
            v = Version(text)
        except InvalidVersion:
            continue
        if (v > have and v.release[:2] == have.release[:2] and not v.is_prerelease and str(v) not in failed
                and ranges.contains(v) and (best is None or v > best)):
            best = v
    return str(best) if best is not None else None
