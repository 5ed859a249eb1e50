"""SSH executor: run commands and upload files on a Machine with a pinned host key.

Errors are split by what a caller should do about them: ``Unreachable`` is worth retrying with
backoff, ``AuthFailed`` and ``HostKeyChanged`` are not (retrying cannot fix a wrong key, and a
changed host key may be an attack). Every message is a single line naming the machine.

The module keeps no global mutable state: each ``SshSession`` owns its own paramiko
``Transport``, so sessions to many machines can be used from many threads at once (one
session should be used by one thread at a time).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import select
import shlex
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from orbiter.models.machines import Machine

KEEPALIVE_SECONDS = 15
_STDERR_TAIL_LINES = 5
_STDERR_TAIL_CHARS = 400


class SshError(Exception):
    """Base class; the message is one line naming the machine."""


class Unreachable(SshError):
    """Connection refused, timed out or no route: transient, callers retry with backoff."""


class AuthFailed(SshError):
    """The server rejected our key: retrying will not help."""


class HostKeyChanged(SshError):
    """The server's host key differs from the pinned one: never retried, may be an attack."""


@dataclass
class RunResult:
    """Outcome of one remote command."""

    stdout: str
    stderr: str
    status: int


def _label(machine: Machine) -> str:
    return f"machine {machine.id} ({machine.user}@{machine.ip}:{machine.ssh_port})"


def _split_key(host_key: str) -> tuple[str, str]:
    """Return (type, base64) of an OpenSSH public key line, ignoring any comment."""
    parts = host_key.strip().split()
    if len(parts) < 2:
        raise ValueError(f"not an OpenSSH public key: {host_key!r}")
    return parts[0], parts[1]


