"""Messages of the etcd activities: certificates and membership, observed with etcdctl."""

from typing import Literal

from orbiter.models.backups import BackupInfo, BackupStoreSpec
from orbiter.models.base import Model
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef

PKI_DIR = "/etc/etcd/pki"
DATA_DIR = "/var/lib/etcd/default"
CONFIG_FILE = "/etc/default/etcd"


def ca_secret(cluster: str) -> str:
    return f"{cluster}_etcd_ca"  # YAML: {cert, key} PEM; during `orbiter rotate-ca` also next: {cert, key} or previous


def member_cert_secret(cluster: str, member: str) -> str:
    return f"{cluster}_etcd_{member}_crt"


def member_key_secret(cluster: str, member: str) -> str:
    return f"{cluster}_etcd_{member}_key"


def ca_cert_secret(cluster: str) -> str:
    return f"{cluster}_etcd_ca_crt"


def client_bundle_secret(cluster: str) -> str:
    return f"{cluster}_etcd_client"  # YAML: {endpoints, ca, cert, key} for etcdctl users


# orbiter rotate-ca, in order: a new CA trusted next to the old one; leaves issued from the new one
# (the old one still trusted); the old one dropped. Each is a no-op once done, so a retry repeats none.
CaStep = Literal["", "add-next", "switch", "drop-previous"]
CA_STEPS: tuple[CaStep, ...] = ("add-next", "switch", "drop-previous")


class MemberAddress(Model):
    name: str
    ip: str


class EnsureCertsInput(Model):
    cluster: str
    members: list[MemberAddress]  # every member that needs a certificate (new and existing)
    endpoints: list[str]  # client URLs for the user's bundle
    secrets: SecretsRef
    validity_seconds: float | None = None  # of new leaves; None: pki's default
    renew_before_seconds: float | None = None  # a leaf this close to expiry is issued again
    ca_step: CaStep = ""  # a step of `orbiter rotate-ca`; "" keeps the CAs as they are


class EnsureCertsResult(Model):
    sealed_secrets: dict[str, str] = {}  # only what was created or changed
    expiry: dict[str, str] = {}  # member -> its certificate's notAfter (ISO 8601, UTC)
    trust_before: str | None = None  # digest of the CAs members trusted before this call (public certificates)
    trust: str | None = None  # and after it: a member still on another one needs a restart


class EtcdTarget(Model):
    """Where etcdctl runs (over SSH on one of `via`, first that answers) and against what."""

    cluster: str
    via: list[Machine]
    endpoints: list[str]
    tls: bool = True
    secrets: SecretsRef


class EtcdMemberInfo(Model):
    id: str  # hex member id
    name: str  # empty while a member is added but not started
    peer_urls: list[str] = []
    client_urls: list[str] = []
    started: bool = False
    learner: bool = False
    healthy: bool | None = None
    leader: bool = False
    db_size: int | None = None
    db_size_in_use: int | None = None
    alarms: list[str] = []  # NOSPACE, CORRUPT
    version: str | None = None


class WaitListeningInput(Model):
    ip: str
    port: int
    timeout_seconds: float = 2.0


class WaitListeningResult(Model):
    listening: bool
    waited_seconds: float


class EtcdStatusInput(Model):
    target: EtcdTarget
    # Poll until every endpoint is healthy and the member count is `expect_members`, or time out.
    wait_healthy: bool = False
    expect_members: int | None = None
    timeout_seconds: float = 120


class EtcdStatusResult(Model):
    members: list[EtcdMemberInfo]
    healthy: bool


class MemberAddInput(Model):
    target: EtcdTarget
    name: str
    peer_url: str
    learner: bool = False  # a replacement joins as a learner: it counts for quorum only once promoted


class MemberAddResult(Model):
    initial_cluster: str  # "n1=https://ip:2380,..." for the new member's configuration


class MemberRemoveInput(Model):
    target: EtcdTarget
    name: str
    peer_url: str  # a member added but never started has no name yet; its peer URL finds it


class EtcdBackupInput(Model):
    """Take backup `backup_id` (derived in the workflow, so a retry writes the same one) from a
    healthy follower of `target`, into `store`, then keep the newest `keep`."""

    target: EtcdTarget
    store: BackupStoreSpec
    orb: str
    backup_id: str
    reason: str
    keep: int = 14


class EtcdRestoreMemberInput(Model):
    """Replace one member's data directory with backup `backup`, once per `restore_id` (a marker
    in the restored directory says it is done)."""

    cluster: str
    orb: str
    machine: Machine
    secrets: SecretsRef
    store: BackupStoreSpec
    backup: BackupInfo
    restore_id: str
    name: str
    peer_url: str
    initial_cluster: str  # every member, "name=peerURL,...": the same names and URLs as before
    token: str  # a new cluster token, so the restored cluster never mixes with the old one
    version: str  # decides etcdctl (3.4) or etcdutl (3.5 and later)


class EtcdRestoreMemberResult(Model):
    restored: bool  # False: the marker showed this member restored already


class EtcdUnitInput(Model):
    """Stop or start etcd on members' machines (all at once: restored members start together)."""

    cluster: str
    machines: list[Machine]
    secrets: SecretsRef
    start: bool


class EtcdSpaceInput(Model):
    """One part of giving etcd its space back: `compact` the history up to the current revision,
    `defrag` the one endpoint of `target`, or `disarm` the alarms."""

    target: EtcdTarget
    what: Literal["compact", "defrag", "disarm"]


class EtcdSpaceResult(Model):
    revision: int | None = None  # compacted to


class MemberPromoteInput(Model):
    """Promote the learner at `peer_url` once it has caught up with the leader (absent or voting: done)."""

    target: EtcdTarget
    name: str
    peer_url: str
    timeout_seconds: float = 300
