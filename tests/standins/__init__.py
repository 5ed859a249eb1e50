"""Test stand-ins for kubeadm, kubelet and kubectl: NOT Kubernetes, only for orbiter's tests.

Real Kubernetes packages cannot be installed on the test machines, so the tests build Debian
packages named ``kubeadm``, ``kubelet`` and ``kubectl`` at real upstream version strings
(``1.30.6-1.1``) whose programs are one Python package (``payload/standin/``, a module per tool),
each package carrying its own copy of it and small launchers. They record every invocation on the
machine and answer the commands orbiter uses the way the real tools do, keeping cluster state in a
small stand-in API served by the first control plane. The product code knows nothing of them; see
``payload/standin/__init__.py`` for the layout and the supported commands.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from orbiter.activities.locks import file_lock

if TYPE_CHECKING:
    from orbiter.activities.providers.local.aptrepo import AptRepo
    from orbiter.activities.ssh import SshSession

PAYLOAD = Path(__file__).parent / "payload" / "standin"  # the package the programs run
LIB = "/usr/lib/orbiter-standin"  # each package's copy of PAYLOAD: LIB/<package>/standin/
VERSION_LINE = 'VERSION = "@VERSION@"'  # in PAYLOAD/common.py; the builder writes each version there
PACKAGES = ("kubeadm", "kubelet", "kubectl")
STANDIN = "orbiter test stand-in, not Kubernetes"
INVOCATIONS = "/var/log/standin/invocations.jsonl"
EXITS = "/var/log/standin/exits.jsonl"
STUCK_PODS = "/var/lib/standin-apiserver/stuck-pods.json"
ETCD_UNHEALTHY = "/var/lib/standin-apiserver/etcd-unhealthy"
# Fixed file times so a rebuild of the same version gives the same bytes (and apt sees no change).
EPOCH = 1704067200

KUBELET_UNIT = """\
# orbiter test stand-in, not Kubernetes: the kubelet heartbeats its node into the stand-in API.
[Unit]
Description=kubelet: The Kubernetes Node Agent (orbiter test stand-in)
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

APISERVER_UNIT = """\
# orbiter test stand-in, not Kubernetes: started by the stand-in kubeadm init/join on control planes.
[Unit]
Description=stand-in kube-apiserver for orbiter tests (not Kubernetes)
After=network-online.target

[Service]
ExecStart=/usr/lib/orbiter-standin/standin-apiserver
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""

KUBELET_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload || true
    systemctl enable kubelet.service >/dev/null 2>&1 || true
fi
exit 0
"""

KUBELET_PRERM = """#!/bin/sh
set -e
if [ "$1" = remove ] && command -v systemctl >/dev/null; then
    systemctl stop kubelet.service || true
    systemctl disable kubelet.service >/dev/null 2>&1 || true
fi
exit 0
"""

# /usr/bin/<tool> and standin-apiserver. No bytecode is written: every version's modules carry the
# same fixed mtime (EPOCH), so a cached .pyc could outlive an upgrade of a module of the same size.
LAUNCHER = """#!/usr/bin/python3
\"\"\"{standin}: {tool}, a launcher for the stand-in package in {lib}/standin.\"\"\"

import sys

sys.dont_write_bytecode = True
sys.path.insert(0, "{lib}")
from standin.main import main  # noqa: E402

sys.exit(main())
"""

KUBEADM_POSTINST = """#!/bin/sh
set -e
if [ "$1" = configure ] && command -v systemctl >/dev/null; then
    systemctl daemon-reload || true
fi
exit 0
"""


def _upstream(version: str) -> str:
    """1.30.6-1.1 -> 1.30.6 (what the tools print)."""
    return version.split("-", 1)[0].lstrip("v")


def _launcher(package: str, tool: str) -> str:
    return LAUNCHER.format(standin=STANDIN, tool=tool, lib=f"{LIB}/{package}")


def _payload(version: str) -> dict[str, str]:
    """Module file name -> source of the stand-in package, with VERSION set to ``version``'s upstream."""
    modules = {path.name: path.read_text() for path in sorted(PAYLOAD.glob("*.py"))}
    if modules["common.py"].count(VERSION_LINE) != 1:
        raise RuntimeError(f"{PAYLOAD}/common.py must define {VERSION_LINE} once")
    modules["common.py"] = modules["common.py"].replace(VERSION_LINE, f'VERSION = "{_upstream(version)}"')
    return modules


