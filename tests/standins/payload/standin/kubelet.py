"""Orbiter test stand-in, not Kubernetes: the kubelet, which heartbeats its node into the stand-in API."""

from __future__ import annotations

import os
import time

from .client import ApiError, api, load_kubeconfig
from .common import KUBELET_CONF, KUBELET_DIR, STANDIN, VERSION, Fail, err, out


def kubelet(argv: list[str]) -> int:
    if "--version" in argv or "--version=true" in argv:
        out(f"Kubernetes v{VERSION}")
        return 0
    if not os.path.exists(KUBELET_CONF):
        raise Fail(
            f'E0000 run.go:74] "command failed" err="failed to load kubelet config file, path: '
            f'{KUBELET_DIR}/config.yaml, error: open {KUBELET_DIR}/config.yaml: no such file or directory" '
            f"({STANDIN}: this node has not joined a cluster)"
        )
    conf = load_kubeconfig(KUBELET_CONF)
    node = conf["user"].removeprefix("system:node:")
    err(f"I0000 kubelet ({STANDIN}) v{VERSION} starting for node {node}, API {conf['server']}")
    while True:
        try:
            api(
                conf["server"],
                "POST",
                "/standin/heartbeat",
                {"name": node, "kubeletVersion": VERSION},
                conf["token"],
                conf["ca"],
                timeout=5,
            )
        except (Fail, ApiError) as exc:
            err(f"E0000 kubelet_node_status.go] Error updating node status, will retry: {exc}")
        time.sleep(3)
