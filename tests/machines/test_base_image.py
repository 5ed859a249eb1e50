"""The base image on a host with an empty image cache: built on first need, once, and never used
half-built after a crash. Real debootstrap (about a minute), so root and the network to Debian."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orbiter.activities.providers.local import image as base_image

pytestmark = [pytest.mark.machines, pytest.mark.slow]

BUILD = """
import sys
from pathlib import Path
from orbiter.activities.providers.local.image import ensure_image
print("built" if ensure_image(Path(sys.argv[1])) else "waited", flush=True)
"""


def builder(images: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", BUILD, str(images)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def pgid_files(images: Path) -> list[Path]:
    return sorted(images.glob(".debian-12.tmp-*.pgid"))


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture
def images(tmp_path: Path):
    root = tmp_path / "images"
    yield root
    # Also after a failure: no orphaned debootstrap, mount or half-built tree stays behind.
    for leftover in {p.with_suffix("") if p.suffix in (".pgid", ".log") else p for p in root.glob(".debian-12.tmp-*")}:
        base_image._discard_build(leftover)


def test_a_crashed_build_is_redone_and_concurrent_callers_wait_for_one(images: Path):
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    # A builder killed mid-build, as a worker SIGKILLed during its first reconcile: debootstrap
    # lives on as an orphan, writing into a temp tree, perhaps with /proc mounted inside it.
    first = builder(images)
    deadline = time.monotonic() + 60
    while not (pgid_files(images) and (Path(str(pgid_files(images)[0])[: -len(".pgid")]) / "var/lib/dpkg").exists()):
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.monotonic() < deadline, "debootstrap did not start within a minute"
        time.sleep(0.2)
    time.sleep(3)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    orphan = int(pgid_files(images)[0].read_text())
    assert group_alive(orphan), "the orphaned debootstrap should still run (the case to handle)"
    assert not (images / "debian-12").exists()

    # Two callers at once, as two clusters' first activities on one host: one builds, one waits.
    callers = [builder(images), builder(images)]
    outputs = []
    for proc in callers:
        out, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    assert sorted(outputs) == ["built", "waited"]

    image = images / "debian-12"
    assert (image / "usr/sbin/sshd").exists() and (image / "etc/ssh/sshd_config.d/orbiter.conf").exists()
    assert (image / "var/lib/dpkg/status").read_text().count("Package: openssh-server") == 1
    assert not group_alive(orphan), "the orphaned builder was stopped"
    assert sorted(p.name for p in images.iterdir() if p.name.startswith(".debian-12.tmp")) == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(images) not in mounts
    # Built once: a later call finds it and builds nothing.
    assert base_image.ensure_image(images) is False
