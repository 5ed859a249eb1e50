"""The base image local machines boot: a Debian root filesystem built with debootstrap, once per
host, shared read-only by every machine (each writes to its own overlay)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from orbiter.activities.locks import file_lock

from .nspawn import NspawnError

SUITE = "bookworm"
IMAGE_PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,iproute2,python3,ca-certificates,sudo"
)


BUILD_TIMEOUT = 1200.0


def ensure_image(
    images_dir: Path, name: str = "debian-12", mirror: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> bool:
    """Build the base rootfs once; True if this call built it.

    Callers on one host wait for one build (a lock) instead of racing. A finished image is a
    temp directory renamed into place, so a half-built tree is never visible under the final
    name. A build whose process died (a worker SIGKILLed mid-build) leaves debootstrap running
    as an orphan with /proc mounted in its tree: the next builder kills that process group,
    unmounts what it left and starts afresh.
    """
    target = images_dir / name
    if target.is_dir():
        return False
    images_dir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _line: None)
    with file_lock(images_dir / f".{name}.lock"):
        if target.is_dir():
            return False
        for stale in {p.with_suffix("") if p.suffix in (".pgid", ".log") else p
                      for p in images_dir.glob(f".{name}.tmp-*")}:
            _discard_build(stale)
        tmp = images_dir / f".{name}.tmp-{os.getpid()}"
        args = ["debootstrap", "--variant=minbase", f"--include={IMAGE_PACKAGES}", SUITE, str(tmp)]
        if mirror:
            args.append(mirror)
        say(f"building the base image {name} (first run on this host, about a minute)")
        try:
            _run_build(args, tmp)
            _customize_image(tmp)
            os.rename(tmp, target)
        except BaseException:
            _discard_build(tmp)
            raise
        finally:
            _pgid_file(tmp).unlink(missing_ok=True)
    return True


def _pgid_file(tmp: Path) -> Path:
    return tmp.with_name(tmp.name + ".pgid")


def _run_build(args: list[str], tmp: Path) -> None:
    """debootstrap in a process group of its own, recorded beside the tree it builds."""
    log = tmp.with_name(tmp.name + ".log")
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    except FileNotFoundError:
        raise NspawnError("debootstrap is not installed on this host (apt-get install debootstrap)") from None
    _pgid_file(tmp).write_text(f"{proc.pid}\n")
    try:
        code = proc.wait(timeout=BUILD_TIMEOUT)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    text = log.read_text(errors="replace").strip().splitlines()
    log.unlink(missing_ok=True)
    if code != 0:
        raise NspawnError(f"debootstrap failed ({code}): {' | '.join(text[-3:])}")


def _discard_build(tmp: Path) -> None:
    """Stop an orphaned builder of `tmp`, unmount what it mounted inside, delete the tree."""
    pidfile = _pgid_file(tmp)
    try:
        pgid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        pgid = None
    if pgid is not None and _builder_alive(pgid, tmp):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _builder_alive(pgid, tmp) and time.monotonic() < deadline:
            time.sleep(0.05)
    for mount in reversed(_mounts_under(tmp)):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    shutil.rmtree(tmp, ignore_errors=True)
    pidfile.unlink(missing_ok=True)
    tmp.with_name(tmp.name + ".log").unlink(missing_ok=True)


def _builder_alive(pgid: int, tmp: Path) -> bool:
    """A live process of group `pgid` that builds `tmp` (its command line names the tree): a
    recycled group id of some other program is never taken for the builder."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid and str(tmp) in cmdline:
            return True
    return False


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, in mount order (unmount them in reverse)."""
    prefix = str(root.resolve() if root.exists() else root)
    out = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                out.append(point)
    return out


def _customize_image(root: Path) -> None:
    """Strip what would make machines identical and what would reach for the internet."""
    (root / "etc/machine-id").unlink(missing_ok=True)
    (root / "etc/machine-id").write_text("")  # each machine gets its own (see prepare_upper)
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/ssh/sshd_config.d/orbiter.conf").write_text(
        "# Written by orbiter: one ed25519 host key per machine, keys only.\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UseDNS no\n"
    )
    # Machines have no internet: no Debian mirror (apt-get update would hang), no DNS.
    (root / "etc/apt/sources.list").write_text(
        "# Emptied by orbiter: machines install from the provider's repo (sources.list.d).\n"
    )
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    resolv.write_text("# orbiter local machines have no DNS server\n")
    (root / "etc/hostname").write_text("localhost\n")
    for leftover in (root / "var/cache/apt/archives").glob("*.deb"):
        leftover.unlink()
    root_ssh = root / "root/.ssh"
    root_ssh.mkdir(mode=0o700, exist_ok=True)
