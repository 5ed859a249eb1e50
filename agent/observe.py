"""One POSIX sh script that reports everything `plan` needs in a single SSH round trip.

The script relies on sh, coreutils, dpkg-query and systemctl only (minbase images lack procps,
so sysctls are read from /proc/sys). Output is one record per line, `TAG<TAB>index<TAB>...`,
where index points into lists the script was built from: names and paths from the spec never
appear in the output, and free-form values (hostname, sysctl values, apt source files) are
base64, so odd content cannot break parsing. Lines without a known tag (motd, sudo noise) are
ignored; a missing end marker means truncated output and is an error.
"""

import base64
import binascii
import shlex

from orbiter.agent.osupdates import FUNCTION as OS_FUNCTION
from orbiter.agent.osupdates import OsObserveError, parse_field
from orbiter.agent.plan import (
    APT_SOURCE_DIR,
    APT_SOURCE_PREFIX,
    APT_SOURCE_SUFFIX,
    norm_mode,
    norm_module,
    observed_paths,
)
from orbiter.models.claims import CLAIM_FILE
from orbiter.models.nodespec import NodeObserved, NodeSpec, UnitState

BEGIN = "orbiter-observe v1"
END = "orbiter-observe end"

# UnitFileState values that enable/disable cannot change: they match either wish. (One
# `systemctl show` per unit: `is-enabled` runs systemd-sysv-install for units with an init script.)
_FIXED_ENABLEMENT = {"static", "generated", "transient", "indirect", "alias"}
_ENABLED = {"enabled", "enabled-runtime", "linked", "linked-runtime"}
_ACTIVE = {"active", "activating", "reloading", "refreshing"}
# dpkg's current-state letter (2nd of db:Status-Abbrev): installed, triggers awaited/pending.
_INSTALLED = {"i", "W", "t"}
# dpkg's selection (1st letter): `h` is what `apt-mark hold` sets.
_HELD = "h"

_PRELUDE = r"""export LC_ALL=C
b64() { base64 -w0 2>/dev/null; }
obs_file() {
  if [ -f "$2" ]; then
    s=$(sha256sum < "$2" 2>/dev/null | cut -d' ' -f1)
    m=$(stat -L -c '%a %U %G' -- "$2" 2>/dev/null)
    printf 'F\t%s\t%s\t%s\n' "$1" "${s:-?}" "$m"
  else
    printf 'F\t%s\t-\t\n' "$1"
  fi
}
obs_pkg() {
  v=$(dpkg-query -W -f='${db:Status-Abbrev}\t${Version}' -- "$2" 2>/dev/null | head -n1)
  printf 'P\t%s\t%s\n' "$1" "$v"
}
obs_unit() {
  e=; a=
  while IFS='=' read -r k v; do
    case $k in UnitFileState) e=$v ;; ActiveState) a=$v ;; esac
  done <<OBS_UNIT
$(systemctl show -p UnitFileState -p ActiveState -- "$2" 2>/dev/null)
OBS_UNIT
  printf 'U\t%s\t%s\t%s\n' "$1" "${e:-not-found}" "${a:-unknown}"
}
obs_sysctl() {
  if [ -r "$2" ]; then printf 'S\t%s\t%s\n' "$1" "$(cat -- "$2" 2>/dev/null | b64)"
  else printf 'S\t%s\t-\n' "$1"; fi
}
obs_module() {
  if [ -d "/sys/module/$2" ] || grep -q "^$2 " /proc/modules 2>/dev/null; then
    printf 'M\t%s\t1\n' "$1"
  else printf 'M\t%s\t0\n' "$1"; fi
}
"""


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def observe_script(spec: NodeSpec) -> str:
    """The script for `spec`; run it with `sh -s` (as root) and feed stdout to parse_observation."""
    q = shlex.quote
    lines = [_PRELUDE, OS_FUNCTION, f"echo {q(BEGIN)}"]
    lines.append(
        "printf 'H\\t%s\\t%s\\n' \"$(uname -n | b64)\" "
        "\"$( (head -n1 /etc/hostname 2>/dev/null || true) | tr -d '\\n' | b64)\""
    )
    for i, p in enumerate(spec.packages):
        lines.append(f"obs_pkg {i} {q(p.name)}")
    for i, path in enumerate(observed_paths(spec)):
        lines.append(f"obs_file {i} {q(path)}")
    for i, u in enumerate(spec.units):
        lines.append(f"obs_unit {i} {q(u.name)}")
    for i, key in enumerate(spec.sysctls):
        lines.append(f"obs_sysctl {i} {q(_sysctl_path(key))}")
    for i, m in enumerate(spec.kernel_modules):
        lines.append(f"obs_module {i} {q(norm_module(m))}")
    lines.append(
        "printf 'W\\t%s\\t%s\\n' \"$(tail -n +2 /proc/swaps 2>/dev/null | grep -c .)\" "
        "\"$(grep -Ec '^[[:space:]]*[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap"
        "([[:space:]]|$)' /etc/fstab 2>/dev/null)\""
    )
    src = f"{APT_SOURCE_DIR}/{APT_SOURCE_PREFIX}*{APT_SOURCE_SUFFIX}"
    lines.append(
        f'for f in {src}; do [ -f "$f" ] || continue; '
        "printf 'A\\t%s\\t%s\\n' \"$(basename \"$f\" | tr -d '\\n' | b64)\" "
        '"$(b64 < "$f")"; done'
    )
    if spec.claim is not None:
        lines.append(f"if [ -f {q(CLAIM_FILE)} ]; then printf 'C\\t%s\\n' \"$(b64 < {q(CLAIM_FILE)})\";"
                     " else printf 'C\\t-\\n'; fi")
    lines.append("obs_os")  # OS updates: agent/osupdates.py
    lines.append(f"echo {q(END)}")
    return "\n".join(lines) + "\n"


