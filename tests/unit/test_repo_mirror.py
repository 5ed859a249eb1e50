"""The repository mirror orbiter reads commits from survives a worker killed mid-fetch.

Found by bench/crashcost.py: a SIGKILL during `git fetch` could leave the commit object in the
mirror without its tree (git unpacked small fetches one loose object at a time); the mirror then
"had" the commit, never fetched it again, and desired.yml read as missing, so orbiter rejected
the user's commit."""

import subprocess
from pathlib import Path

from orbiter.activities.repo import ensure_commit, read_file
from orbiter.models.refs import RepoRef

from ..conftest import GitRepo


def _loose_objects(path: Path) -> list[Path]:
    return [p for p in (path / "objects").glob("??/*") if p.is_file()]


def test_fetched_objects_arrive_as_a_pack(tmp_path: Path):
    repo = GitRepo(tmp_path)
    commit = repo.push({"desired.yml": "a: 1\n"}, "first")
    mirror = ensure_commit(RepoRef(url=repo.url), commit)
    assert _loose_objects(mirror) == [] and list((mirror / "objects" / "pack").glob("*.pack"))


def test_a_commit_without_its_tree_is_fetched_again_not_read_as_missing(tmp_path: Path):
    repo = GitRepo(tmp_path)
    commit = repo.push({"desired.yml": "a: 1\n"}, "first")
    ref = RepoRef(url=repo.url)
    mirror = ensure_commit(ref, commit)
    # What a fetch killed after the commit object and before its tree left behind.
    for pack in (mirror / "objects" / "pack").iterdir():
        pack.unlink()
    raw = subprocess.run(["git", "cat-file", "commit", commit], cwd=repo.remote, capture_output=True,
                         check=True).stdout
    subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=mirror, input=raw, check=True,
                   capture_output=True)
    assert read_file(ref, commit, "desired.yml") == "a: 1\n"
    assert read_file(ref, commit, "secrets.yml") is None  # a file the commit lacks is still None
