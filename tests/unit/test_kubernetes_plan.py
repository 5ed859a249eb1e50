"""Kubernetes planned purely: upgrade paths, skew refusals, the order of phases, and each machine's NodeSpec."""

from typing import Any

import pytest

from orbiter.models.current import NodeStatus
from orbiter.models.kinds import Refused, View
from orbiter.models.kinds.kubernetes import node as knode
from orbiter.models.kinds.kubernetes import versions as kver
from orbiter.models.kinds.kubernetes.spec import KubernetesCluster
from orbiter.models.providers.local import LocalProvider
from orbiter.workflows.kinds.kubernetes import KubernetesRunbook

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
    """A node as current.yml lists it; one without a version has its machine but has not joined."""
    role = "control-plane" if machine.startswith("cp") else "worker"
    pool = "cp" if role == "control-plane" else machine.rsplit("-", 1)[0]
    return NodeStatus(
        machine=machine,
        ip="10.0.0.1",
        role=role,
        group="controlPlane" if role == "control-plane" else pool,
        pool=pool,
        provider="lab",
        version=version,
        joined=version is not None,
        ready=ready and version is not None,
        cordoned=cordoned,
    )


def plan(spec: KubernetesCluster, nodes: list[NodeStatus], applied: KubernetesCluster | None = None,
         commands: list[str] | None = None, max_parallel: int = 10) -> list[str]:
    """The names of the steps the kubernetes runbook plans: what the workflow reports and runs."""
    providers = {"lab": LocalProvider(kind="local")}
    view = View(orb="lab", cluster="k", spec=spec, applied=applied, nodes=nodes, providers=providers,
                commands=commands or [], max_parallel=max_parallel)
    return [s.name for s in KubernetesRunbook().plan(view)]


def changes(*args, **kwargs) -> list[str]:
    checks = {"packages", "node software", "health gate", "observe", "cni calico"}
    return [name for name in plan(*args, **kwargs) if name not in checks]


# --- versions --------------------------------------------------------------------------------------


def test_intermediate_minors_are_patterns_the_repository_resolves() -> None:
    assert kver.intermediate_minors("v1.28.3", "v1.31.2") == ["1.29.*", "1.30.*"]
    assert kver.intermediate_minors("v1.30.1", "v1.31.2") == []
    assert kver.parse_minor("1.30.*") == (1, 30) and kver.parse_minor("1.30.6-1.1") == (1, 30)
    assert "v1.30/deb" in kver.default_repository("1.30.*")
    with pytest.raises(ValueError, match="downgrade"):
        kver.intermediate_minors("v1.31.2", "v1.29.1")


def test_upgrade_path_goes_minor_by_minor_through_the_highest_patch() -> None:
    assert kver.upgrade_path("v1.29.3", "v1.31.2", AVAILABLE) == ["v1.30.6", "v1.31.2"]
    assert kver.upgrade_path("v1.30.1", "v1.31.2", AVAILABLE) == ["v1.31.2"]
    assert kver.upgrade_path("v1.31.0", "v1.31.2") == ["v1.31.2"]  # a patch upgrade needs no repository data
    assert kver.upgrade_path("v1.31.2", "v1.31.2") == []
    with pytest.raises(ValueError, match="goes through v1.30, but the package repository offers no v1.30"):
        kver.upgrade_path("v1.29.3", "v1.31.2", ["1.29.10-1.1", "1.31.2-1.1"])


def test_skew_refusals() -> None:
    assert kver.check_skew("v1.29.3", "v1.31.2") is None  # several minors: allowed, via upgrade_path
    assert kver.check_skew("v1.31.2", "v1.30.6") == (
        "downgrade from v1.31.2 to v1.30.6 crosses a minor version: not supported"
    )
    patch = kver.check_skew("v1.31.2", "v1.31.1")
    assert patch is not None and patch.startswith("downgrade from v1.31.2 to v1.31.1") and "not supported" in patch
    assert "major" in (kver.check_skew("v1.31.2", "v2.0.0") or "")
    with pytest.raises(ValueError, match="crosses a minor version"):
        kver.upgrade_path("v1.31.2", "v1.30.6", AVAILABLE)


def test_default_repository_is_per_minor() -> None:
    assert kver.default_repository("v1.31.2") == (
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.31/deb/ /"
    )
    assert "/v1.30/deb/" in kver.default_repository("1.30.6-1.1")
    spec = cluster()
    assert kver.repository(spec) == kver.default_repository("v1.31.2")
    assert kver.repository(spec, "v1.30.6") == kver.default_repository("v1.30.6")  # an upgrade hop's repository
    own = spec.model_copy(update={"packages": spec.packages.model_copy(update={"repository": "deb http://m/ ./"})})
    assert kver.repository(own) == "deb http://m/ ./"


# --- the runbook's plan ----------------------------------------------------------------------------


