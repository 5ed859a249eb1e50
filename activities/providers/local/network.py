"""The network of a local provider: a Linux bridge on one subnet (the host is .1) and the
addresses of its machines, allocated on disk so they are stable across restarts and unique
across concurrent callers. The host does not forward or NAT for the bridge."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from orbiter.activities.providers.base import ProviderError

from .nspawn import NspawnError, sh


class NetworkError(ProviderError):
    """The bridge or an address cannot be had; one line naming the provider."""


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class LocalNetwork:
    def __init__(self, name: str, subnet: str, path: Path) -> None:
        self.name, self.path = name, path
        try:
            self.network = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise NetworkError(f"local provider {name}: bad subnet {subnet!r}") from exc
        if self.network.num_addresses < 4:
            raise NetworkError(f"local provider {name}: subnet {subnet} is too small")
        self.subnet = str(self.network)
        # Bridge names are limited to 15 chars; hash name and subnet so that a test provider and a
        # real one never share a bridge.
        self.bridge = "orb-" + hashlib.sha1(f"{name}|{self.subnet}".encode()).hexdigest()[:8]
        self.host_ip = str(next(self.network.hosts()))

    def _read_ipam(self) -> dict[str, str]:
        try:
            return json.loads((self.path / "ipam.json").read_text())
        except FileNotFoundError:
            return {}

    def allocate(self, machine_id: str) -> str:
        """Stable, unique address for a machine; caller holds the provider lock."""
        ipam = self._read_ipam()
        if machine_id in ipam:
            return ipam[machine_id]
        used = set(ipam.values()) | {self.host_ip}
        for host in self.network.hosts():
            if str(host) not in used:
                ipam[machine_id] = str(host)
                write_json(self.path / "ipam.json", ipam)
                return str(host)
        raise NetworkError(f"local provider {self.name}: subnet {self.subnet} is full")

    def release(self, machine_id: str) -> None:
        """Free a machine's address (caller holds the provider lock)."""
        ipam = self._read_ipam()
        if ipam.pop(machine_id, None) is not None:
            write_json(self.path / "ipam.json", ipam)

    def ensure(self, image: str) -> None:
        """Create the bridge with the host address .1 (idempotent). The provider's state is kept
        per name: a second orb naming its local provider alike shares it, on the same subnet."""
        self.path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            known = json.loads((self.path / "provider.json").read_text())
            if known["subnet"] != self.subnet and any(self.path.glob("machines/*/meta.json")):
                raise NetworkError(
                    f"local provider {self.name} on this host has machines on subnet {known['subnet']}, not"
                    f" {self.subnet}: give this provider another name, or the same subnet")
        write_json(self.path / "provider.json", {"name": self.name, "subnet": self.subnet, "image": image})
        cidr = f"{self.host_ip}/{self.network.prefixlen}"
        try:
            self._check_subnet_free()
            if sh("ip", "link", "show", self.bridge, check=False).returncode != 0:
                # Two orbs' first reconciles may race here; whichever adds it, it is there.
                added = sh("ip", "link", "add", self.bridge, "type", "bridge", check=False)
                if added.returncode != 0 and "File exists" not in added.stderr:
                    raise NspawnError(f"ip link add {self.bridge} failed: {added.stderr.strip()}")
            addrs = sh("ip", "-o", "-4", "addr", "show", "dev", self.bridge).stdout
            if f" {cidr} " not in addrs:
                sh("ip", "addr", "replace", cidr, "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
        except NspawnError as exc:
            raise NetworkError(f"local provider {self.name}: network: {exc}") from exc

    def _check_subnet_free(self) -> None:
        """Refuse a subnet another interface already uses: routes would silently clash."""
        out = sh("ip", "-o", "-4", "addr", "show").stdout
        for line in out.splitlines():
            parts = line.split()
            dev, addr = parts[1], parts[3]
            if dev == self.bridge:
                continue
            if ipaddress.IPv4Interface(addr).network.overlaps(self.network):
                raise NetworkError(
                    f"local provider {self.name}: subnet {self.subnet} overlaps {addr} on "
                    f"{dev}; give this provider its own subnet"
                )

    def destroy(self) -> None:
        if sh("ip", "link", "show", self.bridge, check=False).returncode == 0:
            sh("ip", "link", "del", self.bridge)
