"""Known secret values go through the whole loop and show up nowhere in plain text: not in
Temporal's SQLite files or log, not under ORBITER_STATE_DIR, not in any commit, not in logs."""

import logging
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbiter.cli.secret import app as secret_app
from orbiter.models.gitops import PokeInput
from orbiter.models.refs import RepoRef
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import GitRepo, git
from ..support.flows import current, desired, takeoff, wait_for
from ..support.leaks import find_leaks

pytestmark = pytest.mark.slow


def add_secret(repo_dir: Path, name: str, value: str) -> None:
    result = CliRunner().invoke(secret_app, ["add", name, "--repo-dir", str(repo_dir)], input=value)
    assert result.exit_code == 0, result.output
    assert value not in result.output


async def test_secret_values_never_leave_in_plain_text(client, worker, repo: GitRepo, assert_no_leak, caplog):
    caplog.set_level(logging.DEBUG)
    tag = uuid.uuid4().hex
    markers = [f"LEAKMARKER-{tag}-bootstrap", f"LEAKMARKER-{tag}-token"]
    orb = "leak" + tag[:8]
    repo.push({"desired.yml": desired(orb)}, "day one")
    add_secret(repo.clone, "dc1_bootstrapkey", markers[0] + "\n-----END OPENSSH PRIVATE KEY-----\n")
    add_secret(repo.clone, "api_token", markers[1])
    git(repo.clone, "add", "secrets.yml")
    git(repo.clone, "commit", "-q", "-m", "secrets")
    git(repo.clone, "push", "-q", "origin", "main")
    assert all(m not in (repo.remote_file("secrets.yml") or "") for m in markers)
    # Takeoff and the first write-back.
    wid = await takeoff(client, RepoRef(url=repo.url))
    secrets_commit = repo.log("%H")[0]
    status = await wait_for(lambda: (s := current(repo)) and s.commit == secrets_commit and "meta" in s.clusters
                            and s, timeout=60, what="current.yml for the secrets commit")
    assert status.orb == orb
    # A later push, an invalid one (its error text travels through history), and a fix.
    handle = client.get_workflow_handle(wid)
    bad = repo.push({"desired.yml": desired(orb).replace("nodes: 1", "nodes: 12")}, "bad")
    await handle.signal(GitOpsWorkflow.poke, PokeInput())
    await wait_for(lambda: (s := current(repo)) and s.rejected and s.rejected.commit == bad, what="rejection")
    fixed = repo.push({"desired.yml": desired(orb).replace("nodes: 1", "nodes: 1 ")}, "fix")
    await handle.signal(GitOpsWorkflow.poke, PokeInput())
    await wait_for(lambda: (s := current(repo)) and s.commit == fixed, what="fix applied")
    assert_no_leak(markers, repos=[repo.remote])
    # The check is not vacuous: the markers really are in the repo, sealed, and the master key
    # reads them back (to stdout, on purpose).
    out = CliRunner().invoke(secret_app, ["read", "api_token", "--repo-dir", str(repo.clone)])
    assert out.exit_code == 0 and markers[1] in out.output
    await handle.terminate()
    await client.get_workflow_handle(f"cluster/{orb}/meta").terminate()


def test_the_leak_check_finds_a_planted_marker(tmp_path: Path, repo: GitRepo):
    """The check itself works: a marker in a file, a commit, or a text is reported."""
    marker = "LEAKMARKER-" + uuid.uuid4().hex
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "file.bin").write_bytes(b"\x00" + marker.encode() + b"\x00")
    repo.push({"x.txt": "nothing\n"}, "clean")
    assert find_leaks([marker], paths=[tmp_path / "state"], repos=[repo.remote]) == [
        f"{tmp_path / 'state' / 'file.bin'}: {marker}"]
    repo.push({"x.txt": marker + "\n"}, "oops")
    repo.push({"x.txt": "removed again\n"}, "fix")  # still in history
    assert find_leaks([marker], repos=[repo.remote]) == [f"git history of {repo.remote}: {marker}"]
    assert find_leaks([marker], texts={"log": f"value={marker}"}) == [f"log: {marker}"]
