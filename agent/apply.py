"""Turn planned Changes into few SSH round trips: a prepare script, atomic uploads, a finish script.

Why three phases and not one: files are written after packages are installed (a package may
create the user that owns a config file, or the directory it lives in) but before services
start, and policy-rc.d keeps packages from starting services with their default config.
Scripts print `@@orbiter-step <name>` before each step so a failure names the step.
"""

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from orbiter.activities.ssh import AuthFailed, HostKeyChanged, SshError, SshSession, Unreachable
from orbiter.agent.plan import (
    ManagedFile,
    apt_source_content,
    apt_source_path,
    managed_files,
    norm_value,
    unit_path,
)
from orbiter.models.nodespec import Change, NodeSpec

STEP = "@@orbiter-step "
POLICY_RC = "/usr/sbin/policy-rc.d"
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_STDERR_TAIL = 5

_PRELUDE = r"""set -eu
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
step() { printf '@@orbiter-step %s\n' "$1"; }
unit_failed() {
  journalctl -u "$1" -n 5 --no-pager -o cat >&2 2>/dev/null || true
  exit 1
}
"""

_POLICY = f"""step 'policy-rc.d'
if [ -e {POLICY_RC} ] && ! grep -q '# orbiter' {POLICY_RC} \\
    && [ ! -e {POLICY_RC}.orbiter-saved ]; then
  mv {POLICY_RC} {POLICY_RC}.orbiter-saved
fi
printf '#!/bin/sh\\n# orbiter: no service starts during installs\\nexit 101\\n' > {POLICY_RC}
chmod 0755 {POLICY_RC}
restore_policy() {{
  rm -f {POLICY_RC}
  if [ -e {POLICY_RC}.orbiter-saved ]; then mv {POLICY_RC}.orbiter-saved {POLICY_RC}; fi
}}
trap restore_policy EXIT
"""

_FSTAB_SWAP = (
    r"s@^([[:space:]]*[^#[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+swap([[:space:]]|$).*)$"
    r"@# orbiter swap off: \1@"
)


class ApplyError(Exception):
    """A step failed on the machine; the message is one line naming machine and step."""


@dataclass
class Upload:
    path: str
    mode: str
    owner: str
    group: str
    content: bytes | None  # None: a secret file, filled by the caller from `secret`
    secret: str | None = None


@dataclass
class ApplySteps:
    """What apply runs, in order; scripts are None when a phase has nothing to do."""

    prepare: str | None
    uploads: list[Upload] = field(default_factory=list)
    finish: str | None = None


def _script(body: list[str]) -> str | None:
    return _PRELUDE + "\n".join(body) + "\n" if body else None


