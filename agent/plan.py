"""Pure planning: how a NodeObserved differs from its NodeSpec, as an ordered list of Changes.

Runs inside the workflow, so it must be deterministic: no I/O, no clocks, no secrets. Files whose
content is a secret are compared through `secret_digests`, which the observe activity computes
where the secret may live; the plan only compares strings.

Besides the spec's own files the agent owns a few generated files (unit files, the sysctl and
module persistence files, apt source lists); `managed_files` names them so observe, plan and
apply agree on their paths and content.
"""

import contextlib
import fnmatch
import hashlib
from dataclasses import dataclass

from orbiter.models.claims import CLAIM_FILE
from orbiter.models.nodespec import Change, FileSpec, NodeObserved, NodeSpec

UNIT_DIR = "/etc/systemd/system"
SYSCTL_CONF = "/etc/sysctl.d/99-orbiter.conf"
MODULES_CONF = "/etc/modules-load.d/orbiter.conf"
APT_SOURCE_DIR = "/etc/apt/sources.list.d"
APT_SOURCE_PREFIX = "orbiter-"
APT_SOURCE_SUFFIX = ".list"
HEADER = "# Managed by orbiter; local edits are reverted.\n"

# Change kinds in the order the plan emits them (apply relies on this order too).
KINDS = ("hostname", "apt_source", "package", "file", "module", "sysctl", "swap", "unit", "restart")


@dataclass(frozen=True)
class ManagedFile:
    """A file the agent writes: from the spec, or generated from it (`origin` says which)."""

    path: str
    content: str | None  # None for a secret file: the activity resolves `secret`
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    secret: str | None = None
    origin: str = "file"  # file | unit:<name> | sysctl | module


def version_matches(installed: str, wanted: str) -> bool:
    """Exact apt versions compare equal; "3.4.23*" (a mirror's build of an upstream version) by glob, as apt does."""
    return fnmatch.fnmatchcase(installed, wanted) if "*" in wanted else installed == wanted


