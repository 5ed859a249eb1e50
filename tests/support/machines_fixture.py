"""Pytest plugin: real local machines (systemd-nspawn) for tests marked ``machines``.

The provider uses a test-only name and subnet (``ORBITER_TEST_SUBNET``, default 10.78.0.0/24)
and a throwaway state dir, but the base image is cached in the shared image dir
(``ORBITER_IMAGE_CACHE``, default ``state_dir()/images``) so runs do not debootstrap again.
Everything the tests start (machines, bridge, apt server) is removed at session end, also on
failures, Ctrl-C (try/finally), SIGTERM and interpreter exit (atexit).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from orbiter.activities.providers.local import LocalMachines, nspawn, state_dir
from orbiter.activities.ssh import generate_ed25519
from orbiter.models.machines import Machine

from .net import subnet

TEST_PROVIDER = "orbiter-test"
TEST_SUBNET = os.environ.get("ORBITER_TEST_SUBNET") or subnet(78)
TEST_POOL = "test"
# Resolved at import, before conftest points ORBITER_STATE_DIR at a throwaway dir, so every
# run shares one cached base image.
SHARED_IMAGES = os.environ.get("ORBITER_IMAGE_CACHE") or str(state_dir() / "images")
# One machines session at a time on a host: they share the test bridge and subnet, and the
# start-up sweep must only ever remove leftovers of dead sessions.
SESSION_LOCK = Path(f"/tmp/orbiter-machines-tests-{TEST_SUBNET.split('/')[0]}.lock")  # per test subnet
SESSION_LOCK_WAIT = 1800.0


def _acquire_session_lock() -> int:
    fd = os.open(SESSION_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + SESSION_LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                pytest.skip("another test session keeps using the local test machines")
            time.sleep(1)


def _sweep(provider: LocalMachines) -> None:
    """Kill any nspawn/http.server left on the test bridge (even from an aborted earlier run)."""
    marks = (f"--network-bridge={provider.bridge}", f"--bind {provider.host_ip} ")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(m in cmd for m in marks) and ("systemd-nspawn" in cmd or "http.server" in cmd):
            nspawn.stop_process_tree(int(proc.name), None, grace=5)
    with contextlib.suppress(Exception):
        subprocess.run(["ip", "link", "del", provider.bridge], capture_output=True, check=False)


def _teardown(provider: LocalMachines) -> None:
    """Delete every machine, then the bridge and the apt server; never raises."""
    for machine_id in [m["id"] for m in provider.list_status()]:
        with contextlib.suppress(Exception):
            provider.delete(machine_id)
    with contextlib.suppress(Exception):
        provider.destroy_network()
    _sweep(provider)


@pytest.fixture(scope="session")
def local_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMachines]:
    """A LocalMachines on a test subnet, torn down completely at session end."""
    if os.geteuid() != 0 or shutil.which("systemd-nspawn") is None:
        pytest.skip("machines tests need root and systemd-nspawn")
    state = tmp_path_factory.mktemp("orbiter-state")
    lock_fd = _acquire_session_lock()
    with contextlib.ExitStack() as stack:
        stack.callback(os.close, lock_fd)
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setenv("ORBITER_IMAGE_CACHE", SHARED_IMAGES)
        provider = LocalMachines(TEST_PROVIDER, TEST_SUBNET, state=state)
        _sweep(provider)
        done = False

        def cleanup() -> None:
            nonlocal done
            if not done:
                done = True
                _teardown(provider)

        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            cleanup()
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        atexit.register(cleanup)
        signal.signal(signal.SIGTERM, on_sigterm)
        try:
            yield provider
        finally:
            cleanup()
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
            atexit.unregister(cleanup)


@pytest.fixture(scope="session")
def maintenance_key() -> tuple[str, str]:
    """(private OpenSSH text, public line) the test machines trust for root."""
    return generate_ed25519()


@pytest.fixture(scope="session")
def two_machines(
    local_provider: LocalMachines, maintenance_key: tuple[str, str]
) -> list[Machine]:
    """Two machines booted in parallel, shared by the tests of a session."""
    return local_provider.create(TEST_POOL, ["orb-t1", "orb-t2"], maintenance_key[1], "test-key")
