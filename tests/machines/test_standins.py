"""The kubeadm/kubelet/kubectl test stand-ins (tests/standins): built, served, and used like the real tools."""

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.ssh import SshSession, connect

from ..standins import (
    PAYLOAD,
    STANDIN,
    api_state,
    build_debs,
    install_command,
    read_invocations,
    serve_standins,
    set_stuck_pods,
)

CNI = "https://raw.githubusercontent.com/projectcalico/calico/v3.28.2/manifests/calico.yaml"


def payload() -> SimpleNamespace:
    """The stand-in package's modules as one namespace, each with VERSION 1.31.2 (as kubeadm 1.31.2 runs)."""
    package = "_orbiter_standin_payload"  # imported under its own name, not as a top-level `standin`
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package, PAYLOAD / "__init__.py", submodule_search_locations=[str(PAYLOAD)]
        )
        sys.modules[package] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[package])
    names: dict[str, object] = {}
    for path in sorted(PAYLOAD.glob("*.py")):
        if path.stem != "__init__":
            mod = importlib.import_module(f"{package}.{path.stem}")
            if hasattr(mod, "VERSION"):
                mod.VERSION = "1.31.2"
            names.update((k, v) for k, v in vars(mod).items() if not k.startswith("__"))
    return SimpleNamespace(**names)


def spki_hash(pem: str) -> str:
    der = (
        x509.load_pem_x509_certificate(pem.encode())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def test_build_debs_named_versions_described_as_standins(tmp_path: Path):
    debs = build_debs(tmp_path, ["1.29.10-1.1", "1.31.2-1.1"])
    assert sorted(d.name for d in debs) == sorted(
        f"{p}_{v}_all.deb" for p in ("kubeadm", "kubelet", "kubectl") for v in ("1.29.10-1.1", "1.31.2-1.1")
    )
    for deb in debs:
        fields = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
        assert "Architecture: all" in fields
        assert f"Description: {STANDIN}" in fields
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(tmp_path / "kubelet_1.29.10-1.1_all.deb")], capture_output=True, text=True
    ).stdout
    assert "./usr/bin/kubelet" in listing and "./lib/systemd/system/kubelet.service" in listing
    # Each package carries its own copy of the stand-in package, so the three never share a file.
    assert "./usr/lib/orbiter-standin/kubelet/standin/main.py" in listing
    script = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(tmp_path / "kubeadm_1.29.10-1.1_all.deb")], capture_output=True
    ).stdout
    assert b'VERSION = "1.29.10"' in script
    # Same input, same bytes: re-serving does not change the repo.
    again = build_debs(tmp_path / "again", ["1.29.10-1.1"])
    assert again[0].read_bytes() == (tmp_path / again[0].name).read_bytes()


def test_certificates_and_ca_hash_match_what_real_tools_compute():
    s = payload()
    ca = s.rsa_key()
    ca_pem = s.make_cert("kubernetes", ca, "kubernetes", ca, ca=True)
    assert s.ca_cert_hash(ca_pem) == spki_hash(ca_pem)
    key = s.rsa_key()
    cert = x509.load_pem_x509_certificate(
        s.make_cert("kube-apiserver", key, "kubernetes", ca, ca=False, sans=["10.0.0.2", "kubernetes"]).encode()
    )
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]


def test_yaml_subset_reads_kubeadm_configs_like_pyyaml():
    import yaml

    s = payload()
    text = yaml.safe_dump_all(
        [
            {
                "apiVersion": "kubeadm.k8s.io/v1beta4",
                "kind": "JoinConfiguration",
                "discovery": {"bootstrapToken": {"token": "abcdef.0123456789abcdef", "caCertHashes": ["sha256:00"]}},
                "nodeRegistration": {"kubeletExtraArgs": [{"name": "node-ip", "value": "10.0.0.3"}], "taints": []},
                "controlPlane": {"certificateKey": "0" * 64, "localAPIEndpoint": {"bindPort": 6443}},
            },
            {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "cgroupDriver": "systemd"},
        ]
    )
    assert s.yaml_load_all(text) == list(yaml.safe_load_all(text))


