"""Orbiter test stand-in, not Kubernetes: the kubeadm phases init and join share (preflight checks,
config files, certificates, static pod markers, the kubelet config, waiting for the API).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import subprocess
import time

from .client import ApiError, api
from .common import (
    ETCD_DATA,
    ETCD_METRICS_PORT,
    KUBEADM_APIS,
    KUBEADM_KINDS,
    KUBELET_CONF,
    KUBELET_DIR,
    MANIFESTS,
    PKI,
    STACK_HINT,
    STANDIN,
    VERSION,
    Fail,
    err,
    minor,
    now,
    out,
    read_text,
    write_file,
)
from .pki import key_pem, make_cert, rsa_key
from .yamlsubset import yaml_load_all


def preflight(errors: list[tuple[str, str]], ignore: list[str]) -> None:
    out("[preflight] Running pre-flight checks")
    ignored = {i.lower() for i in ignore}
    fatal = [(n, m) for n, m in errors if "all" not in ignored and n.lower() not in ignored]
    for n, m in errors:
        if (n, m) not in fatal:
            err(f"\t[WARNING {n}]: {m}")
    if fatal:
        lines = "\n".join(f"\t[ERROR {n}]: {m}" for n, m in fatal)
        raise Fail(
            "error execution phase preflight: [preflight] Some fatal errors occurred:\n" + lines + "\n"
            "[preflight] If you know what you are doing, you can make a check non-fatal with "
            "`--ignore-preflight-errors=...`\n" + STACK_HINT
        )


def common_preflight(skew_version: str | None) -> list[tuple[str, str]]:
    errors = []
    try:
        if read_text("/proc/sys/net/ipv4/ip_forward").strip() != "1":
            errors.append(
                ("FileContent--proc-sys-net-ipv4-ip_forward", "/proc/sys/net/ipv4/ip_forward contents are not set to 1")
            )
    except OSError:
        pass
    if os.path.exists(KUBELET_CONF):
        errors.append(("FileAvailable--etc-kubernetes-kubelet.conf", f"{KUBELET_CONF} already exists"))
    if os.path.exists(PKI + "/ca.crt"):
        errors.append(("FileAvailable--etc-kubernetes-pki-ca.crt", f"{PKI}/ca.crt already exists"))
    kubelet = kubelet_version()
    if skew_version and kubelet and minor(kubelet)[:2] > minor(skew_version)[:2]:
        errors.append(
            (
                "KubeletVersion",
                f"the kubelet version is higher than the control plane version. This is not a supported "
                f'version skew and may lead to a malfunctional cluster. Kubelet version: "{kubelet}" '
                f'Control plane version: "{skew_version.lstrip("v")}"',
            )
        )
    return errors


def kubelet_version() -> str | None:
    try:
        text = subprocess.run(["kubelet", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    m = re.search(r"v(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else None


def read_configs(path: str, allowed: set[str]) -> dict[str, dict]:
    """kind -> document of a kubeadm config file, checked against this kubeadm's config APIs."""
    try:
        docs = yaml_load_all(read_text(path))
    except FileNotFoundError:
        raise Fail(f'unable to read config from "{path}" : open {path}: no such file or directory') from None
    except ValueError as exc:
        raise Fail(f"error converting YAML to JSON: {exc}") from None
    kinds: dict[str, dict] = {}
    ver = minor(VERSION)[1]
    for d in docs:
        if not isinstance(d, dict):
            continue
        kind, api_version = d.get("kind"), d.get("apiVersion", "")
        if not kind or not api_version:
            raise Fail("Object 'Kind' is missing in '" + json.dumps(d) + "'")
        if api_version.startswith("kubeadm.k8s.io/"):
            lo, hi = KUBEADM_APIS.get(api_version, (99, 0))
            if not (lo <= ver <= hi) or kind not in KUBEADM_KINDS:
                raise Fail(
                    f'no kind "{kind}" is registered for version "{api_version}" in scheme '
                    '"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"'
                )
        kinds[kind] = d
    if not kinds.keys() & allowed:
        raise Fail(f"no {' or '.join(sorted(allowed))} found in {path}")
    return kinds


def no_mix(flags: dict, allowed: set[str]) -> None:
    if "--config" in flags:
        extra = sorted(k.lstrip("-") for k in flags if k not in allowed | {"--config"})
        if extra:
            raise Fail(f"can not mix '--config' with arguments {extra}")


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def static_pods(port: int) -> None:
    """Marker manifests, with the flags of the real ones that tools read (the API port, etcd's /health)."""
    flags = {
        "kube-apiserver": [f"--secure-port={port}", "--etcd-servers=https://127.0.0.1:2379"],
        "etcd": [f"--listen-metrics-urls=http://127.0.0.1:{ETCD_METRICS_PORT}", f"--data-dir={ETCD_DATA}"],
    }
    for m in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        command = "".join(f"    - {a}\n" for a in [m, *flags.get(m, [])])
        write_file(
            f"{MANIFESTS}/{m}.yaml",
            f"# {STANDIN}: marker for the static pod {m}\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {m}\n"
            f"  namespace: kube-system\nspec:\n  containers:\n  - name: {m}\n    command:\n{command}",
        )


def serving_sans(cluster: dict, ip: str, cpe: str, node: str) -> list[str]:
    svc = ((cluster.get("networking") or {}).get("serviceSubnet") or "10.96.0.0/12").split(",")[0]
    sans = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "localhost",
        node,
        ip,
        "127.0.0.1",
        str(next(ipaddress.ip_network(svc, strict=False).hosts())),
    ]
    if cpe:
        sans.append(cpe.rsplit(":", 1)[0] if cpe.count(":") == 1 else cpe)
    sans += list((cluster.get("apiServer") or {}).get("certSANs") or [])
    return list(dict.fromkeys(sans))


def serving_cert(ca_pem: str, ca_key: dict, sans: list[str]) -> None:
    key = rsa_key()
    write_file(
        PKI + "/apiserver.crt", make_cert("kube-apiserver", key, "kubernetes", ca_key, ca=False, sans=sans, days=365)
    )
    write_file(PKI + "/apiserver.key", key_pem(key), 0o600)


def kubelet_config(cfg: dict) -> None:
    kc = cfg.get("KubeletConfiguration") or {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
    }
    write_file(KUBELET_DIR + "/config.yaml", f"# {STANDIN}\n" + json.dumps(kc, indent=1) + "\n")


def wait_ready(server: str, ca: str, timeout: float = 60) -> None:
    deadline = now() + timeout
    last = ""
    while now() < deadline:
        try:
            if api(server, "GET", "/readyz", ca=ca, timeout=3).get("raw") == "ok":
                return
        except (Fail, ApiError) as exc:
            last = str(exc)
        time.sleep(0.3)
    raise Fail(f"[wait-control-plane] the stand-in API server did not become ready at {server}: {last}")
