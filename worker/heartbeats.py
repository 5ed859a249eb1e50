"""Every activity heartbeats, and every activity call has a short heartbeat timeout.

A worker that dies mid-activity is noticed by Temporal only through a missed heartbeat or the
call's start-to-close timeout. With timeouts of minutes (a kubeadm join, a drain, a base image
build), a crash at the wrong moment held the step for minutes. Here both halves are one rule:

- the worker beats for every running activity from its event loop every BEAT seconds (also while
  the activity blocks a thread on a command that runs for minutes), repeating the activity's
  latest progress line so `orbiter status` keeps showing it;
- every activity a workflow starts gets HEARTBEAT_TIMEOUT unless it names its own.

So a crash costs HEARTBEAT_TIMEOUT plus the retry's first interval (about 11 s) at any line of any
activity; the figures per activity type are in bench/README.md.
"""

import asyncio
import time
from datetime import timedelta
from typing import Any

from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

HEARTBEAT_TIMEOUT = timedelta(seconds=10)
BEAT = 3.0  # seconds; the SDK sends at most one heartbeat per 0.8 * HEARTBEAT_TIMEOUT anyway


class _Details:
    def __init__(self) -> None:
        self.details: tuple[Any, ...] = ()
        self.at = 0.0


class _RecordingOutbound(ActivityOutboundInterceptor):
    def __init__(self, next: ActivityOutboundInterceptor, last: _Details) -> None:
        super().__init__(next)
        self.last = last

    def heartbeat(self, *details: Any) -> None:
        self.last.details, self.last.at = details, time.monotonic()
        super().heartbeat(*details)


class _BeatingInbound(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        self.last = _Details()
        self.outbound = _RecordingOutbound(outbound, self.last)
        super().init(self.outbound)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        beater = asyncio.create_task(self._beat())
        try:
            return await super().execute_activity(input)
        finally:
            beater.cancel()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(BEAT)
            if time.monotonic() - self.last.at >= BEAT:
                # Straight to the worker from its event loop: activity.heartbeat() of a threaded
                # activity would wait on this very loop.
                self.outbound.heartbeat(*self.last.details)


class _ShortHeartbeatOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> Any:
        if input.heartbeat_timeout is None:
            input.heartbeat_timeout = HEARTBEAT_TIMEOUT
        return super().start_activity(input)


class _WorkflowInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_ShortHeartbeatOutbound(outbound))


class Heartbeats(Interceptor):
    """The worker's interceptor: both halves of the rule above."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _BeatingInbound(next)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _WorkflowInbound
