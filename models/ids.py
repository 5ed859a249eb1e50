"""Workflow ids derive from names, so a second start finds the same workflow (the id is the lock)."""

import hashlib
import re

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "orbiter"
CLUSTER_WORKFLOW = "ClusterWorkflow"  # the type name, for starting one where the class is not imported
# Search attributes orbiter sets on cluster workflows (the Web UI filters by them).
ORB_KEY = SearchAttributeKey.for_keyword("OrbiterOrb")
CLUSTER_KEY = SearchAttributeKey.for_keyword("OrbiterCluster")
PHASE_KEY = SearchAttributeKey.for_keyword("OrbiterPhase")
GITOPS_MEMO = "gitops"  # a cluster workflow's memo: the GitOps workflow (repository) that manages it
SEARCH_ATTRIBUTES = {"OrbiterOrb": "Keyword", "OrbiterCluster": "Keyword", "OrbiterPhase": "Keyword"}


def gitops_workflow_id(repo_url: str, branch: str) -> str:
    digest = hashlib.sha256(f"{repo_url}#{branch}".encode()).hexdigest()[:12]
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", repo_url.rstrip("/").split("/")[-1])[:40]
    return f"gitops/{tail}/{branch}/{digest}"


def cluster_workflow_id(orb: str, cluster: str) -> str:
    return f"cluster/{orb}/{cluster}"


def node_workflow_id(orb: str, cluster: str, machine: str) -> str:
    return f"node/{orb}/{cluster}/{machine}"