def test_a_new_cluster_inits_joins_control_planes_one_by_one_then_workers_in_batches() -> None:
    spec = cluster(workers={"w": 5})
    assert plan(spec, [], max_parallel=2) == [
        "packages",
        "machines lab-k-cp-0, lab-k-cp-1, lab-k-cp-2",
        "machines lab-k-w-0, lab-k-w-1, lab-k-w-2, lab-k-w-3, lab-k-w-4",
        "node software",
        "init lab-k-cp-0",
        "cni calico",
        "join control plane lab-k-cp-1",
        "join control plane lab-k-cp-2",
        "join workers lab-k-w-0, lab-k-w-1",
        "join workers lab-k-w-2, lab-k-w-3",
        "join workers lab-k-w-4",
        "health gate",
        "observe",
    ]


def test_a_bootstrap_cut_short_resumes_with_what_is_left() -> None:
    spec = cluster(workers={"w": 2})
    nodes = [node("cp-0"), node("cp-1", None), node("cp-2", None), node("w-0", None), node("w-1", None)]
    assert changes(spec, nodes) == ["join control plane cp-1", "join control plane cp-2", "join workers w-0, w-1"]
    done = [node(m) for m in ("cp-0", "cp-1", "cp-2", "w-0", "w-1")]
    assert changes(spec, done) == []


def test_missing_machines_are_made_before_anything_joins() -> None:
    spec = cluster(cps=1, workers={"w": 4})
    assert changes(spec, [node("cp-0"), node("w-0"), node("w-1")]) == ["machines lab-k-w-0, lab-k-w-1",
                                                                      "join workers lab-k-w-0, lab-k-w-1"]


def test_scale_down_removes_workers_from_the_end_then_control_planes_one_at_a_time() -> None:
    spec = cluster(cps=1, workers={"a": 1})
    nodes = [node("cp-0"), node("cp-1"), node("cp-2"), node("a-0"), node("a-1"), node("a-2"), node("old-0"),
             node("old-1")]
    assert changes(spec, nodes) == [
        "remove worker old-1",
        "remove worker old-0",
        "remove worker a-2",
        "remove worker a-1",
        "remove control plane cp-2",
        "remove control plane cp-1",
    ]


def test_joins_come_before_removals() -> None:
    spec = cluster(cps=1, workers={"a": 3, "b": 0})
    nodes = [node("cp-0"), node("a-0"), node("a-1", None), node("a-2", None), node("b-0")]
    assert changes(spec, nodes) == ["join workers a-1, a-2", "remove worker b-0"]


def test_replace_joins_a_new_machine_before_the_old_one_leaves() -> None:
    spec = cluster(workers={"w": 2})
    nodes = [node("cp-0"), node("cp-1"), node("cp-2"), node("w-0"), node("w-1")]
    assert changes(spec, nodes, commands=["replace w-0"]) == ["machines lab-k-w-0", "join workers lab-k-w-0",
                                                                    "remove worker w-0"]
    assert changes(spec, nodes, commands=["reboot w-1"]) == ["reboot w-1"]


def test_a_patch_upgrade_goes_control_planes_first_then_workers_in_batches() -> None:
    spec = cluster(workers={"w": 3}, max_unavailable=2)
    nodes = [node(m, "v1.30.6") for m in ("cp-0", "cp-1", "cp-2", "w-0", "w-1", "w-2")]
    assert changes(spec, nodes) == [
        "upgrade cp-0 to v1.31.2",
        "upgrade cp-1 to v1.31.2",
        "upgrade cp-2 to v1.31.2",
        "upgrade w-0, w-1 to v1.31.2",
        "upgrade w-2 to v1.31.2",
    ]


def test_an_upgrade_across_two_minors_goes_through_the_middle_one() -> None:
    spec = cluster(cps=1, workers={"w": 1})
    assert changes(spec, [node("cp-0", "v1.29.10"), node("w-0", "v1.29.10")]) == [
        "packages v1.30",
        "upgrade cp-0 to v1.30",
        "upgrade w-0 to v1.30",
        "upgrade cp-0 to v1.31.2",
        "upgrade w-0 to v1.31.2",
    ]


def test_an_upgrade_cut_short_goes_on_from_the_nodes_it_has_not_reached() -> None:
    spec = cluster(workers={"w": 2})
    nodes = [node("cp-0"), node("cp-1", "v1.30.6"), node("cp-2", "v1.30.6"), node("w-0", "v1.30.6"),
             node("w-1", "v1.30.6")]
    assert changes(spec, nodes) == ["upgrade cp-1 to v1.31.2", "upgrade cp-2 to v1.31.2", "upgrade w-0 to v1.31.2",
                                    "upgrade w-1 to v1.31.2"]


def test_workers_this_reconcile_removes_are_not_upgraded() -> None:
    spec = cluster(cps=1, workers={"w": 1})
    nodes = [node("cp-0", "v1.30.6"), node("w-0", "v1.30.6"), node("w-1", "v1.30.6")]
    assert changes(spec, nodes) == ["upgrade cp-0 to v1.31.2", "upgrade w-0 to v1.31.2", "remove worker w-1"]


