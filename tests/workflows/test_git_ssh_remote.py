"""The GitOps loop over a real SSH git remote: sshd on loopback, a deploy key, a pinned host key."""

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from orbiter.models.refs import RepoRef
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import GitRepo, free_port
from ..support.flows import current, desired, takeoff, wait_for

SSHD = "/usr/sbin/sshd"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(SSHD), reason=f"{SSHD} is missing: apt-get install openssh-server"),
    pytest.mark.skipif(os.geteuid() != 0, reason="sshd serves root's login here and must run as root"),
]


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


class SshServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.host_key = root / "host_key"
        self.deploy_key = root / "deploy_key"
        self.log = root / "sshd.log"
        self.host_pub = keygen(self.host_key)
        deploy_pub = keygen(self.deploy_key)
        (root / "authorized_keys").write_text(deploy_pub + "\n")
        os.chmod(root / "authorized_keys", 0o600)
        self.config = root / "sshd_config"
        self.config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
AuthorizedKeysFile {root / "authorized_keys"}
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding no
X11Forwarding no
LogLevel VERBOSE
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def known_hosts(self, path: Path, public_key: str | None = None) -> Path:
        kind, blob = (public_key or self.host_pub).split()[:2]
        path.write_text(f"[127.0.0.1]:{self.port} {kind} {blob}\n")
        return path

    def url(self, path: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        subprocess.run([SSHD, "-t", "-f", str(self.config)], check=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()}")
            if "Server listening" in self.log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    root = tmp_path / "sshd"
    root.mkdir()
    server = SshServer(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_git_over_ssh_works_with_the_deploy_key(sshd: SshServer, repo: GitRepo, tmp_path: Path):
    """The fixture itself: plain git through sshd with the deploy key and pinned host key."""
    repo.push({"desired.yml": "x: 1\n"}, "one")
    known = sshd.known_hosts(tmp_path / "known_hosts")
    env = {**os.environ, "GIT_SSH_COMMAND": f"ssh -o BatchMode=yes -o IdentitiesOnly=yes -i {sshd.deploy_key}"
           f" -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"}
    out = subprocess.run(["git", "ls-remote", sshd.url(repo.remote), "refs/heads/main"], env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == repo.log("%H")[0]


async def test_gitops_loop_over_ssh(client, worker, sshd: SshServer, repo: GitRepo, tmp_path: Path):
    orb = "ssh" + uuid.uuid4().hex[:8]
    commit = repo.push({"desired.yml": desired(orb)}, "day one")
    ref = RepoRef(url=sshd.url(repo.remote), key_file=str(sshd.deploy_key),
                  known_hosts_file=str(sshd.known_hosts(tmp_path / "known_hosts")))
    wid = await takeoff(client, ref)
    status = await wait_for(lambda: (s := current(repo)) and s.commit == commit and "meta" in s.clusters
                            and s.clusters["meta"].phase == "Paused" and s, timeout=60,
                            what="current.yml committed over SSH")
    assert status.orb == orb and status.error is None
    assert repo.log("%an")[0] == "orbiter"
    # sshd saw orbiter's deploy key, so the write-back went over SSH, not a local path.
    assert "Accepted publickey for root" in sshd.log.read_text()
    await client.get_workflow_handle(wid).terminate()
    await client.get_workflow_handle(f"cluster/{orb}/meta").terminate()


async def test_a_host_key_that_does_not_match_the_pinned_one_is_refused(client, worker, sshd: SshServer,
                                                                         repo: GitRepo, tmp_path: Path):
    repo.push({"desired.yml": desired("sshbad" + uuid.uuid4().hex[:8])}, "day one")
    other_pub = keygen(tmp_path / "other_host_key")
    known = sshd.known_hosts(tmp_path / "known_hosts", public_key=other_pub)
    ref = RepoRef(url=sshd.url(repo.remote), key_file=str(sshd.deploy_key), known_hosts_file=str(known))
    wid = await takeoff(client, ref)
    handle = client.get_workflow_handle(wid)

    async def error() -> str | None:
        return (await handle.query(GitOpsWorkflow.status)).error

    message = await wait_for(error, timeout=60, what="a poll error")
    assert message.startswith(f"cannot poll {ref.url}")
    assert "host key" in message.lower(), message
    assert current(repo) is None  # nothing was written through an untrusted server
    assert (await handle.describe()).status.name == "RUNNING"
    await handle.terminate()


def test_known_hosts_file_missing_the_host_is_refused_without_a_prompt(sshd: SshServer, tmp_path: Path, repo):
    """No blind trust: an unknown host is an error, not trust on first use."""
    from orbiter.activities.repo import GitError, remote_head

    repo.push({"desired.yml": "x: 1\n"}, "one")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    ref = RepoRef(url=sshd.url(repo.remote), key_file=str(sshd.deploy_key), known_hosts_file=str(empty))
    with pytest.raises(GitError, match="(?i)host key"):
        remote_head(ref)
    assert empty.read_text() == ""
