"""OS updates in the same round trip as everything else: the packages a machine's apt would upgrade
and whether it asks for a reboot.

The node agent's observe reports them every round, so the listing must cost a converged machine
nothing: `apt-get -s upgrade` runs only when the package lists or the dpkg status changed since it
last ran (their mtimes key a cache under /var/cache/orbiter, which holds the finished base64
field), so a converged round adds one process (stat) to the round trip. Held packages (orbiter
holds the kinds' packages at their versions) are never listed: apt does not upgrade them, so OS
updates never move a version desired.yml names.
"""

import base64
import binascii
import re
import shlex

from orbiter.models.updates import SECURITY

REBOOT_REQUIRED = "/var/run/reboot-required"
CACHE = "/var/cache/orbiter/upgradable"

# One shell function: prints `O<TAB><base64 of the Inst lines>` and `R<TAB>0|1`. A converged round
# costs one process (stat): the cache holds the key and the finished O line, read with builtins.
FUNCTION = rf"""obs_os() {{
  k=$(stat --printf '%Y.' /var/lib/apt/lists /var/lib/dpkg/status 2>/dev/null || true)
  c=; o=
  {{ read -r c; read -r o; }} 2>/dev/null < {CACHE} || true
  if [ "$c" != "$k" ] || [ -z "$o" ]; then
    mkdir -p {CACHE.rsplit('/', 1)[0]}
    o=$(printf 'O\t%s' "$( {{ apt-get -s -q -o Debug::NoLocking=1 upgrade 2>/dev/null | grep '^Inst ' || true; }} \
      | base64 -w0)")
    printf '%s\n%s\n' "$k" "$o" > {CACHE}.tmp && mv -f {CACHE}.tmp {CACHE}
  fi
  printf '%s\n' "$o"
  if [ -e {REBOOT_REQUIRED} ]; then printf 'R\t1\n'; else printf 'R\t0\n'; fi
}}
"""

# `Inst openssl [3.0.11-1~deb12u2] (3.0.15-1~deb12u1 Debian-Security:12/stable-security [amd64])`
_INST = re.compile(r"^Inst (\S+)(?: \[[^\]]*\])? \((\S+)([^\[]*)")


class OsObserveError(Exception):
    """The listing is unusable; one line."""


def parse_inst(text: str) -> list[str]:
    """`name=version`, with " (security)" when a security archive offers it, sorted by name."""
    out = []
    for line in text.splitlines():
        m = _INST.match(line.strip())
        if m:
            security = "-security" in m.group(3) or "Security" in m.group(3)
            out.append(f"{m.group(1)}={m.group(2)}{SECURITY if security else ''}")
    return sorted(out)


def parse_field(value: str) -> list[str]:
    """The O field of the observe output."""
    try:
        return parse_inst(base64.b64decode(value, validate=True).decode(errors="replace"))
    except (binascii.Error, ValueError) as err:
        raise OsObserveError(f"bad base64 in the OS update listing: {value[:40]!r}") from err


def facts(stdout: str) -> tuple[list[str], bool]:
    """(upgradable, reboot required) from a script that ran obs_os."""
    upgradable: list[str] = []
    reboot = False
    for line in stdout.splitlines():
        tag, _, rest = line.partition("\t")
        if tag == "O":
            upgradable = parse_field(rest.strip())
        elif tag == "R":
            reboot = rest.strip() == "1"
    return upgradable, reboot


def refresh_script() -> str:
    """A check: fetch the package lists (a source that does not answer is skipped), then list."""
    return "export LC_ALL=C\n" + FUNCTION + "apt-get update -qq >/dev/null 2>&1 || true\nobs_os\n"


def apply_script(packages: list[str]) -> str:
    """Upgrade exactly these packages (already upgraded ones are no-ops), then list again."""
    names = " ".join(shlex.quote(p) for p in packages)
    install = ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --only-upgrade"
               " -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef"
               f" {names} >&2") if packages else ":"
    return "set -eu\nexport LC_ALL=C\n" + FUNCTION + install + "\nobs_os\n"
