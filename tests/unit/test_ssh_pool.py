"""The worker's SSH pool lets go of sessions nobody used for POOL_IDLE_SECONDS, to any machine:
a worker that served a thousand machines does not keep a thousand connections (and threads)."""

import pytest

from orbiter.activities import ssh


class FakeSession:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_sessions_idle_too_long_are_closed_and_recent_ones_kept(monkeypatch: pytest.MonkeyPatch):
    old, fresh = FakeSession(), FakeSession()
    pool = {("m1",): [(100.0, old)], ("m2",): [(100.0 + ssh.POOL_IDLE_SECONDS, fresh)]}
    monkeypatch.setattr(ssh, "_pool", pool)
    monkeypatch.setattr(ssh, "_last_sweep", 0.0)
    now = 100.0 + ssh.POOL_IDLE_SECONDS + 1
    assert ssh.sweep_pool(now) == 1
    assert old.closed and not fresh.closed
    assert pool == {("m2",): [(100.0 + ssh.POOL_IDLE_SECONDS, fresh)]}
    # Not again before POOL_IDLE_SECONDS passed: a sweep per activity would cost more than it frees.
    assert ssh.sweep_pool(now + ssh.POOL_IDLE_SECONDS - 1) == 0
    assert ssh.sweep_pool(now + ssh.POOL_IDLE_SECONDS + 1) == 1 and fresh.closed and pool == {}
