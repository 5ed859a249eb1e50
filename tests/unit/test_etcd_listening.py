"""The bootstrap's ordering hint: wait for the first member's peer port, never fail."""

import socket

from temporalio.testing import ActivityEnvironment

from orbiter.activities.kinds.etcd import etcd_wait_listening
from orbiter.models.kinds.etcd.messages import WaitListeningInput


def test_wait_listening_answers_once_the_port_listens_and_gives_up_without_failing() -> None:
    env = ActivityEnvironment()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = env.run(etcd_wait_listening, WaitListeningInput(ip="127.0.0.1", port=port))
        assert found.listening and found.waited_seconds < 1
    # Nothing listens there any more: the wait ends at its budget, as an answer, not an error.
    missed = env.run(etcd_wait_listening, WaitListeningInput(ip="127.0.0.1", port=port, timeout_seconds=0.3))
    assert not missed.listening and missed.waited_seconds >= 0.3