def test_a_downgrade_is_refused_while_planning() -> None:
    with pytest.raises(Refused, match="downgrade from v1.31.2 to v1.30.6 crosses a minor version: not supported"):
        plan(cluster(version="v1.30.6", cps=1, workers={}), [node("cp-0", "v1.31.2")])
    with pytest.raises(Refused, match="downgrade from v1.31.2 to v1.31.1"):
        plan(cluster(version="v1.31.1", cps=1, workers={}), [node("cp-0", "v1.31.2")])


def test_a_changed_endpoint_is_refused_once_the_cluster_exists() -> None:
    old, new = cluster(cps=1, workers={}), cluster(cps=1, workers={}, endpoint={"vip": "10.0.0.200"})
    with pytest.raises(Refused, match="controlPlaneEndpoint of k changed"):
        plan(new, [node("cp-0")], applied=old)
    assert changes(new, [], applied=old)[-1] == "init lab-k-cp-0"  # not created yet: nothing is fixed


# --- node software ---------------------------------------------------------------------------------


def vip_settings(position: int = 0) -> knode.Keepalived:
    ips = ["10.0.0.10", "10.0.0.11", "10.0.0.12"]
    return knode.Keepalived(
        interface="eth0",
        ip=ips[position],
        peers=[ip for ip in ips if ip != ips[position]],
        position=position,
        router_id=knode.virtual_router_id("lab"),
    )


def test_worker_node_spec() -> None:
    ns = knode.node_spec(cluster(), "lab-w-0", "worker", PKG)
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
    assert [s.line for s in ns.apt_sources] == [kver.default_repository("v1.31.2")]
    assert not any("keepalived" in p.name for p in ns.packages)


def test_kubelet_is_asserted_only_once_joined() -> None:
    before = knode.node_spec(cluster(), "lab-w-0", "worker", PKG)
    assert "kubelet.service" not in {u.name for u in before.units}
    after = knode.node_spec(cluster(), "lab-w-0", "worker", PKG, joined=True)
    kubelet = next(u for u in after.units if u.name == "kubelet.service")
    assert kubelet.enabled and kubelet.active and kubelet.restart_on == ["kubelet"]


def test_keepalived_only_on_control_planes_with_a_vip() -> None:
    spec = cluster()
    ns = knode.node_spec(spec, "lab-cp-1", "control-plane", VIP_PKG, vip=vip_settings(1))
    assert {"keepalived", "curl"} <= {p.name for p in ns.packages}
    conf = next(f for f in ns.files if f.path == "/etc/keepalived/keepalived.conf").content
    assert "10.0.0.100/32 dev eth0" in conf
    assert "priority 140" in conf  # by position: cp-0 150, cp-1 140, ...
    assert f"virtual_router_id {knode.virtual_router_id('lab')}" in conf
    assert "unicast_src_ip 10.0.0.11" in conf and "10.0.0.12" in conf
    check = next(f for f in ns.files if f.path == "/etc/keepalived/check_apiserver.sh")
    assert check.mode == "0755" and "https://localhost:6443/healthz" in check.content and "-sfk" in check.content
    unit = next(u for u in ns.units if u.name == "keepalived.service")
    assert "/etc/keepalived/keepalived.conf" in unit.restart_on
    assert "priority 150" in next(
        f.content
        for f in knode.node_spec(spec, "lab-cp-0", "control-plane", VIP_PKG, vip=vip_settings(0)).files
        if f.path.endswith(".conf") and "keepalived" in f.path
    )

    # A worker never carries the VIP; a load balancer endpoint needs no keepalived.
    assert "keepalived" not in {p.name for p in knode.node_spec(spec, "lab-w-0", "worker", PKG).packages}
    lb = cluster(endpoint={"host": "api.lab.example"})
    assert "keepalived" not in {p.name for p in knode.node_spec(lb, "lab-cp-0", "control-plane", PKG).packages}
    with pytest.raises(ValueError, match="give the keepalived settings"):
        knode.node_spec(spec, "lab-cp-0", "control-plane", VIP_PKG)
    with pytest.raises(ValueError, match="carries no VIP"):
        knode.node_spec(lb, "lab-cp-0", "control-plane", VIP_PKG, vip=vip_settings(0))
    with pytest.raises(ValueError, match="no apt version given for package keepalived"):
        knode.node_spec(spec, "lab-cp-0", "control-plane", PKG, vip=vip_settings(0))


def test_packages_for_names_what_the_caller_must_resolve() -> None:
    assert knode.packages_for("worker", vip=True) == ["containerd", "kubelet", "kubeadm", "kubectl"]
    assert knode.packages_for("control-plane", vip=True) == [
        "containerd",
        "kubelet",
        "kubeadm",
        "kubectl",
        "keepalived",
        "curl",
    ]