def _files(package: str, modules: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Path in the package -> (content, mode): the launcher, its own copy of the stand-in package, and more."""
    files = {f"usr/bin/{package}": (_launcher(package, package), 0o755)}
    lib = LIB.lstrip("/")
    for module, source in modules.items():
        files[f"{lib}/{package}/standin/{module}"] = (source, 0o644)
    doc = f"usr/share/doc/{package}/README.standin"
    files[doc] = (f"{package}: {STANDIN}. Built by orbiter's tests (tests/standins).\n", 0o644)
    if package == "kubeadm":
        files[f"{lib}/standin-apiserver"] = (_launcher(package, "standin-apiserver"), 0o755)
        files["lib/systemd/system/standin-apiserver.service"] = (APISERVER_UNIT, 0o644)
        files["DEBIAN/postinst"] = (KUBEADM_POSTINST, 0o755)
    if package == "kubelet":
        files["lib/systemd/system/kubelet.service"] = (KUBELET_UNIT, 0o644)
        files["DEBIAN/postinst"] = (KUBELET_POSTINST, 0o755)
        files["DEBIAN/prerm"] = (KUBELET_PRERM, 0o755)
    return files


def _control(package: str, version: str) -> str:
    return (
        f"Package: {package}\n"
        f"Version: {version}\n"
        "Architecture: all\n"
        "Maintainer: orbiter tests <orbiter-tests@example.invalid>\n"
        "Depends: python3\n"
        "Section: admin\n"
        "Priority: optional\n"
        f"Description: {STANDIN}: {package} {_upstream(version)}\n"
        f" A test stand-in for {package} used by orbiter's tests on machines that cannot\n"
        " install Kubernetes. It records its invocations and imitates the commands orbiter\n"
        " uses. It is not Kubernetes and must never be installed anywhere else.\n"
    )


def build_debs(out_dir: Path | str, versions: list[str]) -> list[Path]:
    """Build kubeadm, kubelet and kubectl stand-in .debs for each version (``1.30.6-1.1``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    built = []
    for version in versions:
        modules = _payload(version)
        for package in PACKAGES:
            deb = out / f"{package}_{version}_all.deb"
            with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
                root = Path(tmp) / "root"
                files = _files(package, modules)
                files["DEBIAN/control"] = (_control(package, version), 0o644)
                for rel, (content, mode) in files.items():
                    path = root / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(content)
                    path.chmod(mode)
                for path in [root, *root.rglob("*")]:
                    if path.is_dir():
                        path.chmod(0o755)
                    os.utime(path, (EPOCH, EPOCH))
                env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
                subprocess.run(
                    ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                    check=True,
                    capture_output=True,
                    env=env,
                )
            built.append(deb)
    return built


def add_debs(apt_repo: AptRepo, paths: list[Path]) -> None:
    """Copy local .debs into an AptRepo and re-index it (what ``AptRepo.add_debs`` could be).

    A file of the same name with different bytes replaces the old one and its cached control
    fields, so the index never advertises a stale checksum.
    """
    apt_repo.repo.mkdir(parents=True, exist_ok=True)
    apt_repo.meta.mkdir(parents=True, exist_ok=True)
    with file_lock(apt_repo.root / "lock"):
        changed = False
        for src in paths:
            dst = apt_repo.repo / Path(src).name
            if dst.exists() and dst.read_bytes() == Path(src).read_bytes():
                continue
            tmp = dst.with_name("." + dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            (apt_repo.meta / (dst.name + ".json")).unlink(missing_ok=True)
            changed = True
        if changed:
            (apt_repo.repo / "Release").unlink(missing_ok=True)
        apt_repo._index()


def serve_standins(apt_repo: AptRepo, versions: list[str], build_dir: Path | str | None = None) -> list[Path]:
    """Build the stand-ins for ``versions``, add them to the repo and make sure it is served."""
    out = Path(build_dir) if build_dir else apt_repo.root / "standins"
    debs = build_debs(out, versions)
    add_debs(apt_repo, debs)
    apt_repo.ensure_served()
    return debs


def install_command(apt_repo: AptRepo, version: str, packages: tuple[str, ...] = PACKAGES) -> str:
    """Shell command that points a machine at the repo and installs the stand-ins at ``version``."""
    pins = " ".join(f"{p}={version}" for p in packages)
    return (
        f"echo {shlex.quote(apt_repo.source_line())} > /etc/apt/sources.list.d/orbiter-local.list && "
        "apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades "
        f"--no-install-recommends {pins}"
    )


def read_invocations(session: SshSession) -> list[dict]:
    """Every recorded stand-in invocation on the machine, oldest first, with ``exit`` where known."""
    text = session.run(f"cat {INVOCATIONS} 2>/dev/null; echo '#exits'; cat {EXITS} 2>/dev/null").stdout
    calls, _, exits_text = text.partition("#exits\n")
    exits = {}
    for line in exits_text.splitlines():
        if line.strip():
            e = json.loads(line)
            exits[e["id"]] = e["exit"]
    result = []
    for line in calls.splitlines():
        if line.strip():
            inv = json.loads(line)
            if inv["id"] in exits:
                inv["exit"] = exits[inv["id"]]
            result.append(inv)
    return result


def set_stuck_pods(session: SshSession, stuck: dict[str, list[str]]) -> None:
    """Test hook on the API machine: pods ("ns/name") whose disruption budget blocks draining each node."""
    session.upload(STUCK_PODS, json.dumps(stuck).encode())


def set_etcd_unhealthy(session: SshSession, reason: str | None) -> None:
    """Test hook on a control plane: its stand-in etcd member reports unhealthy for `reason` (None: healthy)."""
    if reason is None:
        session.run(f"rm -f {ETCD_UNHEALTHY}", check=True)
    else:
        session.upload(ETCD_UNHEALTHY, reason.encode())


def api_state(session: SshSession) -> dict:
    """The stand-in API's whole state, read through kubectl's credentials on a control plane."""
    out = session.run("cat /var/lib/standin-apiserver/state.json", check=True).stdout
    return json.loads(out)