def test_upgrade_version_policy():
    s = payload()  # kubeadm 1.31.2
    assert s._version_policy("v1.30.6", "v1.31.2") == []
    assert s._version_policy("v1.31.0", "v1.31.2") == []
    assert any("too high" in p for p in s._version_policy("v1.29.10", "v1.31.2"))
    assert any("higher than the kubeadm" in p for p in s._version_policy("v1.31.2", "v1.32.0"))
    assert any("downgrade" in p for p in s._version_policy("v1.31.2", "v1.30.6"))


# -- on real local machines -----------------------------------------------------------------------

INIT = """\
apiVersion: kubeadm.k8s.io/v1beta3
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: {ip}
  bindPort: 6443
nodeRegistration:
  name: {name}
  criSocket: unix:///run/containerd/containerd.sock
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: ClusterConfiguration
kubernetesVersion: v1.30.6
controlPlaneEndpoint: "{ip}:6443"
networking:
  podSubnet: 10.244.0.0/16
  serviceSubnet: 10.96.0.0/12
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
"""

JOIN = """\
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: "{endpoint}"
    token: {token}
    caCertHashes:
    - {hash}
nodeRegistration:
  name: {name}
"""


def ok(s: SshSession, cmd: str) -> str:
    r = s.run(cmd, timeout=120)
    assert r.status == 0, f"{cmd}: {r.status}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def fails(s: SshSession, cmd: str) -> str:
    r = s.run(cmd, timeout=120)
    assert r.status != 0, f"{cmd} should fail:\n{r.stdout}"
    return r.stdout + r.stderr


def nodes(s: SshSession) -> dict[str, dict]:
    doc = json.loads(ok(s, "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json"))
    assert doc["kind"] == "List"
    return {n["metadata"]["name"]: n for n in doc["items"]}


