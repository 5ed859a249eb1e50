"""The local provider: real Debian 12 machines booted with systemd-nspawn on this host.

A provider name and subnet own one Linux bridge (the host is ``.1``), shared by every orb that
names a local provider alike: machine names carry their orb, addresses are allocated on disk
(stable, unique across concurrent callers), and each machine records the orb and cluster that
claimed it. The host does not forward or NAT for the bridge: machines reach the host and each
other only. Layout (``state_dir()/local/<provider>/``): ``provider.json``, ``ipam.json``,
``lock``, ``machines/<id>/{meta.json,upper/,nspawn.pid,nspawn.log}``, ``apt/`` (see aptrepo).
Machines are copy-on-write overlays over the shared base image, mounted by nspawn in its own
mount namespace, so nothing is left mounted on the host. Activities wrap these sync calls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from orbiter.activities.providers.base import Claim, MachineClaimed, ProviderError
from orbiter.models.claims import CLAIM_FILE, claim_conflict, claim_text
from orbiter.models.machines import Machine

from . import image, nspawn
from .aptrepo import AptRepo
from .network import LocalNetwork, write_json
from .nspawn import NspawnError, file_lock, sh
from .paths import images_dir, state_dir

DEFAULT_SUBNET = "10.77.0.0/24"
DEFAULT_IMAGE = "debian-12"
BOOT_TIMEOUT = 90.0


class LocalProviderError(ProviderError):
    """A local provider operation failed; the message is one clear line."""


def _short_hash(text: str, n: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


class NeedsRoot(LocalProviderError):
    retryable = False




def _require_root() -> None:
    if os.geteuid() != 0:
        raise NeedsRoot("the local provider needs root: run orbiter as root (it boots machines with systemd-nspawn)")


class LocalMachines:
    """Machines of one local provider: create, list, delete, cut off the network."""

    def __init__(
        self,
        name: str,
        subnet: str = DEFAULT_SUBNET,
        image: str = DEFAULT_IMAGE,
        state: Path | None = None,
    ) -> None:
        self.name = name
        self.image = image
        self.state_root = state or state_dir()
        self.path = self.state_root / "local" / name
        self.net = LocalNetwork(name, subnet, self.path)
        self.subnet, self.bridge, self.host_ip = self.net.subnet, self.net.bridge, self.net.host_ip
        self.gateway = self.host_ip

    # -- paths and bookkeeping -------------------------------------------------------------

    @property
    def image_path(self) -> Path:
        """Directory of the base rootfs this provider boots."""
        return images_dir(self.state_root) / self.image

    def ensure_image(self, progress: Callable[[str], None] | None = None) -> None:
        """The base image machines boot and the apt repo resolves against; built on first need."""
        _require_root()
        try:
            image.ensure_image(images_dir(self.state_root), self.image, progress=progress)
        except NspawnError as exc:
            raise LocalProviderError(f"local provider {self.name}: base image: {exc}") from exc

    def _machine_dir(self, machine_id: str) -> Path:
        return self.path / "machines" / machine_id

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.path / "lock")

    def nspawn_name(self, machine_id: str) -> str:
        """Name given to nspawn -M, short so the host veth "vb-<name>" stays unique on the host:
        hashed from the bridge (provider and subnet) and the id. A machine records its own; one
        from before that (0.1) keeps the name it runs under, hashed from provider and id."""
        meta = self._meta(machine_id)
        if meta is not None and meta.get("nspawn"):
            return meta["nspawn"]
        if meta is not None:
            return "o" + _short_hash(f"{self.name}/{machine_id}", 10)
        return self._new_nspawn_name(machine_id)

    def _new_nspawn_name(self, machine_id: str) -> str:
        return "o" + _short_hash(f"{self.bridge}/{machine_id}", 10)

    def veth(self, machine_id: str) -> str:
        """Host side of the machine's veth pair."""
        return ("vb-" + self.nspawn_name(machine_id))[:15]

    def _write_json(self, path: Path, data: Any) -> None:
        write_json(path, data)

    def _meta(self, machine_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self._machine_dir(machine_id) / "meta.json").read_text())
        except FileNotFoundError:
            return None

    def _machine(self, meta: dict[str, Any]) -> Machine:
        return Machine(
            id=meta["id"],
            provider=self.name,
            pool=meta["pool"],
            ip=meta["ip"],
            key_secret=meta["key_secret"],
        )

    def is_running(self, machine_id: str) -> bool:
        """True if the machine's nspawn process is alive."""
        pid = nspawn.read_pid(self._machine_dir(machine_id) / "nspawn.pid")
        return pid is not None and nspawn.pid_alive(pid, self.nspawn_name(machine_id))

    def ensure_network(self) -> None:
        """The bridge with the host address .1 (idempotent)."""
        _require_root()
        self.net.ensure(self.image)

    def destroy_network(self) -> None:
        """Remove the bridge and stop the apt repo server, once no machine is left."""
        if left := self._ids():
            raise LocalProviderError(
                f"local provider {self.name}: cannot remove the network, machines left: " + ", ".join(sorted(left)))
        AptRepo(self).stop()
        self.net.destroy()

    def set_link(self, machine_id: str, up: bool) -> None:
        """Fault tests: take the host side of the machine's veth down (or back up)."""
        if not self.is_running(machine_id):
            raise LocalProviderError(f"local machine {machine_id} is not running")
        try:
            sh("ip", "link", "set", self.veth(machine_id), "up" if up else "down")
        except NspawnError as exc:
            raise LocalProviderError(f"local machine {machine_id}: set link: {exc}") from exc

    # -- machines ---------------------------------------------------------------------------

    def _ids(self) -> list[str]:
        mdir = self.path / "machines"
        if not mdir.is_dir():
            return []
        return sorted(p.name for p in mdir.iterdir() if (p / "meta.json").exists())

    def create(
        self, pool: str, machine_ids: list[str], public_key: str, key_secret: str,
        progress: Callable[[str], None] | None = None, claim: Claim | None = None,
    ) -> list[Machine]:
        """Boot machines in parallel; idempotent by id (running ones are returned unchanged).

        `claim` is the orb and cluster the machines belong to: recorded with each new machine, and
        a machine another orb claimed is refused. A machine from before claims has none and is
        taken by the first orb that asks for it."""
        _require_root()
        for mid in machine_ids:
            if not mid or len(mid) > 63 or not all(c.isalnum() or c == "-" for c in mid):
                raise LocalProviderError(
                    f"local machine id {mid!r} must be a hostname (letters, digits, '-')"
                )
        self.ensure_image(progress)
        self.ensure_network()
        metas: list[dict[str, Any]] = []
        with self._lock():
            for mid in machine_ids:
                meta = self._meta(mid)
                if meta is not None and claim is not None:
                    self._claim(meta, claim)
                if meta is None:
                    meta = {
                        "id": mid,
                        "pool": pool,
                        "ip": self.net.allocate(mid),
                        "key_secret": key_secret,
                        "machine_id": uuid.uuid4().hex,
                        "nspawn": self._new_nspawn_name(mid),
                        **({"orb": claim.orb, "cluster": claim.cluster} if claim else {}),
                    }
                    mdir = self._machine_dir(mid)
                    shutil.rmtree(mdir, ignore_errors=True)  # half-created leftovers
                    (mdir / "upper").mkdir(parents=True)
                    nspawn.prepare_upper(
                        mdir / "upper",
                        self.image_path,
                        hostname=mid,
                        machine_id=meta["machine_id"],
                        public_key=public_key,
                        extra_files={
                            "etc/apt/sources.list.d/orbiter.list": AptRepo(self).source_line() + "\n",
                            **({CLAIM_FILE.lstrip("/"): claim.text} if claim else {}),
                        },
                    )
                    if claim:
                        os.chmod(mdir / "upper" / CLAIM_FILE.lstrip("/"), 0o600)
                    self._write_json(mdir / "meta.json", meta)
                metas.append(meta)
        errors: list[str] = []
        if progress and metas:
            progress("booting " + ", ".join(m["id"] for m in metas))
        with ThreadPoolExecutor(max_workers=min(8, len(metas) or 1)) as pool_ex:
            futures = {pool_ex.submit(self._start, m): m["id"] for m in metas}
            for fut, mid in futures.items():
                try:
                    fut.result()
                except (NspawnError, LocalProviderError) as exc:
                    errors.append(f"{mid}: {exc}")
        if errors:
            raise LocalProviderError(
                f"local provider {self.name}: boot failed: " + "; ".join(errors)
            )
        return [self._machine(m) for m in metas]

    def _start(self, meta: dict[str, Any]) -> None:
        """Boot one machine unless running, then configure host0 and wait for sshd."""
        mid = meta["id"]
        mdir = self._machine_dir(mid)
        name = self.nspawn_name(mid)
        cidr = f"{meta['ip']}/{self.net.network.prefixlen}"
        if self.is_running(mid):
            # Running, but maybe never configured: a worker killed between nspawn's start and
            # host0's address left a machine no one can reach. Both steps are idempotent.
            pid = nspawn.read_pid(mdir / "nspawn.pid")
            assert pid is not None
            nspawn.configure_host0(nspawn.container_init_pid(pid), cidr, self.gateway)
            nspawn.wait_ssh(meta["ip"], timeout=BOOT_TIMEOUT)
            return
        args = nspawn.nspawn_args(
            self.image_path, mdir / "upper", name, mid, meta["machine_id"], self.bridge
        )
        pid = nspawn.spawn_detached(args, mdir / "nspawn.log", mdir / "nspawn.pid")
        try:
            init = nspawn.container_init_pid(pid)
            nspawn.configure_host0(init, cidr, self.gateway)
            nspawn.wait_ssh(meta["ip"], timeout=BOOT_TIMEOUT)
        except NspawnError as exc:
            log = (mdir / "nspawn.log").read_text(errors="replace").strip().splitlines()
            nspawn.stop_process_tree(pid, name, grace=5)
            tail = " | ".join(log[-3:])
            raise LocalProviderError(f"{exc}{' (nspawn: ' + tail + ')' if tail else ''}") from exc

    def _claim(self, meta: dict[str, Any], claim: Claim) -> None:
        """Refuse another orb's machine; record the claim on one from before claims (adopted).
        Caller holds the provider lock."""
        found = claim_text(meta["orb"], meta.get("cluster", "?")) if meta.get("orb") else None
        if conflict := claim_conflict(meta["id"], self.name, claim.orb, claim.cluster, found):
            raise MachineClaimed(conflict)
        if not meta.get("orb"):
            meta.update(orb=claim.orb, cluster=claim.cluster)
            self._write_json(self._machine_dir(meta["id"]) / "meta.json", meta)

    def find(self, claim: Claim, pool: str) -> list[str]:
        """Ids of a cluster's machines on this host: those it claimed, and those from before claims
        named for it (`<cluster>-<pool>-<n>`), which it claims now, so no other orb takes them."""
        legacy = re.compile(rf"^{re.escape(claim.cluster)}-{re.escape(pool)}-(\d+)$")
        found: list[str] = []
        with self._lock():
            for mid in self._ids():
                meta = self._meta(mid)
                if meta is None or meta.get("pool") != pool:
                    continue
                if (meta.get("orb"), meta.get("cluster")) == (claim.orb, claim.cluster) or (
                        not meta.get("orb") and legacy.match(mid)):
                    self._claim(meta, claim)
                    found.append(mid)
        return sorted(found, key=lambda m: int(m.rsplit("-", 1)[1]) if m.rsplit("-", 1)[1].isdigit() else 0)

    def list_status(self) -> list[dict[str, Any]]:
        """Every machine of this provider: id, pool, ip, state (running/stopped)."""
        out = []
        for mid in self._ids():
            meta = self._meta(mid)
            if meta is None:
                continue
            out.append(
                {
                    "id": mid,
                    "orb": meta.get("orb", ""),
                    "cluster": meta.get("cluster", ""),
                    "pool": meta["pool"],
                    "ip": meta["ip"],
                    "state": "running" if self.is_running(mid) else "stopped",
                }
            )
        return out

    def list(self) -> list[Machine]:
        """Machines of this provider (running or stopped), with their fixed ip."""
        metas = (self._meta(mid) for mid in self._ids())
        return [self._machine(meta) for meta in metas if meta is not None]

    def stop(self, machine_id: str) -> None:
        """Power a machine off but keep its disk and address (create() starts it again)."""
        name = self.nspawn_name(machine_id)
        pid = nspawn.read_pid(self._machine_dir(machine_id) / "nspawn.pid")
        if pid is not None:
            nspawn.stop_process_tree(pid, name)
        # A machine whose pid file is gone or stale (a boot cut short, two deletes at once).
        for stray in nspawn.nspawn_pids(name):
            nspawn.stop_process_tree(stray, name)

    def reboot(self, machine_id: str) -> None:
        """Power-cycle a machine: its container stops and boots again on the same disk and address."""
        meta = self._meta(machine_id)
        if meta is None:
            raise LocalProviderError(f"local provider {self.name} has no machine {machine_id}")
        self.stop(machine_id)
        self._start(meta)

    def delete(self, machine_id: str) -> None:
        """Stop the machine, remove its disk and release its address (idempotent).

        The address is released only once no process of the machine runs: a new machine on the
        address of a live one would answer SSH at random from either of the two."""
        self.stop(machine_id)
        if nspawn.nspawn_pids(self.nspawn_name(machine_id)):
            raise LocalProviderError(
                f"local provider {self.name}: machine {machine_id} (nspawn {self.nspawn_name(machine_id)}) does not"
                " stop, so its address stays taken; kill its systemd-nspawn process and delete it again"
            )
        with self._lock():
            shutil.rmtree(self._machine_dir(machine_id), ignore_errors=True)
            self.net.release(machine_id)
