"""Reading workflow histories the way a crash test asks its questions: which activities were
scheduled (a step that ran again schedules a second one; an activity retry does not), which
processes ran the tasks, what an activity returned. A workflow that continued as new has several
runs: every run is read, oldest first."""

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client


async def run_ids(client: Client, wid: str) -> list[str]:
    """The runs of a workflow id, oldest first (one, unless it continued as new)."""
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{wid}'")]
    return [w.run_id for w in sorted(runs, key=lambda w: w.start_time)]


async def events(client: Client, wid: str) -> AsyncIterator[HistoryEvent]:
    """Every event of every run of `wid`."""
    for run_id in await run_ids(client, wid) or [None]:
        async for event in client.get_workflow_handle(wid, run_id=run_id).fetch_history_events():
            yield event


async def history_facts(client: Client, wid: str) -> tuple[Counter[str], set[str]]:
    """Activities scheduled by type, and the identities of the processes that ran its tasks."""
    scheduled: Counter[str] = Counter()
    identities: set[str] = set()
    async for event in events(client, wid):
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
        for field in ("activity_task_started_event_attributes", "workflow_task_completed_event_attributes"):
            if event.HasField(field) and getattr(event, field).identity:
                identities.add(getattr(event, field).identity)
    return scheduled, identities


async def scheduled_inputs(client: Client, wid: str, types: dict[str, type]) -> list[tuple[str, Any]]:
    """The activities of the given types in the order they were scheduled, with their decoded input."""
    found: list[tuple[str, Any]] = []
    async for event in events(client, wid):
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            if (name := attrs.activity_type.name) in types:
                [value] = await client.data_converter.decode(list(attrs.input.payloads), [types[name]])
                found.append((name, value))
    return found


async def completed_results(client: Client, wid: str, activity: str, result_type: type) -> list[Any]:
    """What each completed `activity` of `wid` returned, decoded, in order."""
    results: list[Any] = []
    for run_id in await run_ids(client, wid) or [None]:
        scheduled: dict[int, str] = {}
        async for event in client.get_workflow_handle(wid, run_id=run_id).fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
            elif event.HasField("activity_task_completed_event_attributes"):
                attrs = event.activity_task_completed_event_attributes
                if scheduled.get(attrs.scheduled_event_id) == activity:
                    [value] = await client.data_converter.decode(list(attrs.result.payloads), [result_type])
                    results.append(value)
    return results