def sha256(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def norm_mode(mode: str) -> str:
    """ "644", "0644" and "00644" all mean the same mode; compare the canonical "0644"."""
    return f"{int(mode, 8):04o}"


def norm_value(value: str) -> str:
    """sysctl values print tab-separated ("32768\t60999"); compare them whitespace-insensitively."""
    return " ".join(value.split())


def norm_module(name: str) -> str:
    """modprobe treats - and _ alike; /sys/module uses _."""
    return name.replace("-", "_")


def unit_path(name: str) -> str:
    return f"{UNIT_DIR}/{name}"


def apt_source_path(name: str) -> str:
    return f"{APT_SOURCE_DIR}/{APT_SOURCE_PREFIX}{name}{APT_SOURCE_SUFFIX}"


def apt_source_content(line: str) -> str:
    return HEADER + line.strip() + "\n"


def sysctl_conf(spec: NodeSpec) -> str | None:
    if not spec.sysctls:
        return None
    return HEADER + "".join(f"{k} = {norm_value(v)}\n" for k, v in sorted(spec.sysctls.items()))


def modules_conf(spec: NodeSpec) -> str | None:
    if not spec.kernel_modules:
        return None
    return HEADER + "".join(f"{m}\n" for m in spec.kernel_modules)


def managed_files(spec: NodeSpec) -> list[ManagedFile]:
    """Every file the spec implies, in plan order: spec files, unit files, persistence files.

    Persistence files are always listed (content None when the spec has nothing for them) so a
    stale one is observed and removed.
    """
    out = [
        ManagedFile(
            f.path,
            None if f.content_secret else f.content,
            norm_mode(f.mode),
            f.owner,
            f.group,
            f.content_secret,
            "file",
        )
        for f in spec.files
    ]
    out += [
        ManagedFile(unit_path(u.name), u.content, origin=f"unit:{u.name}")
        for u in spec.units
        if u.content is not None
    ]
    out.append(ManagedFile(SYSCTL_CONF, sysctl_conf(spec), origin="sysctl"))
    out.append(ManagedFile(MODULES_CONF, modules_conf(spec), origin="module"))
    if spec.claim is not None:
        out.append(ManagedFile(CLAIM_FILE, spec.claim, "0600", origin="claim"))
    return out


def observed_paths(spec: NodeSpec) -> list[str]:
    """Paths whose digest and mode the observe script reports (deduplicated, in order)."""
    return list(dict.fromkeys(f.path for f in managed_files(spec)))


def describe(change: Change) -> str:
    """One line for humans: "file /etc/default/etcd (content)", "unit etcd.service start"."""
    if change.kind in ("unit", "restart", "swap") or not change.detail:
        return f"{change.kind} {change.target} {change.detail}".rstrip()
    return f"{change.kind} {change.target} ({change.detail})"


def _file_change(
    f: ManagedFile, observed: NodeObserved, secret_digests: dict[str, str]
) -> Change | None:
    """What differs for one file: content (or creation), else mode/owner/group."""
    have = observed.files.get(f.path)
    if f.origin in ("sysctl", "module") and f.content is None:
        # The spec has no sysctls/modules: remove a stale persistence file, else nothing.
        return Change(kind=f.origin, target=f.path, detail="remove") if have else None
    kind = (
        "unit"
        if f.origin.startswith("unit:")
        else (f.origin if f.origin in ("sysctl", "module") else "file")
    )
    target = f.origin[5:] if kind == "unit" else f.path
    prefix = "content" if kind == "unit" else None
    # A secret file without a digest (none given) is rewritten: over-applying beats missing.
    want = secret_digests.get(f.path) if f.secret is not None else sha256(f.content or "")
    if have is None:
        return Change(kind=kind, target=target, detail=prefix or "create")
    if want is None or have != want:
        detail = "content (secret)" if f.secret is not None else "content"
        return Change(kind=kind, target=target, detail=detail)
    attrs = f"{f.mode} {f.owner} {f.group}"
    have_attrs = observed.file_modes.get(f.path)
    if have_attrs is not None and _norm_attrs(have_attrs) != attrs:
        detail = f"mode {attrs} (was {have_attrs})"
        return Change(kind=kind, target=target, detail=f"file {detail}" if prefix else detail)
    return None


def _norm_attrs(attrs: str) -> str:
    parts = attrs.split()
    if len(parts) == 3:
        with contextlib.suppress(ValueError):
            parts[0] = norm_mode(parts[0])
    return " ".join(parts)


def plan(
    spec: NodeSpec, observed: NodeObserved, secret_digests: dict[str, str] | None = None
) -> list[Change]:
    """Changes that bring `observed` to `spec`, in a fixed order; [] when converged.

    Order: hostname, apt sources, packages, files, modules, sysctls, swap, units (content,
    enable/disable, start/stop), restarts. `secret_digests` maps the path of each
    content_secret file to the digest the observed digest must equal; both come from the
    observe activity, so the plan never needs the secret.
    """
    digests = secret_digests or {}
    changes: list[Change] = []

    if observed.hostname != spec.hostname:
        changes.append(
            Change(kind="hostname", target=spec.hostname, detail=f"was {observed.hostname}")
        )

    wanted_sources = {s.name: s.line.strip() for s in spec.apt_sources}
    for name, line in wanted_sources.items():
        have = observed.apt_sources.get(name)
        if have != line:
            changes.append(
                Change(kind="apt_source", target=name, detail="add" if have is None else "update")
            )
    for name in sorted(set(observed.apt_sources) - set(wanted_sources)):
        changes.append(Change(kind="apt_source", target=name, detail="remove"))

    changed_packages: set[str] = set()
    for p in spec.packages:
        have = observed.packages.get(p.name)
        held = p.name in observed.held
        parts = []
        if have is None:
            parts.append(f"install {p.version}")
        elif not version_matches(have, p.version):
            parts.append(f"{have} -> {p.version}")
        if p.hold and not held:
            parts.append("hold")
        elif held and not p.hold:
            parts.append("unhold")
        if parts:
            changes.append(Change(kind="package", target=p.name, detail=", ".join(parts)))
            if have is None or not version_matches(have, p.version):
                changed_packages.add(p.name)

    files = managed_files(spec)
    file_changes = {}
    for f in files:
        c = _file_change(f, observed, digests)
        if c is not None:
            file_changes[f.path] = c
    changes += [c for c in file_changes.values() if c.kind == "file"]

    have_modules = {norm_module(m) for m in observed.kernel_modules}
    for m in spec.kernel_modules:
        if norm_module(m) not in have_modules:
            changes.append(Change(kind="module", target=m, detail="load"))
    changes += [c for c in file_changes.values() if c.kind == "module"]

    for key, value in spec.sysctls.items():
        have = observed.sysctls.get(key)
        if have is None or norm_value(have) != norm_value(value):
            changes.append(
                Change(kind="sysctl", target=key, detail=f"{have or '?'} -> {norm_value(value)}")
            )
    changes += [c for c in file_changes.values() if c.kind == "sysctl"]

    if spec.swap_off and observed.swap_active:
        changes.append(Change(kind="swap", target="swap", detail="off"))

    # Paths and packages changed in this plan, for restart_on.
    touched = {p for p, c in file_changes.items() if c.kind == "file"} | changed_packages
    restarts: list[Change] = []
    for u in spec.units:
        state = observed.units.get(u.name)
        enabled = state.enabled if state else False
        active = state.active if state else False
        content = file_changes.get(unit_path(u.name)) if u.content is not None else None
        if content is not None:
            changes.append(content)
        if u.enabled and not enabled:
            changes.append(Change(kind="unit", target=u.name, detail="enable"))
        elif enabled and not u.enabled:
            changes.append(Change(kind="unit", target=u.name, detail="disable"))
        if u.active and not active:
            changes.append(Change(kind="unit", target=u.name, detail="start"))
        elif active and not u.active:
            changes.append(Change(kind="unit", target=u.name, detail="stop"))
        elif u.active and active:
            reasons = [r for r in u.restart_on if r in touched]
            if content is not None and content.detail.startswith("content"):
                reasons.insert(0, "unit file")
            if reasons:
                restarts.append(
                    Change(
                        kind="restart", target=u.name, detail="(" + ", ".join(reasons) + " changed)"
                    )
                )
    return changes + restarts


def secret_files(spec: NodeSpec) -> list[FileSpec]:
    """The spec's files whose content is a secret (resolved by activities only)."""
    return [f for f in spec.files if f.content_secret is not None]
