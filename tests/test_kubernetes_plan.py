"""Kubernetes planned purely: upgrade paths, skew refusals, the order of phases, and each machine's NodeSpec."""

from typing import Any

import pytest

from orbiter.models.current import NodeStatus
from orbiter.models.desired import KubernetesCluster
from orbiter.models.kinds import kubernetes as k

AVAILABLE = ["1.29.10-1.1", "1.30.0-1.1", "1.30.6-1.1", "1.30.5-1.1", "1.31.0-1.1", "1.31.2-1.1"]
PKG = {"containerd": "1.6.20~ds1-1+b1", "kubelet": "1.31.2-1.1", "kubeadm": "1.31.2-1.1", "kubectl": "1.31.2-1.1"}
VIP_PKG = PKG | {"keepalived": "1:2.2.7-1+b2", "curl": "7.88.1-10+deb12u8"}


def cluster(
    version: str = "v1.31.2",
    cps: int = 3,
    workers: dict[str, int] | None = None,
    endpoint: dict[str, Any] | None = None,
    max_unavailable: int = 1,
) -> KubernetesCluster:
    groups = {"general": 2} if workers is None else workers
    raw: dict[str, Any] = {
        "kind": "kubernetes",
        "version": version,
        "controlPlane": {"provider": "lab", "pool": "cp", "nodes": cps},
        "workers": {g: {"provider": "lab", "pool": g, "nodes": n} for g, n in groups.items()},
        "upgrade": {"maxUnavailable": max_unavailable},
    }
    if endpoint is not None or cps > 1:
        raw["controlPlaneEndpoint"] = endpoint or {"vip": "10.0.0.100"}
    return KubernetesCluster.model_validate(raw)


def node(machine: str, version: str | None = "v1.31.2", ready: bool = True, cordoned: bool = False) -> NodeStatus:
    role = "control-plane" if machine.startswith("cp") else "worker"
    pool = "cp" if role == "control-plane" else machine.rsplit("-", 1)[0]
    return NodeStatus(
        machine=machine,
        ip="10.0.0.1",
        role=role,
        pool=pool,
        provider="lab",
        version=version,
        ready=ready and version is not None,
        cordoned=cordoned,
    )


def details(phases: list[k.Phase]) -> list[str]:
    return [p.detail for p in phases]


# --- versions --------------------------------------------------------------------------------------


def test_intermediate_minors_are_patterns_the_repository_resolves() -> None:
    assert k.intermediate_minors("v1.28.3", "v1.31.2") == ["1.29.*", "1.30.*"]
    assert k.intermediate_minors("v1.30.1", "v1.31.2") == []
    assert k.parse_minor("1.30.*") == (1, 30) and k.parse_minor("1.30.6-1.1") == (1, 30)
    assert "v1.30/deb" in k.default_repository("1.30.*")
    with pytest.raises(ValueError, match="downgrade"):
        k.intermediate_minors("v1.31.2", "v1.29.1")


def test_upgrade_path_goes_minor_by_minor_through_the_highest_patch() -> None:
    assert k.upgrade_path("v1.29.3", "v1.31.2", AVAILABLE) == ["v1.30.6", "v1.31.2"]
    assert k.upgrade_path("v1.30.1", "v1.31.2", AVAILABLE) == ["v1.31.2"]
    assert k.upgrade_path("v1.31.0", "v1.31.2") == ["v1.31.2"]  # a patch upgrade needs no repository data
    assert k.upgrade_path("v1.31.2", "v1.31.2") == []
    with pytest.raises(ValueError, match="goes through v1.30, but the package repository offers no v1.30"):
        k.upgrade_path("v1.29.3", "v1.31.2", ["1.29.10-1.1", "1.31.2-1.1"])


def test_skew_refusals() -> None:
    assert k.check_skew("v1.29.3", "v1.31.2") is None  # several minors: allowed, via upgrade_path
    assert k.check_skew("v1.31.2", "v1.30.6") == (
        "downgrade from v1.31.2 to v1.30.6 crosses a minor version: not supported"
    )
    patch = k.check_skew("v1.31.2", "v1.31.1")
    assert patch is not None and patch.startswith("downgrade from v1.31.2 to v1.31.1") and "not supported" in patch
    assert "major" in (k.check_skew("v1.31.2", "v2.0.0") or "")
    with pytest.raises(ValueError, match="crosses a minor version"):
        k.upgrade_path("v1.31.2", "v1.30.6", AVAILABLE)