def build_steps(spec: NodeSpec, changes: list[Change]) -> ApplySteps:
    """Pure: the scripts and uploads for `changes` (as `plan` made them for `spec`)."""
    q = shlex.quote
    by_kind: dict[str, list[Change]] = {}
    for c in changes:
        by_kind.setdefault(c.kind, []).append(c)
    files = {f.path: f for f in managed_files(spec)}
    packages = {p.name: p for p in spec.packages}
    sources = {s.name: s for s in spec.apt_sources}

    prepare: list[str] = []
    if by_kind.get("hostname"):
        name = spec.hostname
        if not _HOSTNAME.match(name):
            raise ApplyError(f"invalid hostname {name!r}")
        prepare += [
            f"step {q('hostname ' + name)}",
            f"printf '%s\\n' {name} > /etc/hostname",
            f"hostname {name} 2>/dev/null || hostnamectl set-hostname {name}",
            "if grep -q '^127\\.0\\.1\\.1[[:space:]]' /etc/hosts; then "
            f"sed -i 's/^127\\.0\\.1\\.1[[:space:]].*/127.0.1.1\\t{name}/' /etc/hosts; "
            f"else printf '127.0.1.1\\t%s\\n' {name} >> /etc/hosts; fi",
        ]
    source_changed = False
    for c in by_kind.get("apt_source", []):
        path = apt_source_path(c.target)
        prepare.append(f"step {q('apt source ' + c.target)}")
        if c.detail == "remove" or c.target not in sources:
            prepare.append(f"rm -f {q(path)}")
        else:
            content = apt_source_content(sources[c.target].line)
            prepare.append(
                f"printf '%s' {q(content)} > {q(path + '.tmp')} && "
                f"mv -f {q(path + '.tmp')} {q(path)}"
            )
        source_changed = True

    pkg_changes = [c for c in by_kind.get("package", []) if c.target in packages]
    install = [
        packages[c.target]
        for c in pkg_changes
        if any(p.startswith("install ") or " -> " in p for p in c.detail.split(", "))
    ]
    if install or source_changed:
        prepare.append(f"need_update={1 if source_changed else 0}")
        for p in install:
            prepare.append(
                # apt-cache show exits 0 for a version it does not know: look for its stanza.
                f"apt-cache show {q(p.name + '=' + p.version)} 2>/dev/null | grep -q '^Package:' || need_update=1"
            )
        prepare += [
            'if [ "$need_update" = 1 ]; then',
            "  step 'apt-get update'",
            "  apt-get update -q >&2",
            "fi",
        ]
    if install:
        args = " ".join(q(f"{p.name}={p.version}") for p in install)
        prepare.append(_POLICY)
        prepare += [
            f"step {q('apt-get install ' + ' '.join(f'{p.name}={p.version}' for p in install))}",
            "apt-get install -y -q --allow-downgrades --allow-change-held-packages"
            " -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-confdef"
            f" {args} >&2",
            "restore_policy",
            "trap - EXIT",
        ]
    hold = [c.target for c in pkg_changes if packages[c.target].hold]
    unhold = [
        c.target
        for c in pkg_changes
        if not packages[c.target].hold and "unhold" in c.detail.split(", ")
    ]
    # dpkg selections are what apt-mark (un)hold writes, at a fifth of its cost.
    if hold:
        selections = "".join(f"{n} hold\\n" for n in hold)
        prepare += [
            f"step {q('apt-mark hold ' + ' '.join(hold))}",
            f"printf {q(selections)} | dpkg --set-selections >&2",
        ]
    if unhold:
        selections = "".join(f"{n} install\\n" for n in unhold)
        prepare += [
            f"step {q('apt-mark unhold ' + ' '.join(unhold))}",
            f"printf {q(selections)} | dpkg --set-selections >&2",
        ]

    uploads: list[Upload] = []
    finish: list[str] = []

    def upload(f: ManagedFile) -> None:
        content = None if f.secret else (f.content or "").encode()
        uploads.append(Upload(f.path, f.mode, f.owner, f.group, content, f.secret))

    for c in by_kind.get("file", []):
        upload(files[c.target])

    for c in by_kind.get("module", []):
        if c.target in files:  # the persistence file
            if c.detail == "remove":
                finish += [f"step {q('remove ' + c.target)}", f"rm -f {q(c.target)}"]
            else:
                upload(files[c.target])
        else:
            finish += [f"step {q('modprobe ' + c.target)}", f"modprobe {q(c.target)}"]
    for c in by_kind.get("sysctl", []):
        if c.target in files:
            if c.detail == "remove":
                finish += [f"step {q('remove ' + c.target)}", f"rm -f {q(c.target)}"]
            else:
                upload(files[c.target])
        else:
            value = norm_value(spec.sysctls[c.target])
            proc = "/proc/sys/" + c.target.replace(".", "/")
            finish += [
                f"step {q('sysctl ' + c.target)}",
                "if command -v sysctl >/dev/null; then "
                f"sysctl -q -w {q(c.target + '=' + value)} >&2; "
                f"else printf '%s\\n' {q(value)} > {q(proc)}; fi",
            ]
    if by_kind.get("swap"):
        finish += [
            "step 'swapoff'",
            "swapoff -a",
            f"if [ -f /etc/fstab ]; then sed -i -E {q(_FSTAB_SWAP)} /etc/fstab; fi",
        ]

    finish += _unit_lines(spec, by_kind, upload, files, bool(install))
    return ApplySteps(prepare=_script(prepare), uploads=uploads, finish=_script(finish))


