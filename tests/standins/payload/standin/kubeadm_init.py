"""Orbiter test stand-in, not Kubernetes: kubeadm init (the first control plane: the CA, the stand-in
API's state and unit, the admin and kubelet kubeconfigs, bootstrap tokens) and init phase upload-certs.
"""

from __future__ import annotations

import json
import os
import secrets

from .client import Cluster, api, kubeconfig
from .common import (
    ADMIN_CONF,
    API_CONFIG,
    API_DIR,
    API_UNIT,
    DEFAULT_GRACE,
    KUBE,
    KUBELET_CONF,
    MANIFESTS,
    PKI,
    STANDIN,
    STATE,
    VERSION,
    Fail,
    flag,
    hostname,
    local_ip,
    minor,
    out,
    systemctl,
    write_file,
)
from .kubeadm_phases import (
    common_preflight,
    kubelet_config,
    kubelet_version,
    no_mix,
    port_in_use,
    preflight,
    read_configs,
    serving_cert,
    serving_sans,
    static_pods,
    wait_ready,
)
from .pki import ca_cert_hash, key_pem, make_cert, rsa_key
from .state import etcd_member


def kubeadm_init(flags: dict) -> int:
    no_mix(
        flags,
        {
            "--upload-certs",
            "--ignore-preflight-errors",
            "--skip-phases",
            "--v",
            "-v",
            "--skip-token-print",
            "--dry-run",
        },
    )
    cfg = (
        read_configs(flags["--config"][-1], {"InitConfiguration", "ClusterConfiguration"})
        if "--config" in flags
        else {}
    )
    init = cfg.get("InitConfiguration", {})
    cluster = cfg.get("ClusterConfiguration", {})
    reg = init.get("nodeRegistration") or {}
    k8s = cluster.get("kubernetesVersion") or flag(flags, "--kubernetes-version") or "v" + VERSION
    if minor(k8s)[:2] > minor(VERSION)[:2]:
        raise Fail(
            f'the kubernetesVersion "{k8s}" is higher than the kubeadm version "v{VERSION}"; this kubeadm '
            f"can deploy control planes up to v{VERSION}"
        )
    if minor(k8s)[1] < minor(VERSION)[1] - 1:
        raise Fail(
            f"this version of kubeadm only supports deploying clusters with the control plane version "
            f">= 1.{minor(VERSION)[1] - 1}.0. Current version: {k8s}"
        )
    out(f"[init] Using Kubernetes version: {k8s}")
    ignore = (flag(flags, "--ignore-preflight-errors", default="") or "").split(",") + list(
        reg.get("ignorePreflightErrors") or []
    )
    errors = common_preflight(k8s)
    apiserver_manifest = MANIFESTS + "/kube-apiserver.yaml"
    if os.path.exists(apiserver_manifest):
        errors.insert(
            0, ("FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml", f"{apiserver_manifest} already exists")
        )
    if port_in_use(6443):
        errors.insert(0, ("Port-6443", "Port 6443 is in use"))
    preflight(errors, ignore)
    endpoint = init.get("localAPIEndpoint") or {}
    ip = endpoint.get("advertiseAddress") or flag(flags, "--apiserver-advertise-address") or local_ip()
    port = int(endpoint.get("bindPort") or 6443)
    cpe = cluster.get("controlPlaneEndpoint") or flag(flags, "--control-plane-endpoint") or ""
    node = (reg.get("name") or flag(flags, "--node-name") or hostname()).lower()
    server = "https://" + (cpe if cpe else f"{ip}:{port}")
    if cpe and ":" not in cpe:
        server += ":6443"
    out('[certs] Using certificateDir folder "/etc/kubernetes/pki"')
    out('[certs] Generating "ca" certificate and key')
    ca_key = rsa_key()
    ca_pem = make_cert("kubernetes", ca_key, "kubernetes", ca_key, ca=True)
    write_file(PKI + "/ca.crt", ca_pem)
    write_file(PKI + "/ca.key", key_pem(ca_key), 0o600)
    sans = serving_sans(cluster, ip, cpe, node)
    out(
        f'[certs] Generating "apiserver" certificate and key\n[certs] apiserver serving cert is signed for DNS '
        f"names and IPs {sans}"
    )
    serving_cert(ca_pem, ca_key, sans)
    static_pods(port)
    out(f'[etcd] Creating static Pod manifest for local etcd in "{MANIFESTS}" (stand-in: a member in the API state)')
    networking = cluster.get("networking") or {}
    admin_token = secrets.token_hex(24)
    state = {
        "standin": STANDIN,
        "clusterName": cluster.get("clusterName") or "kubernetes",
        "kubernetesVersion": "v" + ".".join(map(str, minor(k8s))),
        "controlPlaneEndpoint": cpe,
        "networking": {
            "podSubnet": networking.get("podSubnet") or flag(flags, "--pod-network-cidr") or "",
            "serviceSubnet": networking.get("serviceSubnet") or "10.96.0.0/12",
            "dnsDomain": networking.get("dnsDomain") or "cluster.local",
        },
        "ca": {"cert": ca_pem, "key": key_pem(ca_key), "hash": ca_cert_hash(ca_pem)},
        "adminToken": admin_token,
        "tokens": {},
        "certificateKey": None,
        "nodes": {},
        "manifests": [],
        "upgrades": [],
        "events": [],
        "settings": {"nodeMonitorGracePeriodSeconds": DEFAULT_GRACE},
        "etcdMembers": [etcd_member(node, ip)],
        "primary": f"https://{ip}:{port}",
        "initConfiguration": init,
        "clusterConfiguration": cluster,
    }
    os.makedirs(API_DIR, exist_ok=True)
    write_file(STATE, json.dumps(state, indent=1), 0o600)
    write_file(API_CONFIG, json.dumps({"mode": "primary", "port": port, "node": node, "ip": ip}), 0o600)
    out('[control-plane] Creating static Pod manifest for "kube-apiserver" (stand-in: standin-apiserver.service)')
    systemctl("daemon-reload")
    systemctl("enable", API_UNIT)
    systemctl("restart", API_UNIT)
    local = f"https://127.0.0.1:{port}"
    wait_ready(local, ca_pem)
    admin = kubeconfig(server, ca_pem, "kubernetes-admin", admin_token)
    write_file(ADMIN_CONF, admin, 0o600)
    write_file(KUBE + "/super-admin.conf", admin, 0o600)
    reg_result = api(
        local,
        "POST",
        "/standin/register",
        {
            "name": node,
            "ip": ip,
            "role": "control-plane",
            "kubeletVersion": kubelet_version() or VERSION,
            "controlPlaneVersion": state["kubernetesVersion"],
            "taints": reg.get("taints"),
            "apiServer": f"https://{ip}:{port}",
        },
        admin_token,
        ca_pem,
    )
    write_file(KUBELET_CONF, kubeconfig(server, ca_pem, f"system:node:{node}", reg_result["credential"]), 0o600)
    kubelet_config(cfg)
    out("[kubelet-start] Starting the kubelet")
    systemctl("restart", "kubelet.service")
    out(
        "[mark-control-plane] Marking the node " + node + " as control-plane by adding the labels: "
        "[node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]"
    )
    tokens = init.get("bootstrapTokens") or [{}]
    created = []
    for t in tokens:
        body = {
            "token": t.get("token") or flag(flags, "--token"),
            "ttl": t.get("ttl") or "24h0m0s",
            "description": t.get("description") or "",
            "usages": t.get("usages"),
            "groups": t.get("groups"),
        }
        created.append(api(local, "POST", "/standin/tokens", body, admin_token, ca_pem)["token"])
    key = None
    if "--upload-certs" in flags:
        key = init.get("certificateKey") or flag(flags, "--certificate-key") or secrets.token_hex(32)
        api(local, "POST", "/standin/upload-certs", {"key": key}, admin_token, ca_pem)
        out('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
        out("[upload-certs] Using certificate key:\n" + key)
    out(f"[bootstrap-token] Using token: {created[0]}")
    join = (
        f"kubeadm join {server.split('://', 1)[1]} --token {created[0]} \\\n\t--discovery-token-ca-cert-hash "
        f"{state['ca']['hash']} "
    )
    out(
        "\nYour Kubernetes control-plane has initialized successfully!\n\n"
        "To start using your cluster, you need to run the following as a regular user:\n\n"
        "  mkdir -p $HOME/.kube\n  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n"
        "  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n\n"
        "Alternatively, if you are the root user, you can run:\n\n  export KUBECONFIG=/etc/kubernetes/admin.conf\n\n"
        "You should now deploy a pod network to the cluster.\n"
        'Run "kubectl apply -f [podnetwork].yaml" with one of the options listed at:\n'
        "  https://kubernetes.io/docs/concepts/cluster-administration/addons/\n"
    )
    if cpe and key:
        out(
            "You can now join any number of control-plane nodes running the following command on each as root:\n\n  "
            + join
            + f"\\\n\t--control-plane --certificate-key {key}\n"
        )
    out("Then you can join any number of worker nodes by running the following on each as root:\n\n" + join)
    return 0


def kubeadm_upload_certs(flags: dict) -> int:
    if "--upload-certs" not in flags:
        out("[upload-certs] Skipping phase. Please see --upload-certs")
        return 0
    c = Cluster(flag(flags, "--kubeconfig", default=ADMIN_CONF))
    key = flag(flags, "--certificate-key") or secrets.token_hex(32)
    if "--config" in flags:
        key = (
            read_configs(flags["--config"][-1], {"InitConfiguration", "ClusterConfiguration"})
            .get("InitConfiguration", {})
            .get("certificateKey")
            or key
        )
    c.call("POST", "/standin/upload-certs", {"key": key})
    out('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
    out("[upload-certs] Using certificate key:\n" + key)
    return 0
