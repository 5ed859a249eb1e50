"""The worker process: registers orbiter's workflows and activities on one task queue.

Several workers can serve one Temporal server; that is how orbiter scales out.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from orbiter.models.ids import SEARCH_ATTRIBUTES, TASK_QUEUE
from orbiter.worker.heartbeats import Heartbeats
from orbiter.worker.identity import build_id, identity, refuse_mixed_minor
from orbiter.worker.registry import activities, workflows
from orbiter.worker.settings import WorkerSettings, worker_settings


async def ensure_search_attributes(client: Client) -> None:
    """Register orbiter's search attributes on servers that `orbiter server` did not start."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )


def build_worker(client: Client, executor: ThreadPoolExecutor, drain: timedelta = timedelta(0),
                 settings: WorkerSettings | None = None) -> Worker:
    settings = settings or worker_settings()
    return Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=workflows(),
        activities=activities(client),
        activity_executor=executor,
        max_concurrent_activities=settings.activity_threads,
        max_concurrent_workflow_tasks=settings.workflow_tasks,
        max_cached_workflows=settings.workflow_cache,
        interceptors=[Heartbeats()],
        identity=identity(),  # `orbiter status` lists the versions serving the queue (worker/identity.py)
        build_id=build_id(),
        graceful_shutdown_timeout=drain,  # running activities may finish before the worker stops
    )


async def run_worker(client: Client, stop: asyncio.Event | None = None, drain: timedelta = timedelta(0)) -> None:
    for attempt in range(60):
        # A server that just started answers before its shards are ready.
        try:
            await ensure_search_attributes(client)
            break
        except RPCError:
            if attempt == 59:
                raise
            await asyncio.sleep(0.5)
    await refuse_mixed_minor(client)
    settings = worker_settings()
    with ThreadPoolExecutor(max_workers=settings.activity_threads) as executor:
        worker = build_worker(client, executor, drain, settings)
        if stop is None:
            await worker.run()
            return
        async with worker:
            await stop.wait()
