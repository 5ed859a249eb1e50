"""Git side effects of the GitOps loop: poll the remote, read desired.yml, write current.yml back."""

import hashlib
import json
import time
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.models.current import Rejected
from orbiter.models.gitops import (
    OBSERVED_MESSAGE,
    REJECTED_MESSAGE,
    PollRemoteInput,
    PollRemoteResult,
    ReadDesiredInput,
    ReadDesiredResult,
    WriteBackInput,
    WriteBackResult,
)
from orbiter.models.load import DesiredStateError, load_desired
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import SecretsError, merge_sealed
from orbiter.worker.masterkey import load_master_key

from .repo import GitError, applied_commit, clone, commit_subject, git, read_file, remote_head

AUTHOR = ["-c", "user.name=orbiter", "-c", "user.email=orbiter@localhost"]
MAX_PUSH_ATTEMPTS = 10


@activity.defn
def poll_remote(input: PollRemoteInput) -> PollRemoteResult:
    try:
        return PollRemoteResult(commit=remote_head(input.repo))
    except GitError as err:
        raise ApplicationError(str(err), type="GitError") from None


def _acted_on(repo: RepoRef, commit: str, files: list[str]) -> tuple[str, str]:
    """(digest, applied commit) of the files orbiter acts on at `commit`."""
    contents = [(name, read_file(repo, commit, name)) for name in files]
    digest = hashlib.sha256(json.dumps(contents).encode()).hexdigest()
    return digest, applied_commit(repo, commit, files, (OBSERVED_MESSAGE, REJECTED_MESSAGE))


@activity.defn
def read_desired(input: ReadDesiredInput) -> ReadDesiredResult:
    """desired.yml at the commit, validated; an invalid file is a result (rejected), not a failure.
    The result names the commit the content comes from: a write-back of orbiter's on top of a
    user's push is never what orbiter says it applied."""
    try:
        text = read_file(input.repo, input.commit, "desired.yml")
        orb, rejected = None, None
        if text is None:
            rejected = Rejected(commit=input.commit, file="desired.yml", line=None, message="desired.yml is missing")
        else:
            try:
                orb = load_desired(text, "desired.yml")
            except DesiredStateError as err:
                rejected = Rejected(commit=input.commit, file=err.file, line=err.line, message=str(err))
        named = sorted({f for c in orb.spec.clusters.values() for f in c.repo_files()}) if orb else []
        digest, applied = _acted_on(input.repo, input.commit, ["desired.yml", "secrets.yml", *named])
        subject = commit_subject(input.repo, applied)
    except GitError as err:
        raise ApplicationError(str(err), type="GitError") from None
    if rejected is not None:
        rejected.commit = applied
    return ReadDesiredResult(commit=input.commit, applied=applied, digest=digest, orb=orb, rejected=rejected,
                             subject=subject)


def _worktree(input: WriteBackInput) -> Path:
    return clone(input.repo, "worktrees")


def _apply(input: WriteBackInput, path: Path) -> bool:
    """Write our files on top of the checked-out head; True when that changes anything."""
    (path / "current.yml").write_text(input.status.to_yaml() if input.status is not None else input.current_yaml)
    if input.sealed_secrets:
        secrets_file = path / "secrets.yml"
        text = secrets_file.read_text() if secrets_file.exists() else None
        secrets_file.write_text(merge_sealed(load_master_key(), text, input.sealed_secrets))
    git(input.repo, "add", "current.yml", *(["secrets.yml"] if input.sealed_secrets else []), cwd=path)
    return git(input.repo, "diff", "--cached", "--quiet", cwd=path, check=False).returncode != 0


@activity.defn
def write_back(input: WriteBackInput) -> WriteBackResult:
    """Commit current.yml (and new secrets) as orbiter; on a rejected push, rebase onto the remote.

    Never forces: a user's commit that raced ours stays, ours goes on top of it."""
    try:
        path = _worktree(input)
        for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
            activity.heartbeat(attempt)
            git(input.repo, "fetch", "-q", "origin", input.repo.branch, cwd=path)
            git(input.repo, "reset", "-q", "--hard", "FETCH_HEAD", cwd=path)
            if not _apply(input, path):
                return WriteBackResult(commit=None, attempts=attempt)
            git(
                input.repo,
                *AUTHOR,
                "commit",
                "-q",
                "--author",
                "orbiter <orbiter@localhost>",
                "-m",
                input.message,
                cwd=path,
            )
            pushed = git(
                input.repo, "push", "-q", "origin", f"HEAD:refs/heads/{input.repo.branch}", cwd=path, check=False
            )
            if pushed.returncode == 0:
                head = git(input.repo, "rev-parse", "HEAD", "HEAD~1", cwd=path).stdout.split()
                return WriteBackResult(commit=head[0], parent=head[1], attempts=attempt)
            activity.logger.info("push to %s rejected (attempt %d); rebasing", input.repo.url, attempt)
            time.sleep(min(0.2 * attempt, 2.0))
        raise ApplicationError(
            f"push to {input.repo.url} kept being rejected after {MAX_PUSH_ATTEMPTS} attempts", type="GitError"
        )
    except GitError as err:
        raise ApplicationError(str(err), type="GitError") from None
    except SecretsError as err:
        raise ApplicationError(str(err), type="SecretsError", non_retryable=True) from None
