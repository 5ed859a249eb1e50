"""Orbiter test stand-in, not Kubernetes: kubeadm's command line (the commands live in kubeadm_*)."""

from __future__ import annotations

import json
import secrets

from .common import STANDIN, VERSION, Fail, flag, minor, out, parse_args
from .kubeadm_init import kubeadm_init, kubeadm_upload_certs
from .kubeadm_join import kubeadm_join
from .kubeadm_reset import kubeadm_reset
from .kubeadm_token import kubeadm_token
from .kubeadm_upgrade import kubeadm_upgrade

KUBEADM_VALUE_FLAGS = {
    "--config",
    "--kubeconfig",
    "--ttl",
    "-o",
    "--output",
    "--certificate-key",
    "--ignore-preflight-errors",
    "--kubernetes-version",
    "--control-plane-endpoint",
    "--pod-network-cidr",
    "--token",
    "--discovery-token-ca-cert-hash",
    "--description",
    "--apiserver-advertise-address",
    "--node-name",
    "--cri-socket",
    "--skip-phases",
    "--usages",
    "--groups",
    "--v",
    "-v",
    "--cert-dir",
}


def kubeadm(argv: list[str]) -> int:
    pos, flags = parse_args(argv, KUBEADM_VALUE_FLAGS)
    cmd = pos[:3]
    if not pos:
        out(f"kubeadm ({STANDIN}) {VERSION}: commands version, init, join, token, reset, upgrade, certs")
        return 0
    if pos[0] == "version":
        return kubeadm_version(flags)
    if pos[:3] == ["init", "phase", "upload-certs"]:
        return kubeadm_upload_certs(flags)
    if pos[0] == "init" and len(pos) == 1:
        return kubeadm_init(flags)
    if pos[0] == "join":
        return kubeadm_join(pos[1:], flags)
    if pos[0] == "token":
        return kubeadm_token(pos[1:], flags)
    if pos[0] == "reset":
        return kubeadm_reset(flags)
    if pos[0] == "upgrade" and len(pos) >= 2:
        return kubeadm_upgrade(pos[1:], flags)
    if pos[:2] == ["certs", "certificate-key"]:
        out(secrets.token_hex(32))
        return 0
    raise Fail(f"{STANDIN}: kubeadm {' '.join(cmd)} is not supported by the stand-in", 3)


def kubeadm_version(flags: dict) -> int:
    o = flag(flags, "-o", "--output", default="")
    info = {
        "major": "1",
        "minor": str(minor(VERSION)[1]),
        "gitVersion": "v" + VERSION,
        "gitCommit": "standin",
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "standin",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
    if o == "short":
        out("v" + VERSION)
    elif o == "json":
        out(json.dumps({"clientVersion": info}, indent=2))
    elif o == "yaml":
        out("clientVersion:\n" + "\n".join(f"  {k}: {v}" for k, v in info.items()))
    else:
        out(
            "kubeadm version: &version.Info{"
            + ", ".join(f'{k[0].upper() + k[1:]}:"{v}"' for k, v in info.items())
            + "}"
        )
    return 0
