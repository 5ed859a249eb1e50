"""Every activity heartbeats (worker/heartbeats.py): an activity that blocks longer than the
heartbeat timeout without beating itself still finishes, and its last progress line stays what
`orbiter status` shows while it runs."""

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from orbiter.worker.heartbeats import BEAT, HEARTBEAT_TIMEOUT, Heartbeats

SILENT = HEARTBEAT_TIMEOUT.total_seconds() + 2 * BEAT


@activity.defn
def silent_command(line: str) -> str:
    """Like a kubeadm join: one progress line, then a command that blocks the thread."""
    activity.heartbeat(line)
    time.sleep(SILENT)
    return "done"


@workflow.defn(sandboxed=False)
class SilentWorkflow:
    @workflow.run
    async def run(self, line: str) -> str:
        return await workflow.execute_activity(silent_command, line, start_to_close_timeout=timedelta(minutes=5))


async def test_a_silent_activity_outlives_the_heartbeat_timeout_and_keeps_its_progress_line(client: Client):
    queue, line = f"beats-{uuid.uuid4().hex[:6]}", "joining first (kubeadm join)"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(client, task_queue=queue, workflows=[SilentWorkflow], activities=[silent_command],
                          activity_executor=pool, interceptors=[Heartbeats()]):
            handle = await client.start_workflow(SilentWorkflow.run, line, id=f"beats/{queue}", task_queue=queue)
            await asyncio.sleep(HEARTBEAT_TIMEOUT.total_seconds() + BEAT)
            (pending,) = (await handle.describe()).raw_description.pending_activities
            details = await client.data_converter.decode(pending.heartbeat_details.payloads)
            assert details == [line] and pending.attempt == 1, (details, pending.attempt)
            assert await handle.result() == "done"
            scheduled = [e.activity_task_scheduled_event_attributes async for e in handle.fetch_history_events()
                         if e.HasField("activity_task_scheduled_event_attributes")]
            assert [s.heartbeat_timeout.ToTimedelta() for s in scheduled] == [HEARTBEAT_TIMEOUT]  # set by the worker