def test_default_repository_is_per_minor() -> None:
    assert k.default_repository("v1.31.2") == (
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /"
    )
    assert "/v1.30/deb/" in k.default_repository("1.30.6-1.1")
    spec = cluster()
    assert k.repository(spec) == k.default_repository("v1.31.2")
    assert k.repository(spec, "v1.30.6") == k.default_repository("v1.30.6")  # an upgrade hop's repository
    own = spec.model_copy(update={"packages": spec.packages.model_copy(update={"repository": "deb http://m/ ./"})})
    assert k.repository(own) == "deb http://m/ ./"


# --- plan: bootstrap and scale ---------------------------------------------------------------------


def test_bootstrap_inits_once_then_joins_control_planes_one_at_a_time_then_workers_in_batches() -> None:
    spec = cluster(workers={"w": 5})
    nodes = [node(m, None) for m in ("cp-0", "cp-1", "cp-2", "w-0", "w-1", "w-2", "w-3", "w-4")]
    phases = k.plan(spec, nodes, join_batch=2)
    assert details(phases) == [
        "init cp-0",
        "join control plane cp-1",
        "join control plane cp-2",
        "join workers [w-0, w-1]",
        "join workers [w-2, w-3]",
        "join workers [w-4]",
    ]
    assert [p.action for p in phases[:3]] == ["init", "join-control-plane", "join-control-plane"]


def test_resumed_bootstrap_never_inits_twice() -> None:
    spec = cluster(workers={"w": 2})
    nodes = [node("cp-0"), node("cp-1", None), node("cp-2", None), node("w-0", None), node("w-1", None)]
    assert details(k.plan(spec, nodes)) == [
        "join control plane cp-1",
        "join control plane cp-2",
        "join workers [w-0, w-1]",
    ]
    done = [node(m) for m in ("cp-0", "cp-1", "cp-2", "w-0", "w-1")]
    assert k.plan(spec, done) == []


def test_missing_machines_are_provisioned_first() -> None:
    spec = cluster(cps=1, workers={"w": 4})
    phases = k.plan(spec, [node("cp-0"), node("w-0"), node("w-1")])
    assert details(phases) == ["provision 2 machine(s) for workers.w in pool w of provider lab"]


def test_scale_down_removes_workers_first_from_the_end_of_each_pool() -> None:
    spec = cluster(cps=1, workers={"a": 1, "b": 2})
    nodes = [
        node("cp-0"),
        node("cp-1"),
        node("cp-2"),
        node("a-0"),
        node("a-1"),
        node("a-2"),
        node("b-0"),
        node("b-1"),
        node("old-0"),
        node("old-1"),
    ]
    assert details(k.plan(spec, nodes)) == [
        "remove worker a-2",
        "remove worker a-1",
        "remove worker old-1",  # a group gone from desired.yml goes entirely
        "remove worker old-0",
        "remove control plane cp-2",
        "remove control plane cp-1",
    ]


def test_scale_up_joins_before_scale_down_removes() -> None:
    spec = cluster(cps=1, workers={"a": 3, "b": 0})
    nodes = [node("cp-0"), node("a-0"), node("a-1", None), node("a-2", None), node("b-0")]
    assert details(k.plan(spec, nodes)) == ["join workers [a-1, a-2]", "remove worker b-0"]


def test_control_plane_removal_never_goes_below_quorum() -> None:
    spec = cluster(cps=3, workers={})
    nodes = [node(f"cp-{i}") for i in range(3)] + [node("cp-3", ready=False), node("cp-4")]
    # The NotReady member may leave: 4 Ready of 5 keeps quorum, 3 of 4 too.
    assert details(k.plan(spec, nodes)) == ["remove control plane cp-4", "remove control plane cp-3"]
    nodes = [node("cp-0"), node("cp-1", ready=False), node("cp-2", ready=False), node("cp-3"), node("cp-4")]
    phases = k.plan(spec, nodes)
    assert [p.action for p in phases] == ["blocked"]
    assert phases[0].detail.startswith("removing control plane cp-4 would leave 2 Ready of 4 control planes")
    # 3 -> 1 goes one member at a time; with both remaining members Ready, 2 -> 1 keeps quorum.
    spec1 = cluster(cps=1, workers={})
    assert details(k.plan(spec1, [node("cp-0"), node("cp-1"), node("cp-2")])) == [
        "remove control plane cp-2",
        "remove control plane cp-1",
    ]


