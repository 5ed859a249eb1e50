"""Streaming over an SSH session: a command's output or input in chunks, never whole in memory
(backups leaving and reaching machines)."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator

import paramiko

from .ssh import _STDERR_TAIL_CHARS, RunResult, SshError, SshSession, Unreachable, _label


def stream_out(session: SshSession, command: str, *, idle_timeout: float = 120) -> Iterator[bytes]:
    """A command's stdout in chunks as it comes (a backup leaving a machine without being held
    in memory); SshError when it exits non-zero or says nothing for `idle_timeout`."""
    first_line = command.strip().splitlines()[0] if command.strip() else ""
    chan: paramiko.Channel | None = None
    try:
        chan = session.exec_channel(command)
        chan.shutdown_write()
        err = bytearray()
        quiet_since = time.monotonic()
        while True:
            select.select([chan], [], [], 0.5)
            got = False
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            while chan.recv_ready():
                got = True
                yield chan.recv(1 << 20)
            if got:
                quiet_since = time.monotonic()
            elif chan.exit_status_ready() and chan.eof_received and not chan.recv_ready():
                break
            elif time.monotonic() - quiet_since > idle_timeout:
                raise SshError(f"{_label(session.machine)}: {first_line!r} said nothing for {idle_timeout:g}s")
        status = chan.recv_exit_status()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise Unreachable(f"{_label(session.machine)}: connection lost running {first_line!r}: {exc}") from exc
    finally:
        if chan is not None:
            chan.close()
    if status != 0:
        tail = " | ".join(ln for ln in err.decode(errors="replace").splitlines() if ln.strip())
        raise SshError(f"{_label(session.machine)}: {first_line!r} exited with status {status}: "
                       f"{tail[-_STDERR_TAIL_CHARS:] or '(no stderr)'}")


def stream_in(session: SshSession, command: str, chunks: Iterator[bytes], *, timeout: float = 600) -> RunResult:
    """Feed `chunks` to a command's stdin as they come (a backup going back to a machine)."""
    first_line = command.strip().splitlines()[0] if command.strip() else ""
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    chan: paramiko.Channel | None = None
    try:
        chan = session.exec_channel(command)
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                if time.monotonic() > deadline:
                    raise SshError(f"{_label(session.machine)}: {first_line!r} timed out after {timeout:g}s")
                if chan.send_ready():
                    view = view[chan.send(view[:32768]):]
                else:
                    select.select([], [chan], [], 0.5)
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
        chan.shutdown_write()
        more_out, more_err, status = _pump_rest(session, chan, deadline, first_line)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise Unreachable(f"{_label(session.machine)}: connection lost running {first_line!r}: {exc}") from exc
    finally:
        if chan is not None:
            chan.close()
    return RunResult(stdout=(out + more_out).decode(errors="replace"),
                     stderr=(err + more_err).decode(errors="replace"), status=status)


def _pump_rest(session: SshSession, chan: paramiko.Channel, deadline: float,
               first_line: str) -> tuple[bytes, bytes, int]:
    out, err = bytearray(), bytearray()
    while not (chan.exit_status_ready() and chan.eof_received) or chan.recv_ready() or chan.recv_stderr_ready():
        if time.monotonic() > deadline:
            raise SshError(f"{_label(session.machine)}: {first_line!r} timed out")
        select.select([chan], [], [], 0.5)
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
    return bytes(out), bytes(err), chan.recv_exit_status()


