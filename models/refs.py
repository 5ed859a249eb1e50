"""References that let activities find secrets and repo files without values entering history."""

from .base import Model


class RepoRef(Model):
    url: str
    branch: str = "main"
    # Path of a deploy key file on the worker's host (for ssh:// and git@ URLs); never its content.
    key_file: str | None = None
    known_hosts_file: str | None = None


class SecretsRef(Model):
    """Where an activity reads a secret: secrets.yml at `commit`, overlaid by ciphertexts that
    orbiter created and has not committed yet (already encrypted, so safe in history)."""

    repo: RepoRef
    commit: str
    extra: dict[str, str] = {}
