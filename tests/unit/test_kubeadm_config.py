"""The kubeadm configs orbiter writes, checked field by field against the kubeadm config API of each version."""

from typing import Any

import pytest
import yaml

from orbiter.models.kinds.kubernetes import kubeadm_api as api
from orbiter.models.kinds.kubernetes import kubeadm_config as kcfg
from orbiter.models.kinds.kubernetes import versions as kver
from orbiter.models.kinds.kubernetes.spec import KubernetesCluster

CA_HASH = "sha256:" + "0123456789abcdef" * 4
TOKEN = "abcdef.0123456789abcdef"
CERT_KEY = "f" * 64
VERSIONS = [("v1.29.10", "v1beta3"), ("v1.30.6", "v1beta3"), ("v1.31.2", "v1beta4")]


def cluster(version: str, endpoint: dict[str, Any] | None = None, nodes: int = 3) -> KubernetesCluster:
    raw: dict[str, Any] = {
        "kind": "kubernetes",
        "version": version,
        "controlPlane": {"provider": "lab", "pool": "cp", "nodes": nodes},
        "workers": {"general": {"provider": "lab", "pool": "w", "nodes": 2}},
    }
    if endpoint is not None:
        raw["controlPlaneEndpoint"] = endpoint
    return KubernetesCluster.model_validate(raw)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def by_kind(text: str) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs(text)}


def test_api_version_follows_the_kubernetes_version() -> None:
    assert kver.kubeadm_api_version("v1.22.0") == "v1beta3"
    assert kver.kubeadm_api_version("v1.30.14") == "v1beta3"
    assert kver.kubeadm_api_version("v1.31.0") == "v1beta4"
    assert kver.kubeadm_api_version("1.33.1-1.1") == "v1beta4"
    with pytest.raises(ValueError, match="too old"):
        kver.kubeadm_api_version("v1.21.14")


@pytest.mark.parametrize(("version", "expected"), VERSIONS)
def test_init_config_matches_the_api(version: str, expected: str) -> None:
    spec = cluster(version, {"vip": "10.0.0.100"})
    text = kcfg.init_config(
        "lab",
        spec,
        "lab-cp-0",
        "10.0.0.10",
        kcfg.endpoint(spec, "10.0.0.10"),
        ["10.0.0.10", "10.0.0.11", "10.0.0.12"],
        upload_certs=True,
    )
    assert api.validate(docs(text), expected) == []
    # Filled, it is still valid: the markers sit where strings go.
    assert api.validate(docs(kcfg.fill(text, {"TOKEN": TOKEN, "CERT_KEY": CERT_KEY})), expected) == []
    # ...and not valid for the other version (extra args changed shape between them).
    other = "v1beta4" if expected == "v1beta3" else "v1beta3"
    assert any("unknown kind" in e for e in api.validate(docs(text), other))

    kinds = by_kind(text)
    assert list(kinds) == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
    init, cc, kubelet = kinds["InitConfiguration"], kinds["ClusterConfiguration"], kinds["KubeletConfiguration"]
    assert init["apiVersion"] == cc["apiVersion"] == f"kubeadm.k8s.io/{expected}"
    assert kubelet["apiVersion"] == "kubelet.config.k8s.io/v1beta1"
    assert kubelet["cgroupDriver"] == "systemd"
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.0.0.10", "bindPort": 6443}
    reg = init["nodeRegistration"]
    assert reg["name"] == "lab-cp-0"
    assert reg["criSocket"] == "unix:///run/containerd/containerd.sock"
    if expected == "v1beta3":
        assert reg["kubeletExtraArgs"] == {"node-ip": "10.0.0.10"}
    else:
        assert reg["kubeletExtraArgs"] == [{"name": "node-ip", "value": "10.0.0.10"}]
    assert init["certificateKey"] == "{{CERT_KEY}}"
    assert init["bootstrapTokens"][0]["token"] == "{{TOKEN}}"
    assert cc["kubernetesVersion"] == version
    assert cc["clusterName"] == "lab"
    assert cc["controlPlaneEndpoint"] == "10.0.0.100:6443"
    assert cc["networking"] == {
        "podSubnet": "10.244.0.0/16",
        "serviceSubnet": "10.96.0.0/12",
        "dnsDomain": "cluster.local",
    }
    assert cc["apiServer"]["certSANs"] == ["10.0.0.100", "10.0.0.10", "10.0.0.11", "10.0.0.12"]


