"""Orbiter test stand-in, not Kubernetes: the entry of every stand-in program, dispatched on the name
it was run as (the launchers /usr/bin/kubeadm, kubelet, kubectl and standin-apiserver call main()).
"""

from __future__ import annotations

import os
import sys

from .apiserver import apiserver
from .client import ApiError
from .common import STANDIN, Fail, err, record, record_exit
from .kubeadm import kubeadm
from .kubectl import kubectl
from .kubelet import kubelet


def main() -> int:
    tool = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    handlers = {"kubeadm": kubeadm, "kubectl": kubectl, "kubelet": kubelet, "standin-apiserver": apiserver}
    if tool not in handlers:
        err(f"{STANDIN}: run as kubeadm, kubectl, kubelet or standin-apiserver, not {tool}")
        return 2
    inv = record(tool, argv) if tool != "standin-apiserver" else ""
    status = 0
    try:
        status = handlers[tool](argv)
    except Fail as exc:
        err(str(exc))
        status = exc.status
    except ApiError as exc:
        err(f"Error from server: {exc}")
        status = 1
    except KeyboardInterrupt:
        status = 130
    if inv:
        record_exit(inv, status)
    return status


if __name__ == "__main__":
    sys.exit(main())
