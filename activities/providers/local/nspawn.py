"""Low-level pieces of the local provider: host commands, machine overlays, detached processes, nspawn boots.

Kept apart from ``local.py`` so the provider logic (allocation, idempotency) reads on its own
and these host-facing helpers can be reused (the apt repo server is a detached process too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from orbiter.activities.ssh import generate_ed25519


class NspawnError(Exception):
    """A host command for the local provider failed; the message is one line."""


def sh(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a host command, turning failure into a one-line NspawnError with stderr's tail."""
    try:
        proc = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise NspawnError(f"{args[0]} is not installed on this host") from exc
    except subprocess.TimeoutExpired as exc:
        raise NspawnError(f"{' '.join(args[:3])} timed out after {timeout:g}s") from exc
    if check and proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise NspawnError(f"{' '.join(args[:4])} failed ({proc.returncode}): {tail}")
    return proc


def _mkdirs_like(upper: Path, lower: Path, rel: str) -> Path:
    """Create rel under upper with the owner/mode of the same dir in the image."""
    cur_u, cur_l = upper, lower
    for part in Path(rel).parts:
        cur_u, cur_l = cur_u / part, cur_l / part
        if not cur_u.exists():
            cur_u.mkdir()
            if cur_l.is_dir():
                st = cur_l.stat()
                os.chmod(cur_u, st.st_mode & 0o7777)
                os.chown(cur_u, st.st_uid, st.st_gid)
    return cur_u


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    os.chmod(path, mode)


def prepare_upper(
    upper: Path,
    image: Path,
    hostname: str,
    machine_id: str,
    public_key: str,
    extra_files: dict[str, str] | None = None,
) -> None:
    """Write a machine's identity into its overlay upper dir before the first boot."""
    etc = _mkdirs_like(upper, image, "etc")
    _write(etc / "hostname", hostname + "\n")
    _write(etc / "hosts", f"127.0.0.1 localhost\n127.0.1.1 {hostname}\n::1 localhost\n")
    _write(etc / "machine-id", machine_id + "\n", 0o444)
    ssh_dir = _mkdirs_like(upper, image, "etc/ssh")
    priv, pub = generate_ed25519()
    _write(ssh_dir / "ssh_host_ed25519_key", priv, 0o600)
    _write(ssh_dir / "ssh_host_ed25519_key.pub", f"{pub.rsplit(' ', 1)[0]} root@{hostname}\n")
    root_ssh = _mkdirs_like(upper, image, "root/.ssh")
    os.chmod(root_ssh, 0o700)
    _write(root_ssh / "authorized_keys", public_key.strip() + "\n", 0o600)
    for rel, text in (extra_files or {}).items():
        parent = _mkdirs_like(upper, image, str(Path(rel).parent))
        _write(parent / Path(rel).name, text)


# ---------------------------------------------------------------------------------------------
# Detached processes


# Popen objects of the detached processes we started, by pid, until we reap them.
_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.Lock()


def spawn_detached(args: list[str], log: Path, pidfile: Path) -> int:
    """Start a process in its own session (no terminal signals) that outlives us.

    It stays our child while we live so that we can reap it after stopping it: on hosts whose
    PID 1 does not reap orphans, a double fork would leave a zombie behind. If we exit first
    it is re-parented to init and keeps running, as machines must outlive a worker.
    """
    with _CHILDREN_LOCK:
        for old in [p for p, child in _CHILDREN.items() if child.poll() is not None]:
            del _CHILDREN[old]  # reaped by poll(): machines deleted by another process
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    with _CHILDREN_LOCK:
        _CHILDREN[proc.pid] = proc  # keeps Popen from warning that its child still runs
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def reap(pid: int) -> None:
    """Collect an exited child of ours so it does not linger as a zombie."""
    with _CHILDREN_LOCK:
        proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        if proc.poll() is None:
            with _CHILDREN_LOCK:
                _CHILDREN[pid] = proc
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def read_pid(pidfile: Path) -> int | None:
    """The pid recorded in a pid file, or None."""
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """True if pid runs (not a zombie) and, if given, its command line contains marker."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return False
    return marker is None or marker in cmdline


def nspawn_pids(nsname: str) -> list[int]:
    """Running systemd-nspawn processes of machine `nsname`, pid file or not."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"systemd-nspawn") and nsname.encode() in args and pid_alive(int(proc.name)):
            pids.append(int(proc.name))
    return pids


