"""Every workflow and activity orbiter runs, in one place."""

from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from orbiter.activities import etcd, git, kubeadm, machines, network, node
from orbiter.activities.temporal_ops import TemporalOps
from orbiter.workflows.cluster import ClusterWorkflow
from orbiter.workflows.gitops import GitOpsWorkflow
from orbiter.workflows.node_agent import NodeAgentWorkflow


def workflows() -> list[type]:
    return [GitOpsWorkflow, ClusterWorkflow, NodeAgentWorkflow]


def activities(client: Client) -> list[Callable[..., Any]]:
    return [
        git.poll_remote, git.read_desired, git.write_back, TemporalOps(client).signal_cluster,
        machines.ensure_provider_keys, machines.acquire_machines, machines.release_machine,
        machines.prepare_packages, machines.machine_boot_id, machines.reboot_machine,
        node.observe_node, node.apply_node, node.converge_node,
        etcd.ensure_etcd_certs, etcd.etcd_status, etcd.etcd_wait_listening,
        etcd.etcd_member_add, etcd.etcd_member_remove,
        *kubeadm.ACTIVITIES, network.network_facts,
    ]
