"""Notifications from a workflow: one activity per event and sink, retried until the sink takes it.

The event's number is durable workflow state, so its delivery id is the same in every retry and
after a worker restart; the activity runs in the background, so a sink that is down never holds
up a step. A workflow drains the deliveries still under way before it continues as new.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orbiter.activities.notify import deliver_notice
    from orbiter.models.notify import DeliverInput, Event, Notice, Sink
    from orbiter.models.refs import SecretsRef

# Until the sink answers: a day of attempts, at most a minute apart.
DELIVERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
                             non_retryable_error_types=["NotifyRefused"])


class Notifier:
    def __init__(self) -> None:
        self.pending: set[asyncio.Task[None]] = set()

    def send(self, number: int, sinks: list[Sink], secrets: SecretsRef, event: Event, orb: str, message: str,
             cluster: str | None = None, phase: str | None = None, commit: str | None = None) -> None:
        """Event `number` (the caller's durable counter, already advanced) to every sink that wants it."""
        for index, sink in enumerate(sinks):
            if event not in sink.events:
                continue
            notice = Notice(id=f"{workflow.info().workflow_id}#{number}.{index}", event=event, orb=orb,
                            cluster=cluster, phase=phase, commit=commit, message=message,
                            time=workflow.now().isoformat(timespec="seconds"))
            task = asyncio.create_task(self._deliver(DeliverInput(sink=sink, notice=notice, secrets=secrets)))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _deliver(self, input: DeliverInput) -> None:
        try:
            await workflow.execute_activity(
                deliver_notice, input,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(days=1),
                retry_policy=DELIVERY_RETRY,
                summary=f"notify {input.sink.kind} {input.sink.url_secret}: {input.notice.event}",
            )
        except Exception as err:  # noqa: BLE001 - a lost notification never stops a cluster
            workflow.logger.warning("notification %s to %s not delivered: %s", input.notice.id,
                                    input.sink.url_secret, err)

    async def drain(self) -> None:
        if self.pending:
            await asyncio.gather(*self.pending, return_exceptions=True)