def children(pid: int) -> list[int]:
    """Direct children of pid, from /proc."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


def descendants(pid: int) -> list[int]:
    """All descendants of pid, parents before children."""
    out, todo = [], [pid]
    while todo:
        for kid in children(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


def stop_process_tree(pid: int, marker: str | None, grace: float = 15) -> None:
    """SIGTERM (nspawn then powers the machine off cleanly), then SIGKILL the whole tree."""
    if not pid_alive(pid, marker):
        reap(pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            reap(pid)
            return
        time.sleep(0.1)
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    reap(pid)


# ---------------------------------------------------------------------------------------------
# Booting


def nspawn_args(
    image: Path, upper: Path, nsname: str, hostname: str, uuid: str, bridge: str
) -> list[str]:
    """The systemd-nspawn command line of one machine (copy-on-write over the shared image)."""
    return [
        "systemd-nspawn",
        "-q",
        "-b",
        "-D",
        str(image),
        # Root overlay mounted inside nspawn's own mount namespace: nothing to unmount on the
        # host, writes land in upper, and the image stays pristine.
        f"--overlay={image}:{upper}:/",
        "-M",
        nsname,
        f"--hostname={hostname}",
        f"--uuid={uuid}",
        "--register=no",
        "--keep-unit",
        f"--network-bridge={bridge}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=passive",
    ]


def container_init_pid(nspawn_pid: int, timeout: float = 30) -> int:
    """Host pid of the container's systemd (PID 1 inside), waiting for it to exec."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(nspawn_pid):
            raise NspawnError(f"systemd-nspawn (pid {nspawn_pid}) exited during boot")
        for kid in children(nspawn_pid):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{kid}/comm").read_text().strip() == "systemd":
                    return kid
        time.sleep(0.05)
    raise NspawnError(f"systemd did not start in the container within {timeout:g}s")


def address_mac(ip: str) -> str:
    """host0's MAC, made of its address. A machine created on an address a deleted one had (the
    lowest free one: scale down, then up) then answers with the MAC the others hold for that
    address in their ARP caches; nspawn's own MAC (hashed from the machine name) left them
    sending to the deleted machine for seconds, and a new etcd member could not reach its peers."""
    octets = [int(part) for part in ip.split(".")]
    return "02:4f:" + ":".join(f"{o:02x}" for o in octets)  # locally administered, unicast


def configure_host0(init_pid: int, cidr: str, gateway: str, timeout: float = 20) -> None:
    """Give the container's host0 its fixed address (and the MAC made of it) and a default route
    via the host."""
    deadline = time.monotonic() + timeout
    base = ["nsenter", "-t", str(init_pid), "-n", "ip"]
    while True:
        probe = sh(*base, "link", "show", "host0", check=False)
        if probe.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise NspawnError(f"host0 did not appear in container pid {init_pid}")
        time.sleep(0.05)
    mac = address_mac(cidr.split("/")[0])
    if f"link/ether {mac} " not in probe.stdout:
        sh(*base, "link", "set", "host0", "down")
        sh(*base, "link", "set", "host0", "address", mac)
    sh(*base, "addr", "replace", cidr, "dev", "host0")
    sh(*base, "link", "set", "host0", "up")
    sh(*base, "route", "replace", "default", "via", gateway)


def wait_ssh(ip: str, port: int = 22, timeout: float = 60) -> None:
    """Block until sshd answers with its banner (not just an open port)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((ip, port), timeout=2) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise NspawnError(f"sshd on {ip}:{port} did not answer within {timeout:g}s ({last})")
