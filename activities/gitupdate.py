"""orbiter's own commits to desired.yml: a version update its policy takes.

Only the `version:` line of that cluster changes (found through the YAML's own line marks, so the
operator's formatting and comments stay), committed as author orbiter and pushed with the same
fetch-rebase-retry as the write-back. A user's commit always wins: if it changed that line, or
the cluster, orbiter's commit is dropped; if it changed anything else, orbiter's edit goes on top.
"""

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.models.load import DesiredStateError, field_line, load_desired
from orbiter.models.updatecheck import CommitVersionInput, CommitVersionResult

from .git import AUTHOR, MAX_PUSH_ATTEMPTS
from .repo import GitError, git, state_dir

DESIRED = "desired.yml"


class Dropped(Exception):
    """The user's desired.yml no longer asks for the version orbiter would move from."""


def edit_version(text: str, cluster: str, old: str, new: str) -> str | None:
    """desired.yml with cluster's `version: old` replaced by `new` on its own line (quotes and
    comments kept); None when it already names `new`. Raises Dropped when it names neither."""
    try:
        spec = load_desired(text).spec.clusters.get(cluster)
    except DesiredStateError as err:
        raise Dropped(f"desired.yml is not valid ({err})") from None
    have = spec.current_version() if spec is not None else None
    if have == new:
        return None
    if spec is None or have != old:
        raise Dropped(f"desired.yml now names {have or 'no version'} for cluster {cluster}, not {old}")
    line = field_line(text, ("spec", "clusters", cluster, "version"))
    lines = text.splitlines(keepends=True)
    if line is None:
        raise Dropped(f"cannot find the version line of cluster {cluster}")
    pattern = re.compile(r"(\bversion\s*:\s*)([\"']?)" + re.escape(old) + r"\2(?=\s|,|}|#|$)")
    edited, count = pattern.subn(lambda m: f"{m.group(1)}{m.group(2)}{new}{m.group(2)}", lines[line - 1], count=1)
    if count != 1:
        raise Dropped(f"line {line} of desired.yml does not write version {old} as orbiter can edit it")
    lines[line - 1] = edited
    out = "".join(lines)
    after = load_desired(out).spec.clusters.get(cluster)
    if after is None or after.current_version() != new:
        raise Dropped(f"editing line {line} would not set version {new}")
    return out


@contextlib.contextmanager
def _locked(input: CommitVersionInput) -> Iterator[None]:
    """One version commit at a time per repository: clusters of one orb share the clone."""
    path = _path(input).with_suffix(".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _path(input: CommitVersionInput) -> Path:
    return state_dir() / "update-worktrees" / hashlib.sha256(input.repo.url.encode()).hexdigest()[:16]


def _worktree(input: CommitVersionInput) -> Path:
    """A clone of its own (the write-back's may be busy at the same moment)."""
    path = _path(input)
    if not (path / ".git").exists():
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent))
        git(input.repo, "clone", "-q", "--branch", input.repo.branch, input.repo.url, str(tmp / "w"))
        (tmp / "w").rename(path)
        shutil.rmtree(tmp, ignore_errors=True)
    return path


@activity.defn
def commit_version_update(input: CommitVersionInput) -> CommitVersionResult:
    """Commit `version: new` for the cluster as orbiter and push it. Idempotent: a retry finds the
    version already there (its own earlier push) and commits nothing."""
    try:
        with _locked(input):
            return _commit(input)
    except GitError as err:
        raise ApplicationError(str(err), type="GitError") from None


def _commit(input: CommitVersionInput) -> CommitVersionResult:
    """The attempts: fetch, edit, commit, push; a rejected push starts again from the remote."""
    path = _worktree(input)
    for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
        activity.heartbeat(attempt)
        git(input.repo, "fetch", "-q", "origin", input.repo.branch, cwd=path)
        git(input.repo, "reset", "-q", "--hard", "FETCH_HEAD", cwd=path)
        file = path / DESIRED
        try:
            edited = edit_version(file.read_text() if file.exists() else "", input.cluster, input.old, input.new)
        except Dropped as err:
            activity.logger.info("version update of %s dropped: %s", input.cluster, err)
            return CommitVersionResult(note=f"dropped: {err}")
        if edited is None:
            return CommitVersionResult(note=f"desired.yml names {input.new} already")
        file.write_text(edited)
        git(input.repo, "add", DESIRED, cwd=path)
        git(input.repo, *AUTHOR, "commit", "-q", "--author", "orbiter <orbiter@localhost>", "-m", input.message,
            cwd=path)
        pushed = git(input.repo, "push", "-q", "origin", f"HEAD:refs/heads/{input.repo.branch}", cwd=path,
                     check=False)
        if pushed.returncode == 0:
            return CommitVersionResult(commit=git(input.repo, "rev-parse", "HEAD", cwd=path).stdout.strip())
        activity.logger.info("push of a version update to %s rejected (attempt %d)", input.repo.url, attempt)
        time.sleep(min(0.2 * attempt, 2.0))
    raise ApplicationError(f"push to {input.repo.url} kept being rejected after {MAX_PUSH_ATTEMPTS} attempts",
                           type="GitError")

ACTIVITIES = [commit_version_update]
