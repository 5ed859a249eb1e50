"""Dispatch from a cluster kind to its reconcile; adding a kind touches only this table."""

from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.cluster import DesiredUpdate

if TYPE_CHECKING:
    from .cluster import ClusterWorkflow


class Blocked(Exception):
    """A reconcile cannot go on without an operator: the message says why and what to do."""


async def reconcile(cluster: "ClusterWorkflow", desired: DesiredUpdate) -> None:
    """Bring the cluster to `desired`; idempotent, so running it again after a crash is safe."""
    # Kinds plug in here (etcd, kubernetes). Until one is registered, say so instead of
    # pretending: the cluster is Blocked with a clear reason and nothing is touched.
    raise Blocked(
        f"cluster kind {desired.spec.kind}: orbiter does not manage its machines yet; the desired"
        " state was validated and recorded, nothing was changed"
    )
