"""How much one worker process takes on at once: settings from its environment.

One worker carries every workflow of the orbs on its server (a node agent per machine, a
workflow per cluster, one per repository). Temporal keeps recently run workflows in the worker's
cache; one that falls out replays its whole history on its next task, so the cache must hold
every workflow that wakes up regularly (all node agents): a cache smaller than that turns every
drift round into replays. bench/README.md ("scale") has what each costs.
"""

import os
from dataclasses import dataclass


class SettingError(Exception):
    """A worker setting in the environment that is not usable; one line naming it."""


@dataclass(frozen=True)
class WorkerSettings:
    activity_threads: int  # ORBITER_ACTIVITY_THREADS: activities at once (SSH rounds, git, providers)
    workflow_tasks: int  # ORBITER_WORKFLOW_TASKS: workflow tasks at once
    workflow_cache: int  # ORBITER_WORKFLOW_CACHE: workflows kept in memory between their tasks


DEFAULTS = WorkerSettings(activity_threads=64, workflow_tasks=100, workflow_cache=5000)


def _positive(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise SettingError(f"{name}={text!r} is not a positive whole number: set it to one, or unset it"
                           f" (default {default})")
    return value


def worker_settings() -> WorkerSettings:
    return WorkerSettings(
        activity_threads=_positive("ORBITER_ACTIVITY_THREADS", DEFAULTS.activity_threads),
        workflow_tasks=_positive("ORBITER_WORKFLOW_TASKS", DEFAULTS.workflow_tasks),
        workflow_cache=_positive("ORBITER_WORKFLOW_CACHE", DEFAULTS.workflow_cache),
    )