def test_a_cordoned_node_left_by_a_crash_is_uncordoned() -> None:
    spec = cluster(cps=1, workers={"w": 2})
    phases = k.plan(spec, [node("cp-0"), node("w-0", cordoned=True), node("w-1")])
    assert details(phases) == ["uncordon w-0"]
    # A node being removed stays cordoned: its removal drains it.
    spec1 = cluster(cps=1, workers={"w": 1})
    assert details(k.plan(spec1, [node("cp-0"), node("w-0"), node("w-1", cordoned=True)])) == ["remove worker w-1"]


# --- plan: upgrades --------------------------------------------------------------------------------


def test_upgrade_control_planes_first_then_workers_in_batches() -> None:
    spec = cluster(workers={"w": 3}, max_unavailable=2)
    nodes = [node(m, "v1.30.6") for m in ("cp-0", "cp-1", "cp-2", "w-0", "w-1", "w-2")]
    phases = k.plan(spec, nodes)
    assert details(phases) == [
        "upgrade control plane cp-0 to v1.31.2 (kubeadm upgrade apply)",
        "upgrade control plane cp-1 to v1.31.2 (kubeadm upgrade node)",
        "upgrade control plane cp-2 to v1.31.2 (kubeadm upgrade node)",
        "upgrade workers [w-0, w-1] to v1.31.2",
        "upgrade workers [w-2] to v1.31.2",
    ]
    assert [p.action for p in phases] == [
        "upgrade-apply",
        "upgrade-node",
        "upgrade-node",
        "upgrade-workers",
        "upgrade-workers",
    ]


def test_upgrade_across_two_minors_goes_through_the_middle_one() -> None:
    spec = cluster(cps=1, workers={"w": 1})
    phases = k.plan(spec, [node("cp-0", "v1.29.10"), node("w-0", "v1.29.10")], AVAILABLE)
    assert details(phases) == [
        "upgrade control plane cp-0 to v1.30.6 (kubeadm upgrade apply)",
        "upgrade workers [w-0] to v1.30.6",
        "upgrade control plane cp-0 to v1.31.2 (kubeadm upgrade apply)",
        "upgrade workers [w-0] to v1.31.2",
    ]


def test_resumed_upgrade_continues_where_it_stopped() -> None:
    spec = cluster(workers={"w": 2})
    nodes = [
        node("cp-0"),
        node("cp-1", "v1.30.6"),
        node("cp-2", "v1.30.6"),
        node("w-0", "v1.30.6", cordoned=True),
        node("w-1", "v1.30.6"),
    ]
    assert details(k.plan(spec, nodes)) == [
        "upgrade control plane cp-1 to v1.31.2 (kubeadm upgrade node)",  # apply already ran on cp-0
        "upgrade control plane cp-2 to v1.31.2 (kubeadm upgrade node)",
        "upgrade workers [w-0] to v1.31.2",  # its drain is done again, then it is uncordoned
        "upgrade workers [w-1] to v1.31.2",
    ]


def test_upgrade_and_scale_never_share_a_plan() -> None:
    spec = cluster(cps=1, workers={"w": 3})
    nodes = [node("cp-0", "v1.30.6"), node("w-0", "v1.30.6"), node("w-1", None)]
    phases = k.plan(spec, nodes)
    assert {p.action for p in phases} == {"upgrade-apply", "upgrade-workers"}
    after = [node("cp-0"), node("w-0"), node("w-1", None)]
    assert details(k.plan(spec, after)) == [
        "provision 1 machine(s) for workers.w in pool w of provider lab",
        "join workers [w-1]",
    ]


def test_downgrade_is_blocked() -> None:
    spec = cluster(version="v1.30.6", cps=1, workers={})
    phases = k.plan(spec, [node("cp-0", "v1.31.2")])
    assert [(p.action, p.detail) for p in phases] == [
        ("blocked", "downgrade from v1.31.2 to v1.30.6 crosses a minor version: not supported")
    ]
    patch = k.plan(cluster(version="v1.31.1", cps=1, workers={}), [node("cp-0", "v1.31.2")])
    assert patch[0].action == "blocked" and "downgrade from v1.31.2 to v1.31.1" in patch[0].detail


# --- node software ---------------------------------------------------------------------------------


