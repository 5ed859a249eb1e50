"""A flat apt repository per local provider, served to its machines over the bridge.

Local machines have no internet, so packages (etcd-server, containerd, ...) are downloaded on
the host with the host's apt, resolving dependencies against the base image's dpkg status so
exactly the missing .debs are fetched, then indexed without dpkg-dev and served by a detached
``python3 -m http.server`` bound to the bridge address only.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

from orbiter.activities.locks import file_lock

from . import nspawn
from .nspawn import NspawnError, sh


class RepoHost(Protocol):
    """What the repo needs of the local provider that serves it (LocalMachines)."""

    path: Path  # the provider's state directory
    host_ip: str  # the bridge address machines reach the host at
    image_path: Path

    def ensure_image(self, progress: Callable[[str], None] | None = None) -> None: ...

    def ensure_network(self) -> None: ...

DEFAULT_PORT = 8079
# Control fields copied into Packages, in the order apt-ftparchive writes them.
_FIELDS = (
    "Package", "Source", "Version", "Installed-Size", "Maintainer", "Architecture",
    "Replaces", "Provides", "Depends", "Pre-Depends", "Recommends", "Suggests", "Conflicts",
    "Breaks", "Enhances", "Description", "Homepage", "Multi-Arch", "Section", "Priority",
    "Built-Using", "Essential", "Protected",
)


class AptRepoError(Exception):
    """Downloading, indexing or serving packages failed; one line."""


class AptRepo:
    """The package repo of one local provider, at http://<bridge .1>:<port>/."""

    def __init__(self, provider: RepoHost, port: int = DEFAULT_PORT) -> None:
        self.provider = provider
        self.port = port
        self.root = provider.path / "apt"
        self.repo = self.root / "repo"
        self.meta = self.root / "meta"  # cached control fields per .deb
        self.pidfile = self.root / "http.pid"

    def source_line(self) -> str:
        """The sources.list line machines use for this repo."""
        return f"deb [trusted=yes] http://{self.provider.host_ip}:{self.port}/ ./"

    # -- packages ---------------------------------------------------------------------------

    def _available(self) -> dict[str, set[str]]:
        """Package name -> versions present in the repo (from the cached control fields)."""
        out: dict[str, set[str]] = {}
        for f in self.meta.glob("*.json"):
            fields = json.loads(f.read_text())
            out.setdefault(fields["Package"], set()).add(fields["Version"])
        return out

    def served_versions(self) -> dict[str, set[str]]:
        """Package name -> versions the repo already serves (added by ensure_packages or by hand)."""
        if not self.meta.exists():
            return {}
        return self._available()

    def ensure_packages(
        self, packages: list[tuple[str, str | None]], progress: Callable[[str], None] | None = None
    ) -> None:
        """Make (name, exact version or None) installable from the repo, with dependencies."""
        self.repo.mkdir(parents=True, exist_ok=True)
        self.meta.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / "lock"):
            have = self._available()
            missing = [
                (n, v) for n, v in packages if n not in have or (v is not None and v not in have[n])
            ]
            if missing:
                # Dependencies are resolved against the base image: the first run builds it.
                self.provider.ensure_image(progress)
                if progress:
                    progress("downloading " + ", ".join(f"{n} {v or ''}".strip() for n, v in missing))
                self._download(missing)
            self._index()

    def _download(self, packages: list[tuple[str, str | None]]) -> None:
        status = self.provider.image_path / "var/lib/dpkg/status"
        cache = self.root / "cache"
        (cache / "partial").mkdir(parents=True, exist_ok=True)
        specs = [f"{n}={v}" if v else n for n, v in packages]
        args = [
            "apt-get", "install", "--download-only", "-y", "-q",
            "--no-install-recommends",
            "-o", f"Dir::State::status={status}",
            "-o", f"Dir::Cache::archives={cache}/",
            "-o", "APT::Sandbox::User=root",
            "-o", "Debug::NoLocking=1",
            *specs,
        ]
        for attempt in (1, 2):
            proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=900)
            if proc.returncode == 0:
                break
            if attempt == 1 and ("Unable to locate" in proc.stderr or "not found" in proc.stderr):
                # The host's package lists may be missing or stale.
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
                continue
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise AptRepoError(f"apt-get could not download {' '.join(specs)}: {tail}")
        for deb in cache.glob("*.deb"):
            shutil.move(str(deb), self.repo / deb.name)

    def _index(self) -> None:
        """(Re)build Packages, Packages.gz and Release if any .deb is new; cheap otherwise."""
        debs = sorted(self.repo.glob("*.deb"))
        changed = False
        for deb in debs:
            cached = self.meta / (deb.name + ".json")
            if cached.exists():
                continue
            cached.write_text(json.dumps(self._control(deb)))
            changed = True
        if not changed and (self.repo / "Release").exists():
            return
        stanzas = []
        for deb in debs:
            fields = json.loads((self.meta / (deb.name + ".json")).read_text())
            stanzas.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
        text = ("\n\n".join(stanzas) + "\n").encode() if stanzas else b""
        files = {"Packages": text, "Packages.gz": gzip.compress(text, mtime=0)}
        release = [f"Date: {formatdate(usegmt=True)}", "MD5Sum:"]
        release += [f" {hashlib.md5(b).hexdigest()} {len(b)} {n}" for n, b in files.items()]
        release.append("SHA256:")
        release += [f" {hashlib.sha256(b).hexdigest()} {len(b)} {n}" for n, b in files.items()]
        files["Release"] = ("\n".join(release) + "\n").encode()
        for name, data in files.items():
            tmp = self.repo / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.repo / name)

    def _control(self, deb: Path) -> dict[str, str]:
        """Packages stanza of one .deb from `dpkg-deb -f` (no dpkg-dev needed)."""
        try:
            raw = sh("dpkg-deb", "-f", str(deb)).stdout
        except NspawnError as exc:
            raise AptRepoError(f"cannot read {deb.name}: {exc}") from exc
        fields: dict[str, str] = {}
        key = None
        for line in raw.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        ordered = {k: fields[k] for k in _FIELDS if k in fields}
        ordered.update({k: v for k, v in fields.items() if k not in ordered})
        data = deb.read_bytes()
        ordered["Filename"] = f"./{deb.name}"
        ordered["Size"] = str(len(data))
        ordered["MD5sum"] = hashlib.md5(data).hexdigest()
        ordered["SHA256"] = hashlib.sha256(data).hexdigest()
        return ordered

    # -- serving ----------------------------------------------------------------------------

    def _marker(self) -> str:
        return f"http.server --bind {self.provider.host_ip} {self.port}"

    def ensure_served(self) -> None:
        """Start the detached HTTP server on the bridge address unless it runs (idempotent)."""
        self.provider.ensure_network()
        self.repo.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / "lock"):
            self._index()
            pid = nspawn.read_pid(self.pidfile)
            if pid is not None and nspawn.pid_alive(pid, self._marker()):
                return
            python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
            args = [
                python, "-m", "http.server",
                "--bind", self.provider.host_ip, str(self.port),
                "--directory", str(self.repo),
            ]
            pid = nspawn.spawn_detached(args, self.root / "http.log", self.pidfile)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(
                    (self.provider.host_ip, self.port), timeout=1
                ):
                    return
                if not nspawn.pid_alive(pid):
                    break
                time.sleep(0.1)
            log = (self.root / "http.log").read_text(errors="replace").strip().splitlines()
            raise AptRepoError(
                f"apt repo server on {self.provider.host_ip}:{self.port} did not start: "
                + " | ".join(log[-2:])
            )

    def stop(self) -> None:
        """Stop the HTTP server if it runs (idempotent)."""
        pid = nspawn.read_pid(self.pidfile)
        if pid is not None:
            nspawn.stop_process_tree(pid, self._marker(), grace=5)
        self.pidfile.unlink(missing_ok=True)
