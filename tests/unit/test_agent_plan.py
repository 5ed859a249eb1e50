"""plan() is pure: every kind of difference, order, restart_on, secret digests; apply's scripts."""

import subprocess

import pytest

from orbiter.agent.apply import POLICY_RC, build_steps
from orbiter.agent.plan import (
    KINDS,
    MODULES_CONF,
    SYSCTL_CONF,
    describe,
    managed_files,
    plan,
    sha256,
    unit_path,
)
from orbiter.models.nodespec import (
    AptSource,
    Change,
    FileSpec,
    NodeObserved,
    NodeSpec,
    Package,
    UnitSpec,
    UnitState,
)

UNIT = "[Unit]\nDescription=etcd\n[Service]\nExecStart=/usr/bin/etcd\n"


def full_spec() -> NodeSpec:
    return NodeSpec(
        hostname="etcd-1",
        apt_sources=[AptSource(name="local", line="deb [trusted=yes] http://10.77.0.1:8079/ ./")],
        packages=[
            Package(name="etcd-server", version="3.5.16-1", hold=True),
            Package(name="curl", version="7.88.1-10"),
        ],
        files=[
            FileSpec(path="/etc/default/etcd", content="ETCD_NAME=etcd-1\n"),
            FileSpec(
                path="/etc/etcd/key.pem",
                content="",
                mode="0600",
                owner="etcd",
                group="etcd",
                content_secret="etcd-key",
            ),
        ],
        units=[
            UnitSpec(name="etcd.service", content=UNIT, restart_on=["/etc/default/etcd"]),
            UnitSpec(name="chrony.service", enabled=False, active=False),
        ],
        sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.ip_local_port_range": "32768 60999"},
        kernel_modules=["br-netfilter", "overlay"],
        swap_off=True,
    )


def converged(spec: NodeSpec) -> tuple[NodeObserved, dict[str, str]]:
    """What a converged machine reports, with secret files as the observe activity tokens them."""
    files: dict[str, str | None] = {}
    modes: dict[str, str] = {}
    digests: dict[str, str] = {}
    for f in managed_files(spec):
        if f.content is None and f.secret is None:
            files[f.path] = None
            continue
        files[f.path] = "secret:current" if f.secret else sha256(f.content or "")
        modes[f.path] = f"{f.mode} {f.owner} {f.group}"
        if f.secret:
            digests[f.path] = "secret:current"
    observed = NodeObserved(
        hostname=spec.hostname,
        packages={p.name: p.version for p in spec.packages},
        held=[p.name for p in spec.packages if p.hold],
        files=files,
        file_modes=modes,
        units={
            u.name: UnitState(name=u.name, enabled=u.enabled, active=u.active) for u in spec.units
        },
        sysctls={k: v.replace(" ", "\t") for k, v in spec.sysctls.items()},
        kernel_modules=[m.replace("-", "_") for m in spec.kernel_modules],
        swap_active=False,
        apt_sources={s.name: s.line for s in spec.apt_sources},
    )
    return observed, digests


def kinds(changes: list[Change]) -> list[tuple[str, str, str]]:
    return [(c.kind, c.target, c.detail) for c in changes]


def test_converged_machine_yields_nothing() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    assert plan(spec, observed, digests) == []


def test_empty_spec_on_bare_machine() -> None:
    spec = NodeSpec(hostname="a")
    assert plan(spec, NodeObserved(hostname="a", files={SYSCTL_CONF: None})) == []


def test_hostname() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.hostname = "debian"
    assert kinds(plan(spec, observed, digests)) == [("hostname", "etcd-1", "was debian")]


def test_apt_sources_add_update_remove() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.apt_sources = {"local": "deb http://old/ ./", "stale": "deb http://x/ ./"}
    assert kinds(plan(spec, observed, digests)) == [
        ("apt_source", "local", "update"),
        ("apt_source", "stale", "remove"),
    ]
    observed.apt_sources = {}
    assert kinds(plan(spec, observed, digests)) == [("apt_source", "local", "add")]


def test_packages_one_change_each() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.packages = {"curl": "7.88.1-9"}
    observed.held = ["curl"]
    assert kinds(plan(spec, observed, digests)) == [
        ("package", "etcd-server", "install 3.5.16-1, hold"),
        ("package", "curl", "7.88.1-9 -> 7.88.1-10, unhold"),
    ]


