"""Orbiter test stand-in, not Kubernetes: kubeadm reset, with the remove-etcd-member phase of a
control plane.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from .client import ApiError, api, load_kubeconfig
from .common import (
    ADMIN_CONF,
    API_CONFIG,
    API_DIR,
    API_UNIT,
    ETCD_DATA,
    KUBE,
    KUBELET_CONF,
    KUBELET_DIR,
    MANIFESTS,
    PKI,
    Fail,
    err,
    hostname,
    local_ip,
    out,
    systemctl,
)


def kubeadm_reset(flags: dict) -> int:
    if "-f" not in flags and "--force" not in flags:
        sys.stdout.write("[reset] Are you sure you want to proceed? [y/N]: ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() != "y":
            raise Fail("won't proceed; the user didn't answer (Y|y) in order to continue")
    out("[preflight] Running pre-flight checks")
    if os.path.exists(KUBELET_CONF):
        try:
            conf = load_kubeconfig(KUBELET_CONF)
            node = conf["user"].removeprefix("system:node:")
            api(conf["server"], "POST", "/standin/reset", {"name": node}, conf["token"], conf["ca"], timeout=10)
        except (Fail, ApiError, KeyError) as exc:
            err(f"W0000 00:00:00.000000 reset.go] [reset] Unable to reach the stand-in API to record the reset: {exc}")
    if os.path.exists(MANIFESTS + "/etcd.yaml"):
        _remove_etcd_member()
    else:
        out("[reset] No etcd config found. Assuming external etcd")
        out("[reset] Please, manually reset etcd to prevent further issues")
    out("[reset] Stopping the kubelet service")
    systemctl("stop", "kubelet.service")
    if os.path.exists(API_CONFIG):
        systemctl("disable", "--now", API_UNIT)
    out("[reset] Deleting contents of directories: [/etc/kubernetes/manifests /var/lib/kubelet /etc/kubernetes/pki]")
    for d in (MANIFESTS, PKI, API_DIR, os.path.dirname(API_CONFIG)):
        shutil.rmtree(d, ignore_errors=True)
    for f in (ADMIN_CONF, KUBELET_CONF, KUBE + "/super-admin.conf", KUBELET_DIR + "/config.yaml"):
        if os.path.exists(f):
            os.unlink(f)
    out(
        "[reset] Deleting files: [/etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf "
        "/etc/kubernetes/kubelet.conf]"
    )
    out("\nThe reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d\n")
    return 0


def _local_member() -> tuple[str, str]:
    """This control plane's node name and address, as its init/join recorded them."""
    try:
        with open(API_CONFIG) as f:
            conf = json.load(f)
    except (OSError, ValueError):
        conf = {}
    name = conf.get("node")
    if not name and os.path.exists(KUBELET_CONF):
        try:
            name = load_kubeconfig(KUBELET_CONF)["user"].removeprefix("system:node:")
        except (Fail, KeyError, OSError):
            name = None
    return (name or hostname()), conf.get("ip") or local_ip()


def _remove_etcd_member() -> None:
    """kubeadm reset's remove-etcd-member phase: take this control plane's member out of the etcd
    cluster (not the only member), then empty the etcd data directory; a failure only warns."""
    name, ip = _local_member()
    path = ADMIN_CONF if os.path.exists(ADMIN_CONF) else KUBELET_CONF
    try:
        conf = load_kubeconfig(path)
        body = {"name": name, "peerURL": f"https://{ip}:2380"}
        api(conf["server"], "POST", "/standin/etcd/remove", body, conf["token"], conf["ca"], timeout=10)
    except (Fail, ApiError, KeyError, OSError) as exc:
        err(
            f"W0000 00:00:00.000000 removeetcdmember.go] [reset] Failed to remove etcd member: {exc}, please "
            "manually remove this etcd member using etcdctl"
        )
        return
    if os.path.isdir(ETCD_DATA):
        for entry in os.listdir(ETCD_DATA):
            target = os.path.join(ETCD_DATA, entry)
            shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else os.unlink(target)
    out(f"[reset] Deleted contents of the etcd data directory: {ETCD_DATA}")