def ready(node: dict) -> bool:
    return [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["True"]


def wait_nodes(s: SshSession, pred, timeout: float = 60) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        got = nodes(s)
        if pred(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"nodes never matched: {json.dumps(got)[:2000]}")
        time.sleep(1)


@pytest.mark.machines
@pytest.mark.slow
def test_standins_bootstrap_join_drain_upgrade_reset(
    local_provider: LocalMachines, maintenance_key: tuple[str, str], tmp_path: Path
):
    private, public = maintenance_key
    suffix = uuid.uuid4().hex[:4]
    ids = [f"si{suffix}-1", f"si{suffix}-2"]
    repo = AptRepo(local_provider)
    try:
        m1, m2 = local_provider.create("standins", ids, public, "test-key")
        serve_standins(repo, ["1.30.6-1.1", "1.31.2-1.1"], tmp_path / "debs")
        with connect(m1, private) as s1, connect(m2, private) as s2:
            for s in (s1, s2):
                ok(s, install_command(repo, "1.30.6-1.1"))
                assert ok(s, "kubeadm version -o short").strip() == "v1.30.6"
                assert ok(s, "kubelet --version").strip() == "Kubernetes v1.30.6"
                assert STANDIN in ok(s, "dpkg-query -W -f='${Description}' kubectl")
                assert ok(s, "systemctl is-enabled kubelet.service").strip() == "enabled"

            # Preflight checks forwarding like the real kubeadm.
            s1.upload("/root/init.yaml", INIT.format(ip=m1.ip, name=m1.id).encode())
            ok(s1, "sysctl -w net.ipv4.ip_forward=0")
            assert "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]" in fails(
                s1, "kubeadm init --config /root/init.yaml --upload-certs"
            )
            for s in (s1, s2):
                ok(s, "sysctl -w net.ipv4.ip_forward=1")
            assert "can not mix '--config'" in fails(s1, "kubeadm init --config /root/init.yaml --pod-network-cidr=x")

            init = ok(s1, "kubeadm init --config /root/init.yaml --upload-certs")
            assert "Your Kubernetes control-plane has initialized successfully!" in init
            key = re.search(r"\[upload-certs\] Using certificate key:\n([0-9a-f]{64})\n", init).group(1)
            again = fails(s1, "kubeadm init --config /root/init.yaml")
            assert "[ERROR Port-6443]: Port 6443 is in use" in again
            assert "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]" in again
            assert f"server: https://{m1.ip}:6443" in ok(s1, "cat /etc/kubernetes/admin.conf")
            ca = ok(s1, "cat /etc/kubernetes/pki/ca.crt")
            ca_hash = spki_hash(ca)
            assert ok(s1, "systemctl is-active standin-apiserver.service").strip() == "active"
            assert ok(s1, "kubectl --kubeconfig=/etc/kubernetes/admin.conf get --raw /readyz") == "ok"

            phase = ok(s1, "kubeadm init phase upload-certs --upload-certs")
            new_key = re.fullmatch(r"(?s).*\[upload-certs\] Using certificate key:\n([0-9a-f]{64})\n", phase).group(1)
            assert new_key != key
            join_cmd = ok(s1, "kubeadm token create --ttl 15m --print-join-command").strip()
            m = re.fullmatch(
                r"kubeadm join (\S+) --token ([a-z0-9]{6}\.[a-z0-9]{16}) --discovery-token-ca-cert-hash (sha256:\w+)",
                join_cmd,
            )
            assert m and m.group(1) == f"{m1.ip}:6443" and m.group(3) == ca_hash
            token = m.group(2)
            listed = ok(s1, "kubeadm token list -o json")
            assert token in listed

            wrong = JOIN.format(endpoint=m.group(1), token=token, hash="sha256:" + "0" * 64, name=m2.id)
            s2.upload("/root/join-wrong.yaml", wrong.encode())
            assert "none of the public keys" in fails(s2, "kubeadm join --config /root/join-wrong.yaml")
            join_text = JOIN.format(endpoint=m.group(1), token=token, hash=ca_hash, name=m2.id)
            s2.upload("/root/join.yaml", join_text.encode())
            assert "This node has joined the cluster" in ok(s2, "kubeadm join --config /root/join.yaml")
            assert "kubelet.conf already exists" in fails(s2, "kubeadm join --config /root/join.yaml")
            ok(s1, f"kubeadm token delete {token}")
            assert token not in ok(s1, "kubeadm token list -o json")

            # Nodes are NotReady until a CNI is applied, then Ready with their kubelet versions.
            got = nodes(s1)
            assert set(got) == {m1.id, m2.id} and not any(ready(n) for n in got.values())
            ok(s1, f"kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f {CNI}")
            got = wait_nodes(s1, lambda ns: len(ns) == 2 and all(ready(n) for n in ns.values()))
            assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in got.values()} == {"v1.30.6"}
            assert "node-role.kubernetes.io/control-plane" in got[m1.id]["metadata"]["labels"]
            assert "node-role.kubernetes.io/control-plane" not in got[m2.id]["metadata"]["labels"]

            # Cordon, drain (blocked by a pod disruption budget, then free), uncordon.
            kc = "kubectl --kubeconfig /etc/kubernetes/admin.conf"
            assert ok(s1, f"{kc} cordon {m2.id}").strip() == f"node/{m2.id} cordoned"
            assert nodes(s1)[m2.id]["spec"]["unschedulable"] is True
            assert ok(s1, f"{kc} uncordon {m2.id}").strip() == f"node/{m2.id} uncordoned"
            assert "unschedulable" not in nodes(s1)[m2.id]["spec"]
            assert "use --ignore-daemonsets" in fails(s1, f"{kc} drain {m2.id} --timeout=5s")
            set_stuck_pods(s1, {m2.id: ["default/web-0"]})
            blocked = fails(s1, f"{kc} drain {m2.id} --ignore-daemonsets --delete-emptydir-data --timeout=3s")
            assert "Cannot evict pod as it would violate the pod's disruption budget." in blocked
            assert 'error when evicting pods/"web-0" -n "default": global timeout reached: 3s' in blocked
            assert nodes(s1)[m2.id]["spec"]["unschedulable"] is True
            set_stuck_pods(s1, {})
            drained = ok(s1, f"{kc} drain {m2.id} --ignore-daemonsets --delete-emptydir-data --timeout=30s")
            assert f"node/{m2.id} drained" in drained
            ok(s1, f"{kc} uncordon {m2.id}")

            # Upgrade: one minor at a time, kubeadm first, control plane then node.
            assert "Such an upgrade is not supported" in fails(s1, "kubeadm upgrade apply v1.31.2 -y")
            ok(s1, install_command(repo, "1.31.2-1.1", ("kubeadm",)))
            assert "too high; kubeadm can upgrade only 1 minor version at a time" in fails(
                s1, "kubeadm upgrade apply v1.32.0 -y"
            )
            assert "kubeadm upgrade apply v1.31.2" in ok(s1, "kubeadm upgrade plan")
            assert "didn't answer" in fails(s1, "kubeadm upgrade apply v1.31.2 < /dev/null")
            assert 'SUCCESS! Your cluster was upgraded to "v1.31.2"' in ok(s1, "kubeadm upgrade apply v1.31.2 -y")
            assert json.loads(ok(s1, f"{kc} get --raw /version"))["gitVersion"] == "v1.31.2"
            assert "higher than the kubeadm version" in fails(s2, "kubeadm upgrade node")
            ok(s2, install_command(repo, "1.31.2-1.1", ("kubeadm",)))
            assert "Not a control plane node" in ok(s2, "kubeadm upgrade node")
            ok(s2, install_command(repo, "1.31.2-1.1", ("kubelet", "kubectl")) + " && systemctl restart kubelet")
            wait_nodes(s1, lambda ns: ns[m2.id]["status"]["nodeInfo"]["kubeletVersion"] == "v1.31.2")

            # Reset and delete the worker.
            ok(s2, "kubeadm reset -f")
            assert ok(s2, "test -e /etc/kubernetes/kubelet.conf || echo gone").strip() == "gone"
            assert ok(s1, f"{kc} delete node {m2.id}").strip() == f'node "{m2.id}" deleted'
            assert set(nodes(s1)) == {m1.id}
            assert "NotFound" in fails(s1, f"{kc} cordon {m2.id}")

            state = api_state(s1)
            assert [e["event"] for e in state["events"] if e.get("node") == m2.id] == [
                "join",
                "cordon",
                "uncordon",
                "cordon",
                "uncordon",
                "upgrade-node",
                "kubelet-version",
                "reset",
                "delete-node",
            ]
            assert state["manifests"][0]["source"] == CNI

            # Every invocation recorded, with the config files' contents and exit status.
            inv1, inv2 = read_invocations(s1), read_invocations(s2)
            inits = [i for i in inv1 if i["argv"][:2] == ["kubeadm", "init"] and "phase" not in i["argv"]]
            assert [i["exit"] for i in inits] == [1, 1, 0, 1]
            assert inits[2]["configs"] == {"/root/init.yaml": INIT.format(ip=m1.ip, name=m1.id)}
            joins = [i for i in inv2 if i["argv"][:2] == ["kubeadm", "join"]]
            assert [(i["configs"], i["exit"]) for i in joins] == [
                ({"/root/join-wrong.yaml": wrong}, 1),
                ({"/root/join.yaml": join_text}, 0),
                ({"/root/join.yaml": join_text}, 1),
            ]
            kubeadm2 = [i["argv"][1:3] for i in inv2 if i["tool"] == "kubeadm" and i["argv"][1:2] != ["version"]]
            assert kubeadm2 == [["join", "--config"]] * 3 + [["upgrade", "node"]] * 2 + [["reset", "-f"]]
            applied = [i for i in inv1 if i["tool"] == "kubectl" and "apply" in i["argv"]]
            assert applied[0]["argv"][-2:] == ["-f", CNI] and applied[0]["exit"] == 0
            drains = [i for i in inv1 if i["tool"] == "kubectl" and "drain" in i["argv"]]
            assert [i["exit"] for i in drains] == [1, 1, 0]
            assert {i["version"] for i in inv2 if i["tool"] == "kubelet"} >= {"1.30.6", "1.31.2"}
    finally:
        for mid in ids:
            local_provider.delete(mid)