def test_package_hold_only() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.held = []
    assert kinds(plan(spec, observed, digests)) == [("package", "etcd-server", "hold")]


def test_files_create_content_mode() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.files["/etc/default/etcd"] = None
    del observed.file_modes["/etc/default/etcd"]
    observed.file_modes["/etc/etcd/key.pem"] = "644 root root"
    changes = plan(spec, observed, digests)
    assert kinds(changes) == [
        ("file", "/etc/default/etcd", "create"),
        ("file", "/etc/etcd/key.pem", "mode 0600 etcd etcd (was 644 root root)"),
        ("restart", "etcd.service", "(/etc/default/etcd changed)"),
    ]
    observed.files["/etc/default/etcd"] = sha256("old")
    assert plan(spec, observed, digests)[0] == Change(
        kind="file", target="/etc/default/etcd", detail="content"
    )
    assert describe(plan(spec, observed, digests)[0]) == "file /etc/default/etcd (content)"


def test_secret_file_digests() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.files["/etc/etcd/key.pem"] = "secret:stale"
    assert kinds(plan(spec, observed, digests)) == [
        ("file", "/etc/etcd/key.pem", "content (secret)")
    ]
    observed.files["/etc/etcd/key.pem"] = "secret:current"
    # Without digests the plan cannot know: it rewrites (deterministically).
    assert kinds(plan(spec, observed)) == [("file", "/etc/etcd/key.pem", "content (secret)")]
    assert plan(spec, observed, digests) == []


def test_modules_and_persistence() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.kernel_modules = ["overlay"]
    observed.files[MODULES_CONF] = None
    assert kinds(plan(spec, observed, digests)) == [
        ("module", "br-netfilter", "load"),
        ("module", MODULES_CONF, "create"),
    ]


def test_sysctls_whitespace_insensitive_and_persistence() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.sysctls["net.ipv4.ip_forward"] = "0"
    observed.sysctls["net.ipv4.ip_local_port_range"] = "32768  \t 60999"
    observed.files[SYSCTL_CONF] = sha256("old")
    assert kinds(plan(spec, observed, digests)) == [
        ("sysctl", "net.ipv4.ip_forward", "0 -> 1"),
        ("sysctl", SYSCTL_CONF, "content"),
    ]


def test_stale_persistence_files_removed() -> None:
    spec = NodeSpec(hostname="a")
    observed = NodeObserved(hostname="a", files={SYSCTL_CONF: sha256("x"), MODULES_CONF: None})
    assert kinds(plan(spec, observed)) == [("sysctl", SYSCTL_CONF, "remove")]


def test_swap() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.swap_active = True
    assert kinds(plan(spec, observed, digests)) == [("swap", "swap", "off")]
    assert plan(spec.model_copy(update={"swap_off": False}), observed, digests) == []


def test_units_enable_disable_start_stop() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.units["etcd.service"] = UnitState(name="etcd.service", enabled=False, active=False)
    observed.units["chrony.service"] = UnitState(name="chrony.service", enabled=True, active=True)
    changes = plan(spec, observed, digests)
    assert kinds(changes) == [
        ("unit", "etcd.service", "enable"),
        ("unit", "etcd.service", "start"),
        ("unit", "chrony.service", "disable"),
        ("unit", "chrony.service", "stop"),
    ]
    assert describe(changes[1]) == "unit etcd.service start"


def test_unit_missing_from_observation_is_off() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    del observed.units["etcd.service"]
    assert kinds(plan(spec, observed, digests)) == [
        ("unit", "etcd.service", "enable"),
        ("unit", "etcd.service", "start"),
    ]


def test_unit_content_change_restarts_running_unit() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.files[unit_path("etcd.service")] = sha256("old unit")
    assert kinds(plan(spec, observed, digests)) == [
        ("unit", "etcd.service", "content"),
        ("restart", "etcd.service", "(unit file changed)"),
    ]


def test_unit_content_change_on_stopped_unit_starts_it() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.files[unit_path("etcd.service")] = None
    observed.units["etcd.service"] = UnitState(name="etcd.service", enabled=True, active=False)
    assert kinds(plan(spec, observed, digests)) == [
        ("unit", "etcd.service", "content"),
        ("unit", "etcd.service", "start"),
    ]


def test_restart_on_file_change() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.files["/etc/default/etcd"] = sha256("ETCD_NAME=old\n")
    changes = plan(spec, observed, digests)
    assert kinds(changes) == [
        ("file", "/etc/default/etcd", "content"),
        ("restart", "etcd.service", "(/etc/default/etcd changed)"),
    ]
    assert describe(changes[-1]) == "restart etcd.service (/etc/default/etcd changed)"