class ObserveError(Exception):
    """The observe output is unusable (truncated or malformed); the message is one line."""


def _unb64(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode(errors="replace")
    except (binascii.Error, ValueError) as err:
        raise ObserveError(f"bad base64 in observe output: {value[:40]!r}") from err


def _index(value: str, items: list) -> int:
    i = int(value)
    if not 0 <= i < len(items):
        raise ObserveError(f"observe output index {i} out of range")
    return i


def _apt_source(filename: str, content: str) -> tuple[str, str] | None:
    if not (filename.startswith(APT_SOURCE_PREFIX) and filename.endswith(APT_SOURCE_SUFFIX)):
        return None
    name = filename[len(APT_SOURCE_PREFIX) : -len(APT_SOURCE_SUFFIX)]
    lines = [ln.strip() for ln in content.splitlines()]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    # Several lines (edited by hand) join so they never equal the spec's single line.
    return name, " | ".join(body)


def parse_observation(spec: NodeSpec, stdout: str) -> NodeObserved:
    """Turn the script's output (for the same `spec`) into a NodeObserved."""
    lines = stdout.splitlines()
    if BEGIN not in lines or END not in lines:
        raise ObserveError("observe output is truncated (missing begin or end marker)")
    lines = lines[lines.index(BEGIN) + 1 : lines.index(END)]
    paths = observed_paths(spec)
    sysctl_keys = list(spec.sysctls)
    hostname = ""
    packages: dict[str, str] = {}
    held: list[str] = []
    files: dict[str, str | None] = {}
    modes: dict[str, str] = {}
    units: dict[str, UnitState] = {}
    sysctls: dict[str, str] = {}
    modules: list[str] = []
    swap = False
    sources: dict[str, str] = {}
    claim: str | None = None
    upgradable: list[str] | None = None
    reboot: bool | None = None
    try:
        for line in lines:
            tag, _, rest = line.partition("\t")
            f = rest.split("\t")
            if tag == "H":
                kernel, etc = _unb64(f[0]).strip(), _unb64(f[1]).strip()
                # Both must match; a mismatch shows both so the plan re-applies and humans see why.
                hostname = kernel if etc in (kernel, "") else f"{kernel} (/etc/hostname: {etc})"
            elif tag == "P":
                pkg = spec.packages[_index(f[0], spec.packages)]
                status = f[1] if len(f) > 1 else ""
                if len(status) >= 2 and status[1] in _INSTALLED and len(f) > 2 and f[2]:
                    packages[pkg.name] = f[2]
                if status[:1] == _HELD:
                    held.append(pkg.name)
            elif tag == "F":
                path = paths[_index(f[0], paths)]
                files[path] = None if f[1] == "-" else f[1]
                attrs = f[2].split() if len(f) > 2 else []
                if files[path] is not None and len(attrs) == 3:
                    modes[path] = f"{norm_mode(attrs[0])} {attrs[1]} {attrs[2]}"
            elif tag == "U":
                u = spec.units[_index(f[0], spec.units)]
                enabled_state, active_state = f[1].strip(), f[2].strip()
                enabled = (
                    u.enabled if enabled_state in _FIXED_ENABLEMENT else enabled_state in _ENABLED
                )
                units[u.name] = UnitState(
                    name=u.name, enabled=enabled, active=active_state in _ACTIVE
                )
            elif tag == "S":
                key = sysctl_keys[_index(f[0], sysctl_keys)]
                if f[1] != "-":
                    sysctls[key] = " ".join(_unb64(f[1]).split())
            elif tag == "M":
                if f[1] == "1":
                    modules.append(spec.kernel_modules[_index(f[0], spec.kernel_modules)])
            elif tag == "W":
                swap = any(int(x or 0) > 0 for x in f[:2])
            elif tag == "C":
                claim = None if f[0] == "-" else _unb64(f[0])
            elif tag == "O":
                upgradable = parse_field(f[0])
            elif tag == "R":
                reboot = f[0] == "1"
            elif tag == "A":
                parsed = _apt_source(_unb64(f[0]), _unb64(f[1]))
                if parsed is not None:
                    sources[parsed[0]] = parsed[1]
    except (IndexError, ValueError, OsObserveError) as err:
        raise ObserveError(f"malformed observe output line {line[:80]!r}") from err
    return NodeObserved(
        hostname=hostname,
        packages=packages,
        held=sorted(set(held)),
        files=files,
        file_modes=modes,
        units=units,
        sysctls=sysctls,
        kernel_modules=modules,
        swap_active=swap,
        apt_sources=sources,
        claim=claim,
        upgradable=upgradable,
        reboot_required=reboot,
    )
