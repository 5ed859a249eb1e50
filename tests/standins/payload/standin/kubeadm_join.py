"""Orbiter test stand-in, not Kubernetes: kubeadm join (token discovery with the CA pin, a worker or
a control plane that runs the stand-in API as a follower of the primary).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re

from .client import ApiError, api, kubeconfig
from .common import (
    ADMIN_CONF,
    API_CONFIG,
    API_DIR,
    API_UNIT,
    KUBELET_CONF,
    PKI,
    STACK_HINT,
    STANDIN,
    TOKEN_RE,
    VERSION,
    Fail,
    flag,
    hold,
    hostname,
    local_ip,
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
from .pki import ca_cert_hash, jws_sign, key_from_pem


def kubeadm_join(pos: list[str], flags: dict) -> int:
    no_mix(flags, {"--ignore-preflight-errors", "--skip-phases", "--v", "-v", "--dry-run"})
    if "--config" in flags:
        cfg = read_configs(flags["--config"][-1], {"JoinConfiguration"})
        join = cfg.get("JoinConfiguration")
        if not join:
            raise Fail(f"no JoinConfiguration found in {flags['--config'][-1]}")
    else:
        join = {
            "discovery": {
                "bootstrapToken": {
                    "apiServerEndpoint": pos[0] if pos else "",
                    "token": flag(flags, "--token", default=""),
                    "caCertHashes": flags.get("--discovery-token-ca-cert-hash", []),
                    "unsafeSkipCAVerification": "--discovery-token-unsafe-skip-ca-verification" in flags,
                }
            },
            "nodeRegistration": {"name": flag(flags, "--node-name")},
        }
        if "--control-plane" in flags:
            join["controlPlane"] = {
                "certificateKey": flag(flags, "--certificate-key"),
                "localAPIEndpoint": {"advertiseAddress": flag(flags, "--apiserver-advertise-address")},
            }
        cfg = {}
    reg = join.get("nodeRegistration") or {}
    bt = (join.get("discovery") or {}).get("bootstrapToken") or {}
    if not bt:
        raise Fail(f"{STANDIN}: only discovery.bootstrapToken is supported by the stand-in", 3)
    token = bt.get("token") or (join.get("discovery") or {}).get("tlsBootstrapToken") or ""
    hashes = list(bt.get("caCertHashes") or [])
    if not hashes and not bt.get("unsafeSkipCAVerification"):
        raise Fail(
            'discovery.bootstrapToken: Invalid value: "": using token-based discovery without caCertHashes '
            "can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass "
            "--discovery-token-unsafe-skip-ca-verification flag to continue"
        )
    m = TOKEN_RE.match(token or "")
    if not m:
        raise Fail(f'discovery.bootstrapToken.token: Invalid value: "{token}": the bootstrap token is invalid')
    cp = join.get("controlPlane")
    ignore = (flag(flags, "--ignore-preflight-errors", default="") or "").split(",") + list(
        reg.get("ignorePreflightErrors") or []
    )
    errors = common_preflight(None)
    if cp is not None and port_in_use(6443):
        errors.append(("Port-6443", "Port 6443 is in use"))
    preflight(errors, ignore)
    endpoint = bt.get("apiServerEndpoint") or ""
    server = "https://" + endpoint
    out(f'[discovery] Trying to connect to API Server "{endpoint}"')
    try:
        info = api(server, "GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info")
    except ApiError as exc:
        raise Fail(
            f"error execution phase preflight: couldn't validate the identity of the API Server: {exc}"
        ) from None
    kc_text = info["data"]["kubeconfig"]
    jws = info["data"].get("jws-kubeconfig-" + m.group(1))
    if not jws or not _jws_ok(jws, kc_text, m.group(1), m.group(2)):
        raise Fail(
            "error execution phase preflight: couldn't validate the identity of the API Server: could not find "
            f'a JWS signature in the cluster-info ConfigMap for token ID "{m.group(1)}"\n{STACK_HINT}'
        )
    ca = base64.b64decode(re.search(r"certificate-authority-data:\s*(\S+)", kc_text).group(1)).decode()
    actual = ca_cert_hash(ca)
    if hashes and actual not in [h if h.startswith("sha256:") else "sha256:" + h for h in hashes]:
        raise Fail(
            "error execution phase preflight: couldn't validate the identity of the API Server: cluster CA "
            f'found in cluster-info ConfigMap is invalid: none of the public keys "{actual}" are pinned\n' + STACK_HINT
        )
    out(f'[discovery] Successfully established connection with API Server "{endpoint}"')
    node = (reg.get("name") or hostname()).lower()
    ip = ((cp or {}).get("localAPIEndpoint") or {}).get("advertiseAddress") or local_ip()
    body = {
        "name": node,
        "ip": ip,
        "role": "control-plane" if cp is not None else "worker",
        "kubeletVersion": kubelet_version() or VERSION,
        "taints": reg.get("taints"),
        "certificateKey": (cp or {}).get("certificateKey"),
    }
    try:
        result = api(server, "POST", "/standin/join", body, token, ca, timeout=30)
    except ApiError as exc:
        raise Fail(exc.body.get("message", str(exc)) + "\n" + STACK_HINT) from None
    if cp is not None:
        write_file(PKI + "/ca.crt", ca)
        write_file(PKI + "/ca.key", result["caKey"], 0o600)
        port = int(((cp.get("localAPIEndpoint") or {}).get("bindPort")) or 6443)
        cluster = result.get("clusterConfiguration") or {}
        serving_cert(
            ca, key_from_pem(result["caKey"]), serving_sans(cluster, ip, result.get("controlPlaneEndpoint", ""), node)
        )
        static_pods(port)
        os.makedirs(API_DIR, exist_ok=True)
        out("[etcd] Announced new etcd member joining to the existing etcd cluster")
        out('[etcd] Creating static Pod manifest for "etcd"')
        write_file(
            API_CONFIG,
            json.dumps({"mode": "follower", "port": port, "primary": result["primary"], "node": node, "ip": ip}),
            0o600,
        )
        systemctl("daemon-reload")
        systemctl("enable", API_UNIT)
        systemctl("restart", API_UNIT)
        wait_ready(f"https://127.0.0.1:{port}", ca)
        write_file(ADMIN_CONF, kubeconfig(server, ca, "kubernetes-admin", result["adminToken"]), 0o600)
    else:
        write_file(PKI + "/ca.crt", ca)
    hold("join-before-kubelet-conf")
    write_file(KUBELET_CONF, kubeconfig(server, ca, f"system:node:{node}", result["credential"]), 0o600)
    kubelet_config(cfg)
    hold("join-after-kubelet-conf")
    out("[kubelet-start] Starting the kubelet")
    systemctl("restart", "kubelet.service")
    if cp is not None:
        out(
            "\nThis node has joined the cluster and a new control plane instance was created:\n\n"
            "* Certificate signing request was sent to apiserver and approval was received.\n"
            "* The Kubelet was informed of the new secure connection details.\n"
            "* Control plane label and taint were applied to the new node.\n"
            "* The Kubernetes control plane instances scaled up.\n* A new etcd member was added to the local/stacked "
            "etcd cluster.\n"
        )
    else:
        out(
            "\nThis node has joined the cluster:\n* Certificate signing request was sent to apiserver and a response "
            "was received.\n* The Kubelet was informed of the new secure connection details.\n\n"
            "Run 'kubectl get nodes' on the control-plane to see this node join the cluster.\n"
        )
    return 0


def _jws_ok(jws: str, payload: str, tid: str, secret: str) -> bool:
    return hmac.compare_digest(jws, jws_sign(payload, tid, secret))
