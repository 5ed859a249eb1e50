"""Kubernetes versions: parsing, the skew rules kubeadm enforces, minor-by-minor upgrades, repositories."""

import re
from collections.abc import Iterable

from .spec import KubernetesCluster

KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"


def parse_version(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of "v1.31.2", "1.31.2" or an apt version such as "1.31.2-1.1"."""
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+~].*)?$", version)
    if not m:
        raise ValueError(f"{version!r} is not a Kubernetes version like v1.31.2")
    major, minor, patch = (int(g) for g in m.groups())
    return major, minor, patch


def _v(version: tuple[int, int, int]) -> str:
    return "v{}.{}.{}".format(*version)


def parse_minor(version: str) -> tuple[int, int]:
    """(major, minor) of a version or of a minor's pattern such as "1.30.*" (an upgrade hop's packages)."""
    m = re.match(r"^v?(\d+)\.(\d+)\.(?:\d+|\*)", version)
    if not m:
        raise ValueError(f"{version!r} is not a Kubernetes version like v1.31.2")
    return int(m.group(1)), int(m.group(2))


def intermediate_minors(current: str, desired: str) -> list[str]:
    """Package patterns ("1.30.*") of the minors an upgrade passes through before `desired`'s.

    Which patch of a minor the repository offers is known only to the repository: the caller
    resolves each pattern to an exact version before upgrading to it.
    """
    refused = check_skew(current, desired)
    if refused:
        raise ValueError(refused)
    have, want = parse_version(current), parse_version(desired)
    return [f"{want[0]}.{minor}.*" for minor in range(have[1] + 1, want[1])]


def kubeadm_api_version(k8s_version: str) -> str:
    """The kubeadm config API this Kubernetes reads best: v1beta4 from 1.31, v1beta3 for 1.22-1.30."""
    major, minor, _ = parse_version(k8s_version)
    if (major, minor) < (1, 22):
        raise ValueError(f"Kubernetes {k8s_version} is too old: orbiter supports 1.22 and later")
    return "v1beta4" if (major, minor) >= (1, 31) else "v1beta3"


def default_repository(version: str) -> str:
    """The upstream apt line for the version's minor (pkgs.k8s.io has one repository per minor)."""
    major, minor = parse_minor(version)
    return f"deb [signed-by={KEYRING}] https://pkgs.k8s.io/core:/stable:/v{major}.{minor}/deb/ /"


def repository(spec: KubernetesCluster, version: str | None = None) -> str:
    """packages.repository when set, else upstream for `version` (an upgrade hop) or spec.version."""
    return spec.packages.repository or default_repository(version or spec.version)


def check_skew(current: str, desired: str) -> str | None:
    """Why going from `current` to `desired` is refused, or None. Upgrades across minors are allowed:
    upgrade_path() splits them into one-minor hops."""
    have, want = parse_version(current), parse_version(desired)
    if have[0] != want[0]:
        return f"upgrade from {_v(have)} to {_v(want)} changes the major version: not supported"
    if want[1] < have[1]:
        return f"downgrade from {_v(have)} to {_v(want)} crosses a minor version: not supported"
    if want < have:
        return (
            f"downgrade from {_v(have)} to {_v(want)}: kubeadm cannot downgrade a control plane,"
            " not even a patch release: not supported"
        )
    return None


def upgrade_path(current: str, desired: str, available: Iterable[str] = ()) -> list[str]:
    """The versions to upgrade through, one minor at a time, ending at `desired`.

    Each intermediate minor goes to its highest patch among `available` (versions the package
    repository offers, e.g. "1.30.6-1.1"): patch versions cannot be known offline.
    """
    refused = check_skew(current, desired)
    if refused:
        raise ValueError(refused)
    have, want = parse_version(current), parse_version(desired)
    if have == want:
        return []
    known = [parse_version(v) for v in available]
    path: list[str] = []
    for minor in range(have[1] + 1, want[1]):
        patches = [v for v in known if v[:2] == (want[0], minor)]
        if not patches:
            raise ValueError(
                f"upgrade from {_v(have)} to {_v(want)} goes through v{want[0]}.{minor},"
                f" but the package repository offers no v{want[0]}.{minor} version"
            )
        path.append(_v(max(patches)))
    return path + [_v(want)]