def fingerprint(host_key: str) -> str:
    """SHA256 fingerprint as ``ssh-keygen -l`` prints it, so users can compare by eye."""
    _, b64 = _split_key(host_key)
    digest = hashlib.sha256(base64.b64decode(b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def generate_ed25519() -> tuple[str, str]:
    """Fresh key pair: (private key in OpenSSH format, public ``ssh-ed25519 AAAA... orbiter``)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return private, public + " orbiter"


def _load_private_key(private_key: str) -> paramiko.PKey:
    """Parse OpenSSH/PEM text of any key type paramiko knows (ed25519, RSA, ECDSA)."""
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.RSAKey, paramiko.ECDSAKey):
        try:
            return cls.from_private_key(io.StringIO(private_key))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise SshError("cannot parse the private key (" + "; ".join(errors) + ")")


def _preferred_key_types(pinned: str, defaults: tuple[str, ...]) -> tuple[str, ...]:
    """Ask for the pinned key type first so a server with several host keys shows that one."""
    ktype, _ = _split_key(pinned)
    wanted = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa") if ktype == "ssh-rsa" else (ktype,)
    first = tuple(k for k in wanted if k in defaults)
    return first + tuple(k for k in defaults if k not in first)


class SshSession:
    """An authenticated connection to one machine; use as a context manager."""

    def __init__(self, machine: Machine, transport: paramiko.Transport, host_key: str) -> None:
        self.machine = machine
        self.host_key = host_key
        self._transport = transport

    def __enter__(self) -> SshSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._transport.close()

    def is_active(self) -> bool:
        return self._transport.is_active()

    def _wrap(self, command: str) -> str:
        if self.machine.user == "root":
            return command
        return "sudo -n sh -c " + shlex.quote(command)

    def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float = 300,
        check: bool = False,
    ) -> RunResult:
        """Run a shell command (as root, through ``sudo -n`` for other users)."""
        first_line = command.strip().splitlines()[0] if command.strip() else ""
        try:
            chan = self._transport.open_session(timeout=30)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise Unreachable(f"{_label(self.machine)}: connection lost: {exc}") from exc
        try:
            chan.exec_command(self._wrap(command))
            out, err, status = self._pump(chan, stdin, timeout, first_line)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise Unreachable(
                f"{_label(self.machine)}: connection lost running {first_line!r}: {exc}"
            ) from exc
        finally:
            chan.close()
        result = RunResult(
            stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"), status=status
        )
        if check and status != 0:
            lines = [ln for ln in result.stderr.strip().splitlines() if ln.strip()]
            tail = " | ".join(lines[-_STDERR_TAIL_LINES:])[-_STDERR_TAIL_CHARS:]
            raise SshError(
                f"{_label(self.machine)}: {first_line!r} exited with status {status}: "
                f"{tail or '(no stderr)'}"
            )
        return result

    def _pump(
        self, chan: paramiko.Channel, stdin: bytes | None, timeout: float, first_line: str
    ) -> tuple[bytes, bytes, int]:
        """Feed stdin and drain stdout/stderr together so neither side can block the other."""
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        pending = memoryview(stdin or b"")
        if not pending:
            chan.shutdown_write()
        while True:
            if time.monotonic() > deadline:
                raise SshError(
                    f"{_label(self.machine)}: {first_line!r} timed out after {timeout:g}s"
                )
            if pending and chan.send_ready():
                sent = chan.send(pending[:32768])
                pending = pending[sent:]
                if not pending:
                    chan.shutdown_write()
            select.select([chan], [], [], 0.02 if pending else 0.5)
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            done = chan.closed or (chan.exit_status_ready() and chan.eof_received)
            if done and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
        # Drain anything that arrived between the last read and the exit status.
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        return bytes(out), bytes(err), chan.recv_exit_status()

    def upload(
        self,
        path: str,
        content: bytes,
        *,
        mode: str = "0644",
        owner: str = "root",
        group: str = "root",
    ) -> None:
        """Write a file atomically (temp file in the same dir, chmod/chown, rename)."""
        q = shlex.quote
        script = (
            "set -e; "
            f"p={q(path)}; d=$(dirname \"$p\"); mkdir -p \"$d\"; "
            't=$(mktemp "$d/.orbiter-upload.XXXXXX"); '
            "trap 'rm -f \"$t\"' EXIT; "
            'cat > "$t"; '
            f'chown {q(owner + ":" + group)} "$t"; chmod {q(mode)} "$t"; '
            'mv -f "$t" "$p"; trap - EXIT'
        )
        self.run(script, stdin=content, check=True, timeout=max(60.0, len(content) / 1e6))

    def exec_channel(self, command: str) -> paramiko.Channel:
        """A channel running `command` (as root), for callers that stream (activities/sshstream.py)."""
        chan = self._transport.open_session(timeout=30)
        chan.exec_command(self._wrap(command))
        return chan


def connect(
    machine: Machine,
    private_key: str,
    *,
    timeout: float = 10,
    accept_new_host_key: bool | None = None,
) -> SshSession:
    """Open an authenticated session to a machine, enforcing its pinned host key.

    If ``machine.host_key`` is set the server must present exactly that key, else
    ``HostKeyChanged``. If it is None the key is accepted (trust on first use) and exposed as
    ``session.host_key`` for the caller to record, unless ``accept_new_host_key`` is False,
    in which case an unpinned machine is refused. No agent and no ~/.ssh files are consulted.
    """
    label = _label(machine)
    if machine.host_key is None and accept_new_host_key is False:
        raise HostKeyChanged(f"{label}: no pinned host key and accepting new keys is disabled")
    pkey = _load_private_key(private_key)
    try:
        sock = socket.create_connection((machine.ip, machine.ssh_port), timeout=timeout)
    except TimeoutError as exc:
        raise Unreachable(f"{label}: timed out connecting after {timeout:g}s") from exc
    except OSError as exc:
        raise Unreachable(f"{label}: cannot connect: {exc.strerror or exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        opts = transport.get_security_options()
        if machine.host_key:
            opts.key_types = _preferred_key_types(machine.host_key, tuple(opts.key_types))
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise Unreachable(f"{label}: SSH handshake failed: {exc}") from exc
        server_key = transport.get_remote_server_key()
        seen = f"{server_key.get_name()} {server_key.get_base64()}"
        if machine.host_key and _split_key(machine.host_key) != _split_key(seen):
            raise HostKeyChanged(
                f"{label}: host key changed: pinned {fingerprint(machine.host_key)}, "
                f"server presented {fingerprint(seen)}; refusing to connect"
            )
        try:
            transport.auth_publickey(machine.user, pkey)
        except paramiko.AuthenticationException as exc:
            raise AuthFailed(f"{label}: authentication failed for user {machine.user}") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise Unreachable(f"{label}: connection lost during authentication: {exc}") from exc
        if not transport.is_authenticated():
            raise AuthFailed(f"{label}: authentication failed for user {machine.user}")
        transport.set_keepalive(KEEPALIVE_SECONDS)
        return SshSession(machine, transport, seen)
    except BaseException:
        transport.close()
        raise


# Sessions a worker keeps open between activities, so observe -> apply -> status on one machine
# cost round trips, not handshakes. Keyed by everything that decided trust and identity.
POOL_IDLE_SECONDS = 30.0
_pool: dict[tuple[str, ...], list[tuple[float, SshSession]]] = {}
_pool_lock = threading.Lock()


@contextlib.contextmanager
def pooled(machine: Machine, private_key: str, *, timeout: float = 10) -> Iterator[SshSession]:
    """A session from this worker's pool (or a new one); returned to the pool if it is still sound."""
    key = _pool_key(machine, machine.host_key, private_key)
    session = None
    with _pool_lock:
        idle = _pool.get(key, [])
        while idle and session is None:
            since, candidate = idle.pop()
            if time.monotonic() - since < POOL_IDLE_SECONDS and candidate.is_active():
                session = candidate
            else:
                candidate.close()
    if session is None:
        session = connect(machine, private_key, timeout=timeout)
    sound = False
    try:
        yield session
        sound = True
    finally:
        if sound and session.is_active():
            with _pool_lock:
                _pool.setdefault(key, []).append((time.monotonic(), session))
        else:
            session.close()
        sweep_pool()


_last_sweep = 0.0


def sweep_pool(now: float | None = None) -> int:
    """Close sessions idle for longer than POOL_IDLE_SECONDS, to any machine; how many closed.

    Otherwise a session waits for the next round on its machine to be found stale: with a
    driftInterval of minutes a worker would hold one connection, and one paramiko thread that
    wakes ten times a second, per machine it ever served (a thousand, bench/README.md "scale").
    Runs at most once per POOL_IDLE_SECONDS."""
    global _last_sweep
    now = time.monotonic() if now is None else now
    stale: list[SshSession] = []
    with _pool_lock:
        if now - _last_sweep < POOL_IDLE_SECONDS:
            return 0
        _last_sweep = now
        for key in list(_pool):
            keep = [(since, s) for since, s in _pool[key] if now - since < POOL_IDLE_SECONDS]
            stale += [s for since, s in _pool[key] if now - since >= POOL_IDLE_SECONDS]
            if keep:
                _pool[key] = keep
            else:
                del _pool[key]
    for session in stale:  # outside the lock: closing waits for the transport's thread
        session.close()
    return len(stale)


def _pool_key(machine: Machine, host_key: str | None, private_key: str) -> tuple[str, ...]:
    return (machine.id, machine.ip, str(machine.ssh_port), machine.user, host_key or "",
            hashlib.sha256(private_key.encode()).hexdigest())


def adopt(session: SshSession, private_key: str) -> None:
    """Pool a session as if `private_key` had opened it: same machine, user and host key, and
    that key proven to log in. First contact logs in once with the bootstrap key and hands that
    session on, instead of opening a second one for the node agent."""
    key = _pool_key(session.machine, session.host_key, private_key)
    with _pool_lock:
        _pool.setdefault(key, []).append((time.monotonic(), session))


def prove_login(machine: Machine, private_key: str, *, timeout: float = 10) -> None:
    """Authenticate with `private_key` and disconnect: no shell, no PAM session, half the cost
    of a connection that runs a command."""
    connect(machine, private_key, timeout=timeout).close()


def forget(machine: Machine) -> None:
    """Drop this worker's pooled sessions to a machine (after a reboot they are dead)."""
    with _pool_lock:
        for key in [k for k in _pool if k[0] == machine.id and k[1] == machine.ip]:
            for _, session in _pool.pop(key):
                session.close()
