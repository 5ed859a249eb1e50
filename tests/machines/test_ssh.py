"""The SSH executor against real machines: run, upload, host key pinning, auth, sudo."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from orbiter.activities.ssh import (
    AuthFailed,
    HostKeyChanged,
    SshError,
    Unreachable,
    connect,
    fingerprint,
    generate_ed25519,
)
from orbiter.models.machines import Machine

pytestmark = pytest.mark.machines


def test_run_captures_output_status_and_stdin(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    with connect(two_machines[0], maintenance_key[0]) as s:
        r = s.run("echo out; echo err >&2; exit 3")
        assert (r.stdout, r.stderr, r.status) == ("out\n", "err\n", 3)
        data = bytes(range(256)) * 8192  # 2 MiB through stdin and back
        r = s.run("sha256sum | cut -d' ' -f1", stdin=data, check=True)
        assert r.stdout.strip() == hashlib.sha256(data).hexdigest()
        big = s.run("head -c 3000000 /dev/zero | tr '\\0' x", check=True).stdout
        assert len(big) == 3_000_000
        with pytest.raises(SshError) as err:
            s.run("echo first line >&2\necho 'the reason' >&2; false", check=True)
        msg = str(err.value)
        assert two_machines[0].id in msg and "the reason" in msg and "\n" not in msg
        with pytest.raises(SshError, match="timed out"):
            s.run("sleep 5", timeout=0.5)
        assert s.run("echo still usable").stdout == "still usable\n"


def test_sessions_are_used_concurrently_from_threads(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    def work(m: Machine) -> list[str]:
        with connect(m, maintenance_key[0]) as s:
            return [s.run(f"sleep 0.2; echo {i}").stdout.strip() for i in range(5)]

    start = time.monotonic()
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(work, two_machines * 2))
    assert all(r == [str(i) for i in range(5)] for r in results)
    assert time.monotonic() - start < 4  # truly parallel


def test_upload_is_atomic_with_mode_and_owner(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    with connect(two_machines[0], maintenance_key[0]) as s:
        s.run("rm -rf /srv/orbiter-up; id nobody", check=True)
        s.upload("/srv/orbiter-up/a/b/conf", b"one\n", mode="0640", owner="nobody",
                 group="nogroup")
        assert s.run("stat -c '%a %U %G' /srv/orbiter-up/a/b/conf").stdout.strip() == (
            "640 nobody nogroup"
        )
        inode = s.run("stat -c %i /srv/orbiter-up/a/b/conf").stdout
        s.upload("/srv/orbiter-up/a/b/conf", b"two\n")
        assert s.run("cat /srv/orbiter-up/a/b/conf").stdout == "two\n"
        # Replaced by rename (new inode), no temp files left behind.
        assert s.run("stat -c %i /srv/orbiter-up/a/b/conf").stdout != inode
        assert s.run("ls -A /srv/orbiter-up/a/b").stdout.split() == ["conf"]
        assert s.run("stat -c '%a %U' /srv/orbiter-up/a/b/conf").stdout.strip() == "644 root"


def test_pinned_host_key_is_enforced(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    m = two_machines[0]
    with connect(m, maintenance_key[0]) as s:
        real = s.host_key
    assert real.startswith("ssh-ed25519 ")
    with connect(m.model_copy(update={"host_key": real}), maintenance_key[0]) as s:
        assert s.host_key.split()[:2] == real.split()[:2]
    wrong = generate_ed25519()[1]
    with pytest.raises(HostKeyChanged) as err:
        connect(m.model_copy(update={"host_key": wrong}), maintenance_key[0])
    msg = str(err.value)
    assert m.id in msg and fingerprint(wrong) in msg and fingerprint(real) in msg
    with pytest.raises(HostKeyChanged):
        connect(m, maintenance_key[0], accept_new_host_key=False)


def test_wrong_private_key_is_auth_failed(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    with pytest.raises(AuthFailed, match=two_machines[0].id):
        connect(two_machines[0], generate_ed25519()[0])


def test_closed_port_is_unreachable(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    m = two_machines[0].model_copy(update={"ssh_port": 2222})
    with pytest.raises(Unreachable, match=m.id):
        connect(m, maintenance_key[0], timeout=3)


def test_non_root_user_runs_through_sudo(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    m = two_machines[1]
    with connect(m, maintenance_key[0]) as s:
        s.run("id deploy >/dev/null 2>&1 || useradd -m -s /bin/bash deploy", check=True)
        s.upload("/etc/sudoers.d/deploy", b"deploy ALL=(ALL) NOPASSWD: ALL\n", mode="0440")
        s.upload("/home/deploy/.ssh/authorized_keys", maintenance_key[1].encode() + b"\n",
                 mode="0600", owner="deploy", group="deploy")
        s.run("chown deploy:deploy /home/deploy/.ssh && chmod 700 /home/deploy/.ssh", check=True)
    deploy = m.model_copy(update={"user": "deploy"})
    with connect(deploy, maintenance_key[0]) as s:
        assert s.run("id -u", check=True).stdout.strip() == "0"
        s.upload("/etc/orbiter-sudo-test", b"x", mode="0600")
        assert s.run("stat -c '%a %U' /etc/orbiter-sudo-test").stdout.strip() == "600 root"
        assert s.run("echo \"$(whoami) 'quoted'\"").stdout.strip() == "root 'quoted'"
