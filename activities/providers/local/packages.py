"""Apt versions: what a wanted upstream version ("3.4.23", "1.30.*", "*") means as an exact Debian
version, from the packages a repo serves or the host's apt offers."""

import fnmatch
import re
import subprocess

from temporalio.exceptions import ApplicationError

ANY = "*"  # a wanted version meaning "the newest version offered"


def upstream(version: str) -> str:
    """"3.4.23-4+b6" -> "3.4.23"; "1:2.0-1" -> "2.0"."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


def wanted_matches(version: str, wanted: str) -> bool:
    """An apt version against a wanted one: "*" (any), an upstream pattern ("1.30.*"), exact."""
    if wanted == ANY or version == wanted:
        return True
    return fnmatch.fnmatchcase(upstream(version), wanted) if "*" in wanted else upstream(version) == wanted


def version_key(version: str) -> list[tuple[int, int | str]]:
    """Orders apt versions numerically where they are numbers ("1.30.10" after "1.30.6")."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.:~+-]", version)]


def served_versions(served: dict[str, set[str]], packages: dict[str, str]) -> dict[str, str]:
    """The exact versions of wanted packages a repo already serves; the highest when several match."""
    out: dict[str, str] = {}
    for name, wanted in packages.items():
        match = sorted((v for v in served.get(name, set()) if wanted_matches(v, wanted)), key=version_key)
        if match:
            out[name] = match[-1]
    return out


def _offered(name: str) -> list[str]:
    """The versions of a package the host's apt knows, newest first."""
    proc = subprocess.run(["apt-cache", "madison", name], capture_output=True, text=True, timeout=60)
    return [line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.count("|") >= 2]


def resolve_host_versions(packages: dict[str, str]) -> dict[str, str]:
    """The exact Debian versions the host's apt offers for wanted upstream versions."""
    out: dict[str, str] = {}
    updated = False
    for name, wanted in packages.items():
        offered = _offered(name)
        match = [v for v in offered if wanted_matches(v, wanted)]
        if not match and not updated:
            # The host's package lists may never have been fetched (a fresh machine) or be stale.
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False, timeout=600)
            updated = True
            offered = _offered(name)
            match = [v for v in offered if wanted_matches(v, wanted)]
        if not match:
            have = ", ".join(sorted({upstream(v) for v in offered})) or "none"
            raise ApplicationError(f"package {name} {wanted} is not available (apt offers: {have})",
                                   type="PackagesError", non_retryable=True)
        out[name] = match[0]
    return out