def vip_settings(position: int = 0) -> k.Keepalived:
    ips = ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    return k.Keepalived(
        interface="eth0",
        ip=ips[position],
        peers=[ip for ip in ips if ip != ips[position]],
        position=position,
        router_id=k.virtual_router_id("lab"),
    )


def test_worker_node_spec() -> None:
    ns = k.node_spec(cluster(), "lab-w-0", "worker", PKG)
    assert ns.hostname == "lab-w-0"
    assert {(p.name, p.version, p.hold) for p in ns.packages} == {
        ("containerd", "1.6.20~ds1-1+b1", True),
        ("kubelet", "1.31.2-1.1", True),
        ("kubeadm", "1.31.2-1.1", True),
        ("kubectl", "1.31.2-1.1", True),
    }
    [config] = ns.files
    assert config.path == "/etc/containerd/config.toml"
    assert "SystemdCgroup = true" in config.content
    assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in config.content
    [containerd] = ns.units
    assert containerd.name == "containerd.service" and containerd.enabled and containerd.active
    assert containerd.restart_on == ["/etc/containerd/config.toml", "containerd"]
    assert ns.kernel_modules == ["overlay", "br_netfilter"]
    assert ns.sysctls == {
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
        "net.ipv4.ip_forward": "1",
    }
    assert ns.swap_off
    assert [s.line for s in ns.apt_sources] == [k.default_repository("v1.31.2")]
    assert not any("keepalived" in p.name for p in ns.packages)


def test_kubelet_is_asserted_only_once_joined() -> None:
    before = k.node_spec(cluster(), "lab-w-0", "worker", PKG)
    assert "kubelet.service" not in {u.name for u in before.units}
    after = k.node_spec(cluster(), "lab-w-0", "worker", PKG, joined=True)
    kubelet = next(u for u in after.units if u.name == "kubelet.service")
    assert kubelet.enabled and kubelet.active and kubelet.restart_on == ["kubelet"]


def test_keepalived_only_on_control_planes_with_a_vip() -> None:
    spec = cluster()
    ns = k.node_spec(spec, "lab-cp-1", "control-plane", VIP_PKG, vip=vip_settings(1))
    assert {"keepalived", "curl"} <= {p.name for p in ns.packages}
    conf = next(f for f in ns.files if f.path == "/etc/keepalived/keepalived.conf").content
    assert "10.0.0.100/32 dev eth0" in conf
    assert "priority 140" in conf  # by position: cp-0 150, cp-1 140, ...
    assert f"virtual_router_id {k.virtual_router_id('lab')}" in conf
    assert "unicast_src_ip 10.0.0.11" in conf and "10.0.0.12" in conf
    check = next(f for f in ns.files if f.path == "/etc/keepalived/check_apiserver.sh")
    assert check.mode == "0755" and "https://localhost:6443/healthz" in check.content and "-sfk" in check.content
    unit = next(u for u in ns.units if u.name == "keepalived.service")
    assert "/etc/keepalived/keepalived.conf" in unit.restart_on
    assert "priority 150" in next(
        f.content
        for f in k.node_spec(spec, "lab-cp-0", "control-plane", VIP_PKG, vip=vip_settings(0)).files
        if f.path.endswith(".conf") and "keepalived" in f.path
    )

    # A worker never carries the VIP; a load balancer endpoint needs no keepalived.
    assert "keepalived" not in {p.name for p in k.node_spec(spec, "lab-w-0", "worker", PKG).packages}
    lb = cluster(endpoint={"host": "api.lab.example"})
    assert "keepalived" not in {p.name for p in k.node_spec(lb, "lab-cp-0", "control-plane", PKG).packages}
    with pytest.raises(ValueError, match="give the keepalived settings"):
        k.node_spec(spec, "lab-cp-0", "control-plane", VIP_PKG)
    with pytest.raises(ValueError, match="carries no VIP"):
        k.node_spec(lb, "lab-cp-0", "control-plane", VIP_PKG, vip=vip_settings(0))
    with pytest.raises(ValueError, match="no apt version given for package keepalived"):
        k.node_spec(spec, "lab-cp-0", "control-plane", PKG, vip=vip_settings(0))


def test_packages_for_names_what_the_caller_must_resolve() -> None:
    assert k.packages_for("worker", vip=True) == ["containerd", "kubelet", "kubeadm", "kubectl"]
    assert k.packages_for("control-plane", vip=True) == [
        "containerd",
        "kubelet",
        "kubeadm",
        "kubectl",
        "keepalived",
        "curl",
    ]
