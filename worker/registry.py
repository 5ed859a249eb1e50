"""Every workflow and activity orbiter runs, in one place."""

from collections.abc import Callable
from typing import Any

from temporalio.client import Client

from orbiter.activities import git, machines
from orbiter.activities.temporal_ops import TemporalOps
from orbiter.workflows.cluster import ClusterWorkflow
from orbiter.workflows.gitops import GitOpsWorkflow


def workflows() -> list[type]:
    found: list[type] = [GitOpsWorkflow, ClusterWorkflow]
    try:
        from orbiter.workflows.node_agent import NodeAgentWorkflow
    except ImportError:
        pass
    else:
        found.append(NodeAgentWorkflow)
    return found


def activities(client: Client) -> list[Callable[..., Any]]:
    ops = TemporalOps(client)
    found: list[Callable[..., Any]] = [
        git.poll_remote, git.read_desired, git.write_back, ops.signal_cluster,
        machines.ensure_provider_keys, machines.acquire_machines, machines.release_machine,
        machines.prepare_packages,
    ]
    try:
        from orbiter.activities import node
    except ImportError:
        pass
    else:
        found += [node.observe_node, node.apply_node]
    return found
