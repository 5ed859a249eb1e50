"""The Redis kind's recorded histories (tests/workflows/histories/*redis*) replay against today's
workflow code, and they hold the paths a change could break: bootstrap, scale-up, a scale-down
that fails the primary over, a roll, destroy, the watch of a Ready cluster, and a failover step
resumed by a second worker after the first was SIGKILLed in it.

Recorded by tests/machines/test_redis_e2e.py and test_redis_failover.py with
ORBITER_RECORD_HISTORIES=1 (see test_replay.py)."""

import json
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from orbiter.worker.codec import data_converter
from orbiter.worker.registry import workflows

from ..conftest import MASTER_KEY
from .test_replay import HISTORIES, RECORD

pytestmark = pytest.mark.skipif(RECORD, reason="recording run: the histories are being rewritten")
NAMES = ("cluster_redis_lifecycle", "cluster_redis_failover", "node_agent_redis_member")


def history(name: str) -> WorkflowHistory:
    data = json.loads((HISTORIES / f"{name}.json").read_text())
    return WorkflowHistory.from_json(data["workflow_id"], data["history"])


def activities(h: WorkflowHistory) -> tuple[Counter, dict[str, int]]:
    """(activities scheduled by type, the highest attempt each type reached)."""
    scheduled, names, attempts = Counter(), {}, {}
    for event in h.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            names[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[names[event.event_id]] += 1
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            name = names.get(started.scheduled_event_id, "")
            attempts[name] = max(attempts.get(name, 0), started.attempt)
    return scheduled, attempts


@pytest.mark.parametrize("name", NAMES)
async def test_redis_history_replays(name: str):
    replayer = Replayer(workflows=workflows(), data_converter=data_converter(MASTER_KEY))
    result = await replayer.replay_workflow(history(name), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{name}: {result.replay_failure!r}"


def test_the_lifecycle_history_has_every_step_of_the_kind():
    scheduled, _ = activities(history("cluster_redis_lifecycle"))
    wanted = {"prepare_packages", "acquire_machines", "ensure_redis_secrets", "redis_attach", "redis_status",
              "redis_failover", "redis_sentinels", "release_machine"}
    assert wanted <= set(scheduled), scheduled
    # Scale-up to 5 after a bootstrap of 3: every new member attached; the roll's and the
    # scale-down's failovers.
    assert scheduled["redis_attach"] >= 3 and scheduled["redis_failover"] >= 2


def test_the_failover_history_holds_the_watch_and_the_resumed_failover():
    h = history("cluster_redis_failover")
    scheduled, attempts = activities(h)
    assert attempts["redis_failover"] >= 2  # the worker died in it; the next one finished it
    timers = sum(1 for e in h.events if e.HasField("timer_fired_event_attributes"))
    assert timers >= 3 and scheduled["redis_status"] > timers  # a Ready cluster observed every driftInterval


def test_the_histories_are_there():
    assert {p.stem for p in Path(HISTORIES).glob("*redis*.json")} == set(NAMES)
