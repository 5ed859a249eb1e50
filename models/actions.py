"""Operator actions a cluster's kind offers beyond what desired.yml says (`orbiter backup`,
`orbiter restore`): one generic `action` update of the ClusterWorkflow, which hands them to the
kind's runbook. The CLI and the workflow name no kind."""

from .base import Model


class ActionInput(Model):
    """An operator's action on a cluster that its kind offers (`orbiter backup`, `orbiter restore`),
    sent as the `action` update."""

    action: str
    args: dict[str, str] = {}
    by: str = ""


class ActionResult(Model):
    message: str
    data: list[dict] = []
