"""A test fixture: a Debian package the machines already have, rebuilt at a newer version and
served from a local provider's apt repo, so apt on the machines offers an OS update (what a
security update from a mirror looks like to them; the machines have no mirror here)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.providers.local.nspawn import file_lock

EPOCH = 1704067200


def rebuilt(package: str, version: str, new_version: str, out_dir: Path) -> Path:
    """Debian's `package` at `version`, with only its version changed to `new_version`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{package}_{new_version}_all.deb"
    if target.exists():
        return target
    subprocess.run(["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", f"{package}={version}"],
                   cwd=out_dir, check=True, capture_output=True, timeout=300)
    original = next(out_dir.glob(f"{package}_*{version.split(':')[-1]}_*.deb"))
    with tempfile.TemporaryDirectory(prefix="rebuilt-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-R", str(original), str(root)], check=True, capture_output=True)
        control = root / "DEBIAN/control"
        control.write_text(control.read_text().replace(f"Version: {version}", f"Version: {new_version}"))
        for path in [root, *root.rglob("*")]:
            os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(target)], check=True,
                       capture_output=True, env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)})
    return target


def remove_debs(apt_repo: AptRepo, names: list[str]) -> None:
    """Take .debs a test added out of the repo again (other tests of the session share it)."""
    with file_lock(apt_repo.root / "lock"):
        for name in names:
            (apt_repo.repo / name).unlink(missing_ok=True)
            (apt_repo.meta / (name + ".json")).unlink(missing_ok=True)
        (apt_repo.repo / "Release").unlink(missing_ok=True)
        apt_repo._index()
