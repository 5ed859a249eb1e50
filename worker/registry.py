"""Every workflow and activity orbiter runs, in one place: the kinds' activities come from their
registry entries (models/kinds)."""

from collections.abc import Callable
from importlib import import_module
from typing import Any

from temporalio.client import Client

from orbiter.activities import backups, git, gitupdate, loadbalancers, machines, node, notify, updates
from orbiter.activities.temporal_ops import TemporalOps
from orbiter.models.kinds import KINDS
from orbiter.workflows.cluster import ClusterWorkflow
from orbiter.workflows.gitops import GitOpsWorkflow
from orbiter.workflows.node_agent import NodeAgentWorkflow


def workflows() -> list[type]:
    return [GitOpsWorkflow, ClusterWorkflow, NodeAgentWorkflow]


def kind_activities() -> list[Callable[..., Any]]:
    out: list[Callable[..., Any]] = []
    for kind in KINDS.values():
        module, _, name = kind.activities.partition(":")
        out += getattr(import_module(module), name)
    return out


def activities(client: Client) -> list[Callable[..., Any]]:
    return [
        git.poll_remote, git.read_desired, git.write_back, TemporalOps(client).signal_cluster, notify.deliver_notice,
        *machines.ACTIVITIES, *loadbalancers.ACTIVITIES, *node.ACTIVITIES, *backups.ACTIVITIES,
        *updates.ACTIVITIES, *gitupdate.ACTIVITIES, *kind_activities(),
    ]
