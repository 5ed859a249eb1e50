"""Dispatch from a cluster kind to its reconcile; adding a kind touches only this table."""

from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import DesiredUpdate

from . import etcd, kubernetes
from .blocked import Blocked

if TYPE_CHECKING:
    from .cluster import ClusterWorkflow

__all__ = ["Blocked", "reconcile"]


async def reconcile(cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
    """Bring the cluster to `desired`; idempotent, so running it again after a crash is safe."""
    if desired.spec.kind == "etcd":
        await etcd.reconcile(cluster, desired)
        return
    if desired.spec.kind == "kubernetes":
        await kubernetes.reconcile(cluster, desired)
        return
    raise Blocked(
        f"cluster kind {desired.spec.kind}: orbiter does not manage its machines yet; the desired"
        " state was validated and recorded, nothing was changed"
    )
