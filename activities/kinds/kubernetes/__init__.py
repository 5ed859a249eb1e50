"""The kubernetes kind's activities: kubeadm, kubectl and the network facts keepalived needs."""

from collections.abc import Callable
from typing import Any

from .kubeadm import apply_cni, kubeadm_init, kubeadm_join, kubeadm_reset, kubeadm_upgrade
from .network import network_facts
from .nodes import delete_node, drain, k8s_nodes, uncordon

ACTIVITIES: list[Callable[..., Any]] = [
    kubeadm_init, kubeadm_join, apply_cni, k8s_nodes, drain, uncordon, delete_node, kubeadm_upgrade, kubeadm_reset,
    network_facts,
]