def _unit_lines(
    spec: NodeSpec,
    by_kind: dict[str, list[Change]],
    upload: Callable[[ManagedFile], None],
    files: dict[str, ManagedFile],
    installed: bool,
) -> list[str]:
    """Unit steps: daemon-reload, enablement, stops, daemon-reload, starts (spec order).

    A daemon-reload after any stop and before any start works around systemd-nspawn hosts where
    start-after-stop of one unit can fail with 219/CGROUP; restarts are stop + start for that
    reason too.
    """
    q = shlex.quote
    wants: dict[str, set[str]] = {}
    for c in by_kind.get("unit", []):
        wants.setdefault(c.target, set()).add(c.detail.split(" ")[0])
    for c in by_kind.get("restart", []):
        wants.setdefault(c.target, set()).add("restart")
    lines: list[str] = []
    reload = installed
    for u in spec.units:
        w = wants.get(u.name, set())
        if w & {"content", "file"} and u.content is not None:
            upload(files[unit_path(u.name)])
            reload = True
    if reload:
        lines += ["step 'systemctl daemon-reload'", "systemctl daemon-reload"]
    if installed:
        # Packages enable their units as they install; put back what the spec says.
        for u in spec.units:
            if not wants.get(u.name, set()) & {"enable", "disable"}:
                verb = "enable" if u.enabled else "disable"
                lines.append(f"systemctl {verb} --quiet {q(u.name)} 2>/dev/null || true")
    for u in spec.units:
        for verb in ("enable", "disable"):
            if verb in wants.get(u.name, set()):
                lines += [
                    f"step {q(f'unit {u.name} {verb}')}",
                    f"systemctl {verb} --quiet {q(u.name)}",
                ]
    stops = [u.name for u in spec.units if wants.get(u.name, set()) & {"stop", "restart"}]
    starts = [u.name for u in spec.units if wants.get(u.name, set()) & {"start", "restart"}]
    for name in stops:
        lines += [f"step {q(f'unit {name} stop')}", f"systemctl stop {q(name)}"]
    if stops and starts:
        lines += ["step 'systemctl daemon-reload'", "systemctl daemon-reload"]
    for name in starts:
        lines += [
            f"step {q(f'unit {name} start')}",
            f"systemctl start {q(name)} || unit_failed {q(name)}",
        ]
    return lines


def _failure(label: str, phase: str, stdout: str, stderr: str, status: int) -> ApplyError:
    steps = [ln[len(STEP) :] for ln in stdout.splitlines() if ln.startswith(STEP)]
    step = steps[-1] if steps else phase
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    tail = " | ".join(lines[-_STDERR_TAIL:])[-400:] or "(no stderr)"
    return ApplyError(f"{label}: apply failed at step {step!r} (exit {status}): {tail}")


def apply_changes(
    session: SshSession,
    spec: NodeSpec,
    changes: list[Change],
    *,
    label: str,
    secret_content: Callable[[str], bytes],
    progress: Callable[[str], None] = lambda _step: None,
    timeout: float = 1800,
) -> None:
    """Run `changes` over one SshSession; raises ApplyError naming `label` and the failing step.

    `secret_content(name)` returns a secret's value (only called for content_secret files);
    `progress(phase)` is called between phases (the activity heartbeats with it).
    """
    steps = build_steps(spec, changes)
    run = session.run
    if steps.prepare:
        progress("prepare")
        r = run("sh -s", stdin=steps.prepare.encode(), timeout=timeout)
        if r.status != 0:
            raise _failure(label, "prepare", r.stdout, r.stderr, r.status)
    for up in steps.uploads:
        progress(f"upload {up.path}")
        content = up.content if up.content is not None else secret_content(up.secret or "")
        try:
            session.upload(up.path, content, mode=up.mode, owner=up.owner, group=up.group)
        except (Unreachable, AuthFailed, HostKeyChanged):
            raise
        except SshError as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ApplyError(f"{label}: apply failed at step 'upload {up.path}': {first}") from err
    if steps.finish:
        progress("finish")
        r = run("sh -s", stdin=steps.finish.encode(), timeout=timeout)
        if r.status != 0:
            raise _failure(label, "finish", r.stdout, r.stderr, r.status)