def test_restart_on_package_change_and_not_on_unrelated_file() -> None:
    spec = full_spec()
    spec.units[0].restart_on.append("etcd-server")
    observed, digests = converged(spec)
    observed.packages["etcd-server"] = "3.5.15-1"
    observed.files["/etc/etcd/key.pem"] = "secret:stale"
    assert kinds(plan(spec, observed, digests)) == [
        ("package", "etcd-server", "3.5.15-1 -> 3.5.16-1"),
        ("file", "/etc/etcd/key.pem", "content (secret)"),
        ("restart", "etcd.service", "(etcd-server changed)"),
    ]


def test_mode_only_change_is_no_restart_reason_for_unit_file() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.file_modes[unit_path("etcd.service")] = "0755 root root"
    assert kinds(plan(spec, observed, digests)) == [
        ("unit", "etcd.service", "file mode 0644 root root (was 0755 root root)")
    ]


def test_order_of_everything() -> None:
    spec = full_spec()
    observed = NodeObserved(hostname="debian", swap_active=True)
    changes = plan(spec, observed, {})
    order = [KINDS.index(c.kind) for c in changes]
    assert order == sorted(order)
    assert [c.kind for c in changes][:4] == ["hostname", "apt_source", "package", "package"]
    assert {c.kind for c in changes} == set(KINDS) - {"restart"}
    # Deterministic: the same inputs plan the same list.
    assert plan(spec, observed, {}) == changes


def test_apply_steps_from_a_full_plan() -> None:
    spec = full_spec()
    observed = NodeObserved(hostname="debian", swap_active=True)
    changes = plan(spec, observed, {})
    steps = build_steps(spec, changes)
    assert steps.prepare is not None and steps.finish is not None
    prep, fin = steps.prepare, steps.finish
    assert "need_update=1" in prep and "apt-get update" in prep
    assert POLICY_RC in prep
    assert prep.index("exit 101") < prep.index("apt-get install") < prep.index("restore_policy\n")
    assert " etcd-server=3.5.16-1 curl=7.88.1-10 >&2" in prep
    assert "--allow-downgrades" in prep and "--force-confold" in prep
    assert "apt-mark hold etcd-server" in prep and "etcd-server hold" in prep
    paths = [u.path for u in steps.uploads]
    assert paths == [
        "/etc/default/etcd",
        "/etc/etcd/key.pem",
        MODULES_CONF,
        SYSCTL_CONF,
        unit_path("etcd.service"),
    ]
    key = steps.uploads[1]
    assert key.content is None and key.secret == "etcd-key" and key.mode == "0600"
    assert "modprobe br-netfilter" in fin and "swapoff -a" in fin
    assert "net.ipv4.ip_forward=1" in fin
    assert fin.index("systemctl daemon-reload") < fin.index("systemctl enable --quiet etcd.service")
    assert fin.index("systemctl enable --quiet etcd.service") < fin.index(
        "systemctl start etcd.service"
    )
    for script in (prep, fin):
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_apply_restart_is_stop_reload_start() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.files["/etc/default/etcd"] = sha256("old")
    steps = build_steps(spec, plan(spec, observed, digests))
    assert steps.prepare is None
    assert [u.path for u in steps.uploads] == ["/etc/default/etcd"]
    fin = steps.finish or ""
    stop = fin.index("systemctl stop etcd.service")
    reload = fin.index("systemctl daemon-reload", stop)
    assert stop < reload < fin.index("systemctl start etcd.service")


def test_apply_hold_only_does_not_install() -> None:
    spec = full_spec()
    observed, digests = converged(spec)
    observed.held = ["curl"]
    steps = build_steps(spec, plan(spec, observed, digests))
    assert steps.prepare is not None
    assert "apt-get install" not in steps.prepare and "apt-mark unhold curl" in steps.prepare
    assert steps.finish is None and steps.uploads == []


@pytest.mark.parametrize("name", ["bad name", "-x", "a;b"])
def test_apply_rejects_bad_hostname(name: str) -> None:
    from orbiter.agent.apply import ApplyError

    spec = NodeSpec(hostname=name)
    with pytest.raises(ApplyError):
        build_steps(spec, [Change(kind="hostname", target=name)])
