"""The worker's cached mirror of each watched repository, and git over SSH with pinned host keys."""

import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from orbiter.models.refs import RepoRef


class GitError(Exception):
    """A git operation failed; the message is one line naming the repository."""


def state_dir() -> Path:
    return Path(os.environ.get("ORBITER_STATE_DIR", Path.home() / ".local/state/orbiter"))


def normalize_url(url: str) -> str:
    """Local paths become absolute so the same repo always maps to the same workflow id."""
    if "://" in url or (":" in url and "@" in url.split(":", 1)[0]):
        return url
    return str(Path(url).expanduser().resolve())


def git_env(repo: RepoRef) -> dict[str, str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C",
           # Fetched objects always arrive as one pack moved into place, never one loose object
           # at a time: a worker killed mid-fetch leaves no commit whose tree is missing (a
           # commit the mirror "has" would not be fetched again, and its files would read as gone).
           "GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "fetch.unpackLimit", "GIT_CONFIG_VALUE_0": "1",
           "GIT_CONFIG_KEY_1": "transfer.unpackLimit", "GIT_CONFIG_VALUE_1": "1"}
    key_file = repo.key_file or os.environ.get("ORBITER_REPO_KEY_FILE")
    if key_file or repo.known_hosts_file:
        parts = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes"]
        if key_file:
            parts += ["-i", key_file]
        if repo.known_hosts_file:
            parts += ["-o", f"UserKnownHostsFile={repo.known_hosts_file}", "-o", "StrictHostKeyChecking=yes"]
        env["GIT_SSH_COMMAND"] = " ".join(parts)
    return env


# ssh's own complaints, which git buries under its generic "fatal: Could not read from remote
# repository ... and the repository exists." trailer: the line an operator needs to see.
SSH_PROBLEMS = (
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "Host key verification failed",
    "No ED25519 host key is known",
    "host key is known",
    "Permission denied",
    "Could not resolve hostname",
    "Connection refused",
    "Connection timed out",
    "No route to host",
    "Identity file",
)


def error_detail(stderr: str) -> str:
    """One line saying why git failed: ssh's reason when there is one, else git's fatal line."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip().strip("@")]
    if not lines:
        return "no output"
    found = [line for line in lines if any(p.lower() in line.lower() for p in SSH_PROBLEMS)]
    if found:
        changed = any("IDENTIFICATION HAS CHANGED" in line for line in found)
        reason = next((line for line in found if "verification failed" in line), found[0])
        if changed:
            return f"{reason.rstrip('.')}: the server's host key does not match the pinned known_hosts"
        if "host key is known" in reason or "verification failed" in reason:
            return f"{reason.rstrip('.')}: the server's host key is not in the pinned known_hosts"
        return reason
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return fatal[0] if fatal else lines[-1]


def git(repo: RepoRef, *args: str, cwd: Path | None = None, timeout: float = 120, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=git_env(repo), capture_output=True, text=True, timeout=timeout, input=input
    )
    if check and proc.returncode != 0:
        raise GitError(f"git {args[0]} of {repo.url} failed: {error_detail(proc.stderr)}")
    return proc


def _cache_path(repo: RepoRef, kind: str) -> Path:
    digest = hashlib.sha256(repo.url.encode()).hexdigest()[:16]
    return state_dir() / kind / f"{digest}.git"


def mirror(repo: RepoRef) -> Path:
    """A bare mirror of the repo, created on first use."""
    path = _cache_path(repo, "mirrors")
    if not (path / "HEAD").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # A directory of its own per attempt: two activities of one worker may make it at once,
        # and an attempt killed half way leaves only a temporary directory behind.
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent))
        git(repo, "init", "--bare", "-q", str(tmp))
        git(repo, "remote", "add", "origin", repo.url, cwd=tmp)
        if not (path / "HEAD").exists():
            shutil.rmtree(path, ignore_errors=True)  # a leftover without HEAD is no mirror
            with contextlib.suppress(OSError):  # another attempt made it first
                os.replace(tmp, path)
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def remote_head(repo: RepoRef) -> str:
    out = git(repo, "ls-remote", "--exit-code", repo.url, f"refs/heads/{repo.branch}", check=False, timeout=60)
    if out.returncode == 2:
        raise GitError(f"branch {repo.branch} does not exist in {repo.url}")
    if out.returncode != 0:
        raise GitError(f"cannot reach git remote {repo.url}: {error_detail(out.stderr)}")
    return out.stdout.split()[0]


def ensure_commit(repo: RepoRef, commit: str) -> Path:
    """The mirror, fetched if it does not have `commit` yet."""
    path = mirror(repo)
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}", cwd=path, check=False).returncode != 0:
        git(repo, "fetch", "-q", "origin", f"+refs/heads/{repo.branch}:refs/heads/{repo.branch}", cwd=path)
        if git(repo, "cat-file", "-e", f"{commit}^{{commit}}", cwd=path, check=False).returncode != 0:
            raise GitError(f"commit {commit[:12]} is not on branch {repo.branch} of {repo.url}")
    return path


def read_file(repo: RepoRef, commit: str, name: str) -> str | None:
    """A file's content at a commit, None when the commit does not have it.

    Cached: a commit's content never changes, and every node activity reads secrets.yml."""
    return _read_file(repo.model_dump_json(), commit, name)


@functools.lru_cache(maxsize=256)
def _read_file(repo_json: str, commit: str, name: str) -> str | None:
    repo = RepoRef.model_validate_json(repo_json)
    path = ensure_commit(repo, commit)
    for attempt in range(2):
        out = git(repo, "show", f"{commit}:{name}", cwd=path, check=False)
        if out.returncode == 0:
            return out.stdout
        # git says "does not exist" also when the commit's tree is missing: ask the tree itself.
        listed = git(repo, "ls-tree", "--name-only", commit, "--", name, cwd=path, check=False)
        if listed.returncode == 0 and not listed.stdout.strip():
            return None
        if attempt == 0:
            # The commit is there and its files are not (a mirror damaged before objects came as
            # packs): the mirror is a cache, so it is made again rather than a file read as gone.
            shutil.rmtree(path, ignore_errors=True)
            path = ensure_commit(repo, commit)
    raise GitError(f"git show {commit[:12]}:{name} of {repo.url} failed: {error_detail(out.stderr)}")


def commit_subject(repo: RepoRef, commit: str) -> str:
    """The first line of a commit's message: what notifications and history say a change was."""
    out = git(repo, "log", "-1", "--format=%s", commit, cwd=ensure_commit(repo, commit), check=False)
    return out.stdout.strip()[:200] if out.returncode == 0 else ""


def applied_commit(repo: RepoRef, commit: str, paths: list[str], write_backs: tuple[str, ...]) -> str:
    """The newest commit up to `commit` that changed one of `paths` and is not one of orbiter's
    write-backs (their subjects start with `write_backs`): the commit a change came from, also when
    a write-back landed on top of it before orbiter read the branch."""
    greps = [f"--grep=^{re.escape(subject)}" for subject in write_backs]
    out = git(repo, "log", "-1", "--format=%H", "--invert-grep", *greps, commit, "--", *paths,
              cwd=ensure_commit(repo, commit), check=False)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else commit
