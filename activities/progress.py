"""Heartbeats that carry a line of progress.

A heartbeat does two jobs: it lets Temporal see within seconds that a worker died mid-activity
(so a crash costs seconds, not the activity's whole timeout), and its detail is the activity's
latest progress line, which `orbiter status` shows beside the cluster's step ("building the base
image (first run, about a minute)"). Details are plain text for operators: never a secret.
"""

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from temporalio import activity

HEARTBEAT_SECONDS = 10.0

T = TypeVar("T")


def heartbeat(detail: str) -> None:
    """Report progress; a no-op outside an activity, so the same code runs in scripts and tests."""
    if activity.in_activity():
        activity.heartbeat(detail)


@contextmanager
def heartbeating(detail: str | None = None, every: float | None = None) -> Iterator[Callable[[str], None]]:
    """Heartbeat from a side thread while the body blocks (a build, a command that runs for
    minutes); yields a hook that changes the progress line.

    Without a first `detail` the first heartbeat waits for the first progress line: Temporal
    sends one heartbeat at once and holds later ones for most of the heartbeat timeout, so a
    placeholder sent first would keep the line that matters ("building the base image") from an
    operator for that long."""
    if not activity.in_activity():
        yield lambda _detail: None
        return
    ctx = contextvars.copy_context()
    stop, wake = threading.Event(), threading.Event()
    state: dict[str, str | None] = {"detail": detail}

    def beat() -> None:
        # The only thread that enters the activity's context after the first beat: a hook called
        # from any thread just wakes it.
        while not stop.is_set():
            wake.wait(every or HEARTBEAT_SECONDS)
            wake.clear()
            if not stop.is_set():
                ctx.run(activity.heartbeat, *([state["detail"]] if state["detail"] else []))

    def progress(new: str) -> None:
        state["detail"] = new
        wake.set()

    if detail:
        activity.heartbeat(detail)
    thread = threading.Thread(target=beat, name="orbiter-heartbeat", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        wake.set()
        thread.join()


def beating(detail: str, call: Callable[[], T]) -> T:
    """`call()` with heartbeats while it runs: a command that runs for minutes must not outlive the
    heartbeat timeout, or Temporal starts a second attempt while the first still runs."""
    with heartbeating(detail):
        return call()