@pytest.mark.parametrize(("version", "expected"), VERSIONS)
@pytest.mark.parametrize("control_plane", [False, True])
def test_join_config_matches_the_api(version: str, expected: str, control_plane: bool) -> None:
    spec = cluster(version, {"host": "api.lab.example", "port": 8443})
    text = kcfg.join_config(spec, "lab-w-0", "10.0.0.20", kcfg.endpoint(spec, "10.0.0.10"), CA_HASH, control_plane)
    assert api.validate(docs(text), expected) == []
    join = by_kind(text)["JoinConfiguration"]
    token = join["discovery"]["bootstrapToken"]
    assert token == {"apiServerEndpoint": "api.lab.example:8443", "token": "{{TOKEN}}", "caCertHashes": [CA_HASH]}
    assert "unsafeSkipCAVerification" not in text
    if control_plane:
        assert join["controlPlane"] == {
            "localAPIEndpoint": {"advertiseAddress": "10.0.0.20", "bindPort": 6443},
            "certificateKey": "{{CERT_KEY}}",
        }
        assert kcfg.markers(text) == ["CERT_KEY", "TOKEN"]
    else:
        assert "controlPlane" not in join
        assert kcfg.markers(text) == ["TOKEN"]


def test_single_control_plane_uses_its_own_address() -> None:
    spec = cluster("v1.31.2", nodes=1)
    text = kcfg.init_config("lab", spec, "lab-cp-0", "10.0.0.10", kcfg.endpoint(spec, "10.0.0.10"))
    cc = by_kind(text)["ClusterConfiguration"]
    assert cc["controlPlaneEndpoint"] == "10.0.0.10:6443"
    assert cc["apiServer"]["certSANs"] == ["10.0.0.10"]
    assert "certificateKey" not in by_kind(text)["InitConfiguration"]


def test_the_ca_hash_is_always_required() -> None:
    spec = cluster("v1.31.2", {"vip": "10.0.0.100"})
    for bad in ("", "sha256:", "md5:" + "0" * 32, "0" * 64):
        with pytest.raises(ValueError, match="always checked"):
            kcfg.join_config(spec, "w", "10.0.0.20", "10.0.0.100:6443", bad)


def test_secrets_are_only_markers_until_filled() -> None:
    spec = cluster("v1.30.6", {"vip": "10.0.0.100"})
    text = kcfg.join_config(spec, "cp-1", "10.0.0.11", "10.0.0.100:6443", CA_HASH, control_plane=True)
    assert TOKEN not in text and CERT_KEY not in text
    filled = kcfg.fill(text, {"TOKEN": TOKEN, "CERT_KEY": CERT_KEY})
    join = by_kind(filled)["JoinConfiguration"]
    assert join["discovery"]["bootstrapToken"]["token"] == TOKEN
    assert join["controlPlane"]["certificateKey"] == CERT_KEY
    with pytest.raises(ValueError, match="left unfilled: CERT_KEY"):
        kcfg.fill(text, {"TOKEN": TOKEN})
    with pytest.raises(ValueError, match="expected format"):  # could otherwise break out of the YAML string
        kcfg.fill(text, {"TOKEN": "abcdef.0123456789abcdef'\nx: y", "CERT_KEY": CERT_KEY})
    with pytest.raises(ValueError, match="unknown marker"):
        kcfg.fill(text, {"PASSWORD": "x"})


# --- the schema itself ---------------------------------------------------------------------------


def minimal_join(api_version: str) -> dict[str, Any]:
    return {
        "apiVersion": f"kubeadm.k8s.io/{api_version}",
        "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {"token": TOKEN, "caCertHashes": [CA_HASH]}},
    }


@pytest.mark.parametrize("version", ["v1beta3", "v1beta4"])
def test_schema_rejects_unknown_fields(version: str) -> None:
    doc = minimal_join(version)
    assert api.validate([doc], version) == []
    doc["discovery"]["bootstrapToken"]["caCertHash"] = CA_HASH  # singular: a typo kubeadm would reject
    doc["nodeRegistration"] = {"nam": "x"}
    assert api.validate([doc], version) == [
        "JoinConfiguration.discovery.bootstrapToken.caCertHash: unknown field",
        "JoinConfiguration.nodeRegistration.nam: unknown field",
    ]


@pytest.mark.parametrize("version", ["v1beta3", "v1beta4"])
def test_schema_requires_required_fields(version: str) -> None:
    doc = minimal_join(version)
    del doc["discovery"]
    assert api.validate([doc], version) == ["JoinConfiguration.discovery: required field missing"]
    doc = minimal_join(version)
    del doc["discovery"]["bootstrapToken"]["token"]
    assert api.validate([doc], version) == ["JoinConfiguration.discovery.bootstrapToken.token: required field missing"]
    assert api.validate([{"kind": "InitConfiguration"}], version) == ["document 0: apiVersion and kind are required"]


