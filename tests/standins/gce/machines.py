"""Real machines behind the stand-in's instances: the local provider's systemd-nspawn Debian
machines on a bridge of the test's subnet, their apt mirror served on it (the "debian-12"
image's mirror), and what GCE's guest agent does on a real instance: the `ssh-keys` metadata
applied (each user made, in google-sudoers with passwordless sudo, its keys in authorized_keys).
The stand-in itself reaches a machine as root with a key of its own, the way the agent runs
inside it. Addresses for the load balancer are spare addresses of the same subnet, put on the
bridge, where proxy.py forwards them."""

from __future__ import annotations

import contextlib
import ipaddress
import shlex
import subprocess
import threading
from pathlib import Path

from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.ssh import connect, generate_ed25519
from orbiter.models.machines import Machine

from .. import serve_standins
from .proxy import Balancers

# What a GCE Debian image has and an nspawn machine lacks: kmod and a modules.builtin naming the
# modules this host's kernel has built in, so `modprobe br_netfilter` succeeds as on a real VM.
LIKE_A_VM = (
    "set -e; export DEBIAN_FRONTEND=noninteractive;"
    " apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends kmod >/dev/null;"
    ' d=/lib/modules/$(uname -r); mkdir -p "$d";'
    ' printf "kernel/net/bridge/br_netfilter.ko\\nkernel/fs/overlayfs/overlay.ko\\n" > "$d/modules.builtin";'
    ' touch "$d/modules.order" "$d/modules.builtin.modinfo"; depmod'
)
SUDOERS = "%google-sudoers ALL=(ALL:ALL) NOPASSWD:ALL\n"
# A VM's boot ends with logins open to every user. In a container on this host's cgroup v1,
# systemd-user-sessions sometimes fails at boot (219/CGROUP), which keeps /run/nologin and so
# every user but root out: the boot is finished here the way it finishes on a VM.
BOOTED = ("timeout 60 systemctl is-system-running --wait >/dev/null 2>&1;"
          " systemctl start systemd-user-sessions >/dev/null 2>&1 || rm -f /run/nologin")


def guest_agent_script(metadata: dict) -> str:
    """The shell GCE's guest agent amounts to for `ssh-keys` (nothing under enable-oslogin=TRUE)."""
    items = {i.get("key"): i.get("value", "") for i in metadata.get("items", [])}
    if str(items.get("enable-oslogin", "")).upper() == "TRUE":
        return "true"
    keys: dict[str, list[str]] = {}
    for line in str(items.get("ssh-keys", "")).splitlines():
        user, sep, key = line.strip().partition(":")
        if sep and user and key:
            keys.setdefault(user, []).append(key.strip())
    script = ["set -e", "getent group google-sudoers >/dev/null || groupadd google-sudoers",
              f"printf %s {shlex.quote(SUDOERS)} > /etc/sudoers.d/google_sudoers",
              "chmod 440 /etc/sudoers.d/google_sudoers"]
    for user, lines in keys.items():
        u = shlex.quote(user)
        body = shlex.quote("".join(f"{k}\n" for k in lines))
        script += [
            f"id -u {u} >/dev/null 2>&1 || useradd -m -s /bin/bash {u}",
            f"usermod -aG google-sudoers {u}",
            f'h=$(getent passwd {u} | cut -d: -f6); mkdir -p "$h/.ssh"',
            f'printf %s {body} > "$h/.ssh/authorized_keys"',
            f'chown -R {u}: "$h/.ssh"; chmod 700 "$h/.ssh"; chmod 600 "$h/.ssh/authorized_keys"',
        ]
    return "\n".join(script)


