"""The kubernetes cluster kind's runbook (kubeadm)."""

from ...context import ClusterContext
from ...runbook import Runbook
from .reconcile import KubernetesReconcile
from .steps import DESTROY_STEPS, STEPS


class KubernetesRunbook(Runbook[KubernetesReconcile]):
    steps = STEPS
    destroy_steps = DESTROY_STEPS

    def start(self, ctx: ClusterContext) -> KubernetesReconcile:
        return KubernetesReconcile(ctx)


__all__ = ["KubernetesRunbook"]