def test_schema_knows_the_differences_between_versions() -> None:
    args_map = {"nodeRegistration": {"kubeletExtraArgs": {"node-ip": "10.0.0.1"}}}
    args_list = {"nodeRegistration": {"kubeletExtraArgs": [{"name": "node-ip", "value": "10.0.0.1"}]}}
    assert api.validate([minimal_join("v1beta3") | args_map], "v1beta3") == []
    assert api.validate([minimal_join("v1beta3") | args_list], "v1beta3") == [
        "JoinConfiguration.nodeRegistration.kubeletExtraArgs: expected a map, got a list"
    ]
    assert api.validate([minimal_join("v1beta4") | args_list], "v1beta4") == []
    assert api.validate([minimal_join("v1beta4") | args_map], "v1beta4") == [
        "JoinConfiguration.nodeRegistration.kubeletExtraArgs: expected a list, got a map"
    ]
    # v1beta4 Arg needs both name and value.
    half = {"nodeRegistration": {"kubeletExtraArgs": [{"name": "node-ip"}]}}
    assert api.validate([minimal_join("v1beta4") | half], "v1beta4") == [
        "JoinConfiguration.nodeRegistration.kubeletExtraArgs[0].value: required field missing"
    ]
    # Timeouts: v1beta3 apiServer.timeoutForControlPlane and discovery.timeout, v1beta4 `timeouts`.
    cc3 = {
        "apiVersion": "kubeadm.k8s.io/v1beta3",
        "kind": "ClusterConfiguration",
        "apiServer": {"timeoutForControlPlane": "4m0s"},
    }
    assert api.validate([cc3], "v1beta3") == []
    cc4 = cc3 | {"apiVersion": "kubeadm.k8s.io/v1beta4"}
    assert api.validate([cc4], "v1beta4") == ["ClusterConfiguration.apiServer.timeoutForControlPlane: unknown field"]
    init4 = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "InitConfiguration",
        "timeouts": {"controlPlaneComponentHealthCheck": "4m0s", "discovery": "5m"},
    }
    assert api.validate([init4], "v1beta4") == []
    init3 = init4 | {"apiVersion": "kubeadm.k8s.io/v1beta3"}
    assert api.validate([init3], "v1beta3") == ["InitConfiguration.timeouts: unknown field"]
    # ResetConfiguration and UpgradeConfiguration exist from v1beta4 only.
    reset = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ResetConfiguration", "force": True}
    assert api.validate([reset], "v1beta3") == [
        "document 0: unknown kind ResetConfiguration in kubeadm.k8s.io/v1beta3 (kubeadm config v1beta3)"
    ]
    assert api.validate([reset | {"apiVersion": "kubeadm.k8s.io/v1beta4"}], "v1beta4") == []


def test_schema_checks_scalar_types_and_enums() -> None:
    doc = {
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "InitConfiguration",
        "localAPIEndpoint": {"bindPort": "6443"},
        "dryRun": "yes",
        "bootstrapTokens": [{"ttl": "15 minutes"}],
        "skipPhases": "addon/kube-proxy",
        "nodeRegistration": {"imagePullPolicy": "Sometimes"},
    }
    assert api.validate([doc], "v1beta4") == [
        "InitConfiguration.localAPIEndpoint.bindPort: expected integer, got a string '6443'",
        "InitConfiguration.dryRun: expected boolean, got a string 'yes'",
        "InitConfiguration.bootstrapTokens[0].ttl: expected duration, got a string '15 minutes'",
        "InitConfiguration.skipPhases: expected a list, got a string",
        "InitConfiguration.nodeRegistration.imagePullPolicy: 'Sometimes' is not one of Always, IfNotPresent, Never",
    ]
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "system",
        "cgroupsDriver": "systemd",
    }
    assert api.validate([kubelet], "v1beta4") == [
        "KubeletConfiguration.cgroupDriver: 'system' is not one of systemd, cgroupfs",
        "KubeletConfiguration.cgroupsDriver: unknown field",
    ]
    proxy = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration", "mode": "ipvs"}
    assert api.validate([proxy], "v1beta3") == []
    with pytest.raises(ValueError, match="unknown kubeadm config API"):
        api.validate([], "v1beta2")