class LocalBackend:
    """Instances as systemd-nspawn machines; the load balancer's addresses and traffic on the bridge."""

    def __init__(self, subnet: str, name: str = "gce-standin", state: Path | None = None,
                 like_a_vm: bool = False) -> None:
        self.local = LocalMachines(name, subnet, state=state)
        self.apt = AptRepo(self.local)
        self.admin_private, self.admin_public = generate_ed25519()
        self.like_a_vm = like_a_vm
        net = ipaddress.IPv4Network(subnet)
        self.spare = [str(net.network_address + i) for i in range(250, 200, -1)]
        self.taken: dict[str, str] = {}  # address -> resource name
        self.lock = threading.Lock()
        self.balancers = Balancers()

    def attach(self, store: object) -> None:
        self.balancers.store = store  # type: ignore[assignment]

    # -- the image's mirror ---------------------------------------------------------------------
    def serve_mirror(self, packages: list[str], standins: list[str] = ()) -> None:
        """The apt repository the machines' sources.list names: these packages and their dependencies."""
        self.local.ensure_network()
        if standins:
            serve_standins(self.apt, list(standins))
        self.apt.ensure_packages([(p, None) for p in packages])
        self.apt.ensure_served()
        # Image and bridge are there now. Instances boot at once from several threads, and
        # LocalMachines.create would write provider.json again from each: once is enough.
        self.local.ensure_image = lambda progress=None: None  # type: ignore[method-assign]
        self.local.ensure_network = lambda: None  # type: ignore[method-assign]

    def mirror_line(self) -> str:
        return self.apt.source_line()

    # -- instances ------------------------------------------------------------------------------
    def _root(self, instance: dict) -> Machine:
        ip = instance["networkInterfaces"][0].get("networkIP") or self._ip(instance["name"])
        return Machine(id=instance["name"], provider=self.local.name, pool="gce", ip=ip, key_secret="standin")

    def _ip(self, name: str) -> str:
        return next(m.ip for m in self.local.list() if m.id == name)

    def boot(self, instance: dict) -> str:
        zone = instance["zone"].rsplit("/", 1)[-1]
        [machine] = self.local.create(zone, [instance["name"]], self.admin_public, "standin")
        root = Machine(id=machine.id, provider=self.local.name, pool=zone, ip=machine.ip, key_secret="standin")
        with connect(root, self.admin_private, timeout=20) as session:
            session.run(BOOTED)
            if self.like_a_vm:
                session.run(LIKE_A_VM, check=True, timeout=300)
            session.run(guest_agent_script(instance.get("metadata", {})), check=True)
        return machine.ip

    def apply_metadata(self, instance: dict) -> None:
        with connect(self._root(instance), self.admin_private, timeout=20) as session:
            session.run(guest_agent_script(instance.get("metadata", {})), check=True)

    def delete(self, instance: dict) -> None:
        self.local.delete(instance["name"])

    def reset(self, instance: dict) -> None:
        self.local.reboot(instance["name"])
        with connect(self._root(instance), self.admin_private, timeout=20) as session:
            session.run(BOOTED)

    def stop(self, instance: dict) -> None:
        self.local.stop(instance["name"])

    # -- addresses and traffic ------------------------------------------------------------------
    def allocate_address(self, name: str) -> str:
        with self.lock:
            ip = next(a for a in self.spare if a not in self.taken)
            self.taken[ip] = name
        self.local.ensure_network()
        subprocess.run(["ip", "addr", "replace", f"{ip}/32", "dev", self.local.bridge], check=True,
                       capture_output=True)
        return ip

    def release_address(self, address: str) -> None:
        with self.lock:
            self.taken.pop(address, None)
        subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", self.local.bridge], capture_output=True)

    def serve(self, rule: dict) -> None:
        self.balancers.serve(rule)

    def unserve(self, rule: dict) -> None:
        self.balancers.unserve(rule)

    def health(self, service: dict, group: dict) -> list[dict]:
        return self.balancers.health(service, group)

    def close(self) -> None:
        """Every machine, address, proxy and the mirror gone; the bridge too."""
        self.balancers.close()
        for address in list(self.taken):
            self.release_address(address)
        for machine in self.local.list_status():
            with contextlib.suppress(Exception):
                self.local.delete(machine["id"])
        with contextlib.suppress(Exception):
            self.apt.stop()
        with contextlib.suppress(Exception):
            self.local.destroy_network()
