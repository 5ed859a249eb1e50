"""Cheap machines for benchmarks: one network namespace per machine, running only sshd.

Each machine is a network namespace on a bridge the lab creates (a private range, 172.30.0.0/16
by default), with a mount and UTS namespace of its own where sshd runs: `/root` (so
authorized_keys), `/etc/orbiter` (the claim), `/var/cache/orbiter` (the OS update listing's
cache) and `/etc/hostname` are bind mounts of the machine's own directory, so orbiter's first
contact and its node agents change each machine apart and never the host's. The rest of the
filesystem is the host's, read by every machine alike. One sshd per machine costs about 1 MB
of its own memory, so a thousand fit where a thousand booted machines would not.

Everything the lab makes (namespaces, veths, the bridge, sshd processes and their sessions,
the mount points it had to create) goes in `close()`, which is safe to call twice.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "orbscale"
BRIDGE = "br-orbscale"
MOUNT_POINTS = ("/etc/orbiter", "/var/cache/orbiter")

SSHD_CONFIG = """Port 22
HostKey {hostkey}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile none
StrictModes no
MaxStartups 100:30:200
MaxSessions 50
PrintMotd no
UseDNS no
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp internal-sftp
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


@dataclass
class NetMachine:
    index: int
    id: str
    ip: str
    netns: str
    home: Path  # the machine's own directory: root/, etc-orbiter/, cache/, hostname
    proc: subprocess.Popen[bytes] | None = None

    @property
    def mac(self) -> str:
        return f"02:00:00:00:{self.index >> 8 & 0xff:02x}:{self.index & 0xff:02x}"


class NetLab:
    def __init__(self, workdir: Path, count: int, subnet: str = "172.30.0.0/16") -> None:
        self.workdir = workdir / "machines"
        self.net = ipaddress.ip_network(subnet)
        hosts = self.net.hosts()
        self.gateway = str(next(hosts))
        self.machines = [NetMachine(i, f"m{i:04d}", str(next(hosts)), f"{PREFIX}-{i}", self.workdir / f"m{i:04d}")
                         for i in range(count)]
        self.created_mount_points: list[str] = []
        self.bridge_made = False
        self.log = workdir / "sshd.log"

    # -- up ----------------------------------------------------------------------------------
    def open(self, bootstrap_public: str) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for point in MOUNT_POINTS:
            if not os.path.exists(point):
                os.makedirs(point)
                self.created_mount_points.append(point)
        hostkey = self.workdir / "ssh_host_ed25519_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
        (self.workdir / "sshd_config").write_text(SSHD_CONFIG.format(hostkey=hostkey))
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        self.bridge_made = True
        sh("ip", "addr", "add", f"{self.gateway}/{self.net.prefixlen}", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        self.seed_cache = self._os_listing()
        batch = []
        for m in self.machines:
            sh("ip", "netns", "add", m.netns)
            host_if, inner = f"osc{m.index}", f"osi{m.index}"
            batch += [f"link add {host_if} type veth peer name {inner} address {m.mac} netns {m.netns}",
                      f"link set {host_if} master {BRIDGE} up"]
        # Permanent neighbour entries: a thousand machines would overflow the host's ARP table
        # (gc_thresh3, 1024 by default) and connections fail "No route to host"; permanent
        # entries are outside its garbage collection, and no ARP time is in the figures.
        batch += [f"neigh replace {m.ip} lladdr {m.mac} dev {BRIDGE} nud permanent" for m in self.machines]
        self._batch(batch)
        for m in self.machines:
            subprocess.run(["ip", "-n", m.netns, "-batch", "-"], check=True, capture_output=True, text=True,
                           input=f"link set lo up\nlink set osi{m.index} name eth0\n"
                                 f"addr add {m.ip}/{self.net.prefixlen} dev eth0\nlink set eth0 up\n")
        for m in self.machines:
            self.reset(m, bootstrap_public)
            self._start_sshd(m)
        self._wait_listening()

    def _batch(self, lines: list[str]) -> None:
        path = self.workdir / "ip.batch"
        path.write_text("\n".join(lines) + "\n")
        done = subprocess.run(["ip", "-batch", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ip -batch: {done.stderr.strip()}")

    def _os_listing(self) -> str:
        """The node agent's OS update listing (`obs_os`), made once: each machine's cache starts
        with it, so a thousand machines on one host's packages do not each run apt-get on their
        first round (the figures are orbiter's cost, not apt's)."""
        from orbiter.agent.osupdates import CACHE, FUNCTION

        seed = self.workdir / "seed-cache"
        seed.mkdir(exist_ok=True)
        script = f"mount --bind {seed} /var/cache/orbiter && export LC_ALL=C\n{FUNCTION}\nobs_os >/dev/null\n"
        sh("unshare", "-m", "--propagation", "private", "sh", "-c", script)
        return (seed / Path(CACHE).name).read_text()

    def reset(self, m: NetMachine, bootstrap_public: str) -> None:
        """The machine as a fresh one: the bootstrap key alone in root's authorized_keys, no claim."""
        from orbiter.agent.osupdates import CACHE

        # Emptied, never replaced: sshd's namespace holds bind mounts of these very directories.
        for sub in ("etc-orbiter", "cache", "root"):
            (m.home / sub).mkdir(parents=True, exist_ok=True)
            for entry in (m.home / sub).iterdir():
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        (m.home / "root/.ssh").mkdir()
        (m.home / "root/.ssh/authorized_keys").write_text(bootstrap_public.strip() + "\n")
        (m.home / "root/.ssh").chmod(0o700)
        (m.home / "cache" / Path(CACHE).name).write_text(self.seed_cache)
        with open(m.home / "hostname", "w") as f:  # in place: it is bind-mounted as a file
            f.write(m.id + "\n")

    def _start_sshd(self, m: NetMachine) -> None:
        h = m.home
        inner = (f"mount --bind {h}/root /root && mount --bind {h}/etc-orbiter /etc/orbiter"
                 f" && mount --bind {h}/cache /var/cache/orbiter && mount --bind {h}/hostname /etc/hostname"
                 f" && exec unshare -u sh -c 'hostname {m.id} && exec /usr/sbin/sshd -D -e"
                 f" -f {self.workdir}/sshd_config -o ListenAddress={m.ip}'")
        with open(self.log, "ab") as out:
            m.proc = subprocess.Popen(["ip", "netns", "exec", m.netns, "sh", "-c", inner], stdout=out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def _wait_listening(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for m in self.machines:
            while True:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"sshd of {m.id} exited ({m.proc.returncode}); see {self.log}")
                with contextlib.suppress(OSError), socket.create_connection((m.ip, 22), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd of {m.id} ({m.ip}) not listening after {timeout:g}s")
                time.sleep(0.05)

    # -- down --------------------------------------------------------------------------------
    def close(self) -> None:
        for m in self.machines:
            if m.proc is not None and m.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(m.proc.pid, signal.SIGTERM)
        for m in self.machines:
            if m.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.proc.wait(timeout=5)
            # Sessions sshd forked outlive it until their client goes: end them by namespace.
            pids = sh("ip", "netns", "pids", m.netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", m.netns, check=False)
            m.proc = None
        if self.bridge_made:
            sh("ip", "link", "del", BRIDGE, check=False)
            self.bridge_made = False
        for point in self.created_mount_points:
            with contextlib.suppress(OSError):
                os.rmdir(point)
        self.created_mount_points = []
        shutil.rmtree("/run/orbiter-bench", ignore_errors=True)
