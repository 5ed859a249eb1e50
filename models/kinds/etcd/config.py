"""An etcd member's configuration and NodeSpec, computed purely from desired.yml and its join facts."""

from orbiter.models.nodespec import AptSource, FileSpec, NodeSpec, Package, UnitSpec

from .messages import (
    CONFIG_FILE,
    DATA_DIR,
    PKI_DIR,
    ca_cert_secret,
    member_cert_secret,
    member_key_secret,
)
from .spec import EtcdCluster

PACKAGES = ("etcd-server", "etcd-client")
UNIT = "etcd.service"
PEER_PORT, CLIENT_PORT = 2380, 2379
CA_FILE, CERT_FILE, KEY_FILE = f"{PKI_DIR}/ca.crt", f"{PKI_DIR}/member.crt", f"{PKI_DIR}/member.key"
_FLAG_ENV = {
    "heartbeat_interval": "ETCD_HEARTBEAT_INTERVAL",
    "election_timeout": "ETCD_ELECTION_TIMEOUT",
    "snapshot_count": "ETCD_SNAPSHOT_COUNT",
    "quota_backend_bytes": "ETCD_QUOTA_BACKEND_BYTES",
    "auto_compaction_retention": "ETCD_AUTO_COMPACTION_RETENTION",
}


def scheme(tls: bool) -> str:
    return "https" if tls else "http"


def peer_url(ip: str, tls: bool) -> str:
    return f"{scheme(tls)}://{ip}:{PEER_PORT}"


def client_url(ip: str, tls: bool) -> str:
    return f"{scheme(tls)}://{ip}:{CLIENT_PORT}"


def initial_cluster(members: list[tuple[str, str]], tls: bool) -> str:
    """ "name=peerURL,..." from (name, ip) pairs."""
    return ",".join(f"{name}={peer_url(ip, tls)}" for name, ip in members)


def config(cluster: str, spec: EtcdCluster, name: str, ip: str, initial: str, state: str) -> str:
    """/etc/default/etcd. INITIAL_* values are fixed at join time, so scaling never restarts a member."""
    tls = spec.tls
    lines = [
        "# managed by orbiter",
        f"ETCD_NAME={name}",
        f"ETCD_DATA_DIR={DATA_DIR}",
        f"ETCD_LISTEN_PEER_URLS={peer_url(ip, tls)}",
        f"ETCD_LISTEN_CLIENT_URLS={client_url(ip, tls)},{scheme(tls)}://127.0.0.1:{CLIENT_PORT}",
        f"ETCD_INITIAL_ADVERTISE_PEER_URLS={peer_url(ip, tls)}",
        f"ETCD_ADVERTISE_CLIENT_URLS={client_url(ip, tls)}",
        f"ETCD_INITIAL_CLUSTER={initial}",
        f"ETCD_INITIAL_CLUSTER_STATE={state}",
        f"ETCD_INITIAL_CLUSTER_TOKEN={cluster}",
    ]
    if tls:
        lines += [
            f"ETCD_CERT_FILE={CERT_FILE}",
            f"ETCD_KEY_FILE={KEY_FILE}",
            f"ETCD_TRUSTED_CA_FILE={CA_FILE}",
            "ETCD_CLIENT_CERT_AUTH=true",
            f"ETCD_PEER_CERT_FILE={CERT_FILE}",
            f"ETCD_PEER_KEY_FILE={KEY_FILE}",
            f"ETCD_PEER_TRUSTED_CA_FILE={CA_FILE}",
            "ETCD_PEER_CLIENT_CERT_AUTH=true",
        ]
    for field, env in _FLAG_ENV.items():
        value = getattr(spec.flags, field)
        if value is not None:
            lines.append(f"{env}={value}")
    return "\n".join(lines) + "\n"


def member_spec(
    cluster: str,
    spec: EtcdCluster,
    name: str,
    ip: str,
    initial: str,
    state: str,
    versions: dict[str, str],
    apt_source: str | None,
) -> NodeSpec:
    """Everything one member machine needs; the node agent converges it."""
    files = [FileSpec(path=CONFIG_FILE, content=config(cluster, spec, name, ip, initial, state))]
    if spec.tls:
        files += [
            FileSpec(path=CA_FILE, content="", content_secret=ca_cert_secret(cluster)),
            FileSpec(path=CERT_FILE, content="", content_secret=member_cert_secret(cluster, name)),
            FileSpec(
                path=KEY_FILE,
                content="",
                mode="0600",
                owner="etcd",
                group="etcd",
                content_secret=member_key_secret(cluster, name),
            ),
        ]
    return NodeSpec(
        hostname=name,
        apt_sources=[AptSource(name="orbiter", line=apt_source)] if apt_source else [],
        packages=[Package(name=p, version=versions[p], hold=True) for p in PACKAGES],
        files=files,
        units=[UnitSpec(name=UNIT, restart_on=[f.path for f in files] + ["etcd-server"])],
    )
