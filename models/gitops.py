"""Messages of the GitOps workflow and its git activities."""

from .base import Model
from .current import ClusterStatus, OrbStatus, Rejected
from .desired import Orb
from .refs import RepoRef

# orbiter's write-back commits: never the commit orbiter says it applied.
OBSERVED_MESSAGE = "orbiter: observed state"
REJECTED_MESSAGE = "orbiter: rejected "  # + the rejected commit


class GitOpsInput(Model):
    repo: RepoRef
    # Carried across continue-as-new so nothing is lost or repeated.
    state: "GitOpsState | None" = None


class GitOpsState(Model):
    last_seen_commit: str | None = None  # the branch head last read
    last_applied: str | None = None  # the commit that head's content comes from (see ReadDesiredResult.applied)
    desired_commit: str | None = None  # the applied commit of the desired state in force
    read_commit: str | None = None  # the head it was read at: where its secrets and files are read
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
    commit: str  # the commit read (the branch head)
    # The commit that last changed what orbiter acts on (desired.yml, secrets.yml, files desired.yml
    # names), never one of orbiter's write-backs: what status and current.yml say is applied.
    applied: str = ""
    digest: str  # of what orbiter acts on, so a commit that changes only current.yml is recognised
    orb: Orb | None = None
    subject: str = ""  # the commit message's first line
    rejected: Rejected | None = None


class WriteBackInput(Model):
    repo: RepoRef
    # The activity renders current.yml: YAML of a thousand nodes takes a second of CPU, too long
    # for a workflow task. `current_yaml` is the text itself (scheduled before `status` existed).
    status: OrbStatus | None = None
    current_yaml: str = ""
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

    commit: str | None  # the commit the poll found at the branch head (a user's, never a write-back)
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
