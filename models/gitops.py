"""Messages of the GitOps workflow and its git activities."""

from .base import Model
from .current import ClusterStatus, OrbStatus, Rejected
from .desired import Orb
from .refs import RepoRef


class GitOpsInput(Model):
    repo: RepoRef
    # Carried across continue-as-new so nothing is lost or repeated.
    state: "GitOpsState | None" = None


class GitOpsState(Model):
    last_seen_commit: str | None = None
    desired_commit: str | None = None
    desired_digest: str | None = None
    orb: Orb | None = None
    status: OrbStatus = OrbStatus()
    pending_secrets: dict[str, str] = {}  # sealed, not yet committed
    committed_secrets: dict[str, str] = {}  # sealed values already written, to skip repeats
    dirty: bool = False
    poll_interval_seconds: float = 30.0
    keyed_providers: list[str] = []  # providers whose keys exist (names); a new one needs ensure_provider_keys
    desired_subject: str = ""
    notices: int = 0  # notifications made so far: the next one's number, part of its delivery id


class PollRemoteInput(Model):
    repo: RepoRef


class PollRemoteResult(Model):
    commit: str


class ReadDesiredInput(Model):
    repo: RepoRef
    commit: str


class ReadDesiredResult(Model):
    commit: str
    digest: str  # of desired.yml, so a commit that changes only current.yml is recognised
    orb: Orb | None = None
    subject: str = ""  # the commit message's first line
    rejected: Rejected | None = None


class WriteBackInput(Model):
    repo: RepoRef
    current_yaml: str
    sealed_secrets: dict[str, str] = {}
    message: str


class WriteBackResult(Model):
    commit: str | None  # None: nothing changed, nothing committed
    parent: str | None = None  # what our commit went on top of: another commit means a user pushed
    attempts: int = 1


class PokeInput(Model):
    reason: str = "poke"


class SyncInput(Model):
    """`orbiter poke --wait`: poll now, then wait until the commit seen is applied."""


class SyncResult(Model):
    """The orb once every cluster settled at the desired commit the poll found (or it was rejected)."""

    commit: str | None  # the branch head the poll saw
    status: OrbStatus
    ok: bool  # every cluster Ready (or Destroyed) at that commit, nothing rejected, no git error


class OrbInfo(Model):
    """What the GitOps workflow tells commands about its orb: the repository (history reads its
    git log), the desired commit, and the receiver's secret."""

    orb: str | None
    repo: RepoRef
    commit: str | None  # the desired commit in force
    receiver_secret: str | None  # desired.yml's receiver.secret; None: the orb takes no push hooks


class ClusterReport(Model):
    """A cluster's observed state, and secrets it created (sealed), for the write-back."""

    cluster: str
    status: ClusterStatus
    sealed_secrets: dict[str, str] = {}


GitOpsInput.model_rebuild()
