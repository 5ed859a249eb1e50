"""Every kind's runbook, found through the kinds' registry (models/kinds)."""

from importlib import import_module

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orbiter.models.kinds import KINDS

from .runbook import Runbook


def _runbook(path: str) -> Runbook:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)()


RUNBOOKS: dict[str, Runbook] = {name: _runbook(kind.runbook) for name, kind in KINDS.items()}
