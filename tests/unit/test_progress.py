"""Heartbeats with a progress line: a long call never looks dead to Temporal, and its latest
line is what `orbiter status` shows beside the cluster's step."""

import threading
import time

import pytest
from temporalio.testing import ActivityEnvironment

from orbiter.activities import progress


def test_a_long_call_heartbeats_while_it_runs(monkeypatch):
    """A call longer than the heartbeat timeout must not look dead to Temporal (which would start a
    second attempt while the first still runs on the machine); its error is the activity's error."""
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 0.02)
    env = ActivityEnvironment()
    beats: list[tuple] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    assert env.run(lambda: progress.beating("kubeadm join x", lambda: time.sleep(0.3) or "joined")) == "joined"
    assert len(beats) >= 5 and set(beats) == {("kubeadm join x",)}

    def fails():
        raise TimeoutError("the call's own error")

    with pytest.raises(TimeoutError, match="own error"):
        env.run(lambda: progress.beating("x", fails))
    assert progress.beating("outside an activity", lambda: 7) == 7


def test_a_progress_line_from_another_thread_reaches_the_next_heartbeat(monkeypatch):
    """Builds run in helper threads (one per machine); their progress lines must still arrive."""
    monkeypatch.setattr(progress, "HEARTBEAT_SECONDS", 5.0)
    env = ActivityEnvironment()
    beats: list[str] = []
    env.on_heartbeat = lambda *details: beats.append(details[0])

    def body() -> None:
        with progress.heartbeating("building the base image") as say:
            helper = threading.Thread(target=say, args=("booting machines",))
            helper.start()
            helper.join()
            deadline = time.monotonic() + 2
            while "booting machines" not in beats and time.monotonic() < deadline:
                time.sleep(0.01)

    env.run(body)
    assert beats[0] == "building the base image"
    assert "booting machines" in beats  # sent at once, not at the next 5 s beat


def test_an_expected_activity_failure_is_logged_as_one_line():
    """What `orbiter worker` and `orbiter up` print for an activity orbiter failed on purpose (a
    missing branch, a machine that does not answer): its one line, not a traceback per attempt."""
    import io
    import logging

    from temporalio.exceptions import ApplicationError

    from orbiter.worker.logs import OneLineExpectedFailures

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(OneLineExpectedFailures())
    log = logging.getLogger("orbiter-test-logs")
    log.addHandler(handler)
    try:
        for err in (ApplicationError("branch main does not exist in /r.git", type="GitError"), KeyError("bug")):
            try:
                raise err
            except Exception:
                log.warning("Completing activity as failed (%s)", "poll_remote", exc_info=True)
    finally:
        log.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Completing activity as failed (poll_remote): GitError: branch main does not exist in /r.git"
    assert lines[1] == "Completing activity as failed (poll_remote)" and "Traceback" in lines[2]  # a bug keeps it
