"""Operator actions a kind offers (`orbiter backup`, `orbiter backups`), sent to a ClusterWorkflow
as its `action` update. The kind's runbook refuses them (the update's validator, so a refusal is
one line and leaves no trace in the history) or does them; this module names no kind."""

from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from orbiter.models.actions import ActionInput, ActionResult
    from orbiter.models.cluster import ClusterState
    from orbiter.models.errors import error_line

from .context import Blocked, ClusterContext
from .runbook import Runbook

__all__ = ["ActionInput", "ActionResult", "check_action", "run_action"]


def check_action(state: ClusterState, runbooks: dict[str, Runbook], input: ActionInput) -> None:
    """The update's validator: ValueError with the one line of why not."""
    if state.desired is None:
        raise ValueError("the cluster has no desired state yet: push desired.yml first")
    if refused := runbooks[state.desired.spec.kind].refuse_action(state, input):
        raise ValueError(refused)


async def run_action(orb: str, cluster: str, state: ClusterState, runbooks: dict[str, Runbook],
                     report: Callable[[], Awaitable[None]], input: ActionInput) -> ActionResult:
    desired = state.desired
    assert desired is not None  # the validator refused otherwise

    async def quiet(*_: object) -> None:
        return None

    ctx = ClusterContext(orb=orb, name=cluster, state=state, desired=desired, step=quiet, gate=quiet, report=report)
    try:
        return await runbooks[desired.spec.kind].act(ctx, input)
    except (ActivityError, Blocked) as err:
        # The CLI hears the one line; any other exception would fail the workflow task, not the update.
        raise ApplicationError(error_line(err), non_retryable=True) from None
