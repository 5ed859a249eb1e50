"""Kubernetes with kubeadm, planned purely: kubeadm configs, each machine's NodeSpec, upgrade paths, phases.

Secrets and Temporal history: bootstrap tokens and certificate keys must never be in a workflow's
inputs or results. The configs are rendered with markers (`{{TOKEN}}`, `{{CERT_KEY}}`) where a
secret goes; the workflow passes the rendered text, and the activity that runs kubeadm on the
machine creates (or reads) the secret values, calls `fill()` and writes the file just before
kubeadm reads it, then deletes it. The discovery CA hash is a public-key pin, not a secret, and
is always set: orbiter never writes `unsafeSkipCAVerification`.

Resuming: `plan()` is a function of observed state only, so after a crash the workflow plans
again and finds the remaining phases; nothing in it depends on what a previous run did.
"""

import re
import zlib
from collections.abc import Iterable
from typing import Any, Literal

import yaml
from pydantic import Field

from orbiter.models.base import Model
from orbiter.models.current import NodeStatus
from orbiter.models.desired import KubernetesCluster, PoolRef
from orbiter.models.nodespec import AptSource, FileSpec, NodeSpec, Package, UnitSpec

from . import kubeadm_api

Role = Literal["control-plane", "worker"]
CONTROL_PLANE: Role = "control-plane"
WORKER: Role = "worker"

API_PORT = 6443
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
KUBE_PACKAGES = ("kubelet", "kubeadm", "kubectl")
CONTAINERD = "containerd"
KEEPALIVED_PACKAGES = ("keepalived", "curl")  # curl: the API server health check
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
KEEPALIVED_CONFIG = "/etc/keepalived/keepalived.conf"
KEEPALIVED_CHECK = "/etc/keepalived/check_apiserver.sh"
# Debian's unit does not restart keepalived: a killed one would leave its VIP behind while another
# machine takes it too, until the node agent's next round.
KEEPALIVED_DROPIN = "/etc/systemd/system/keepalived.service.d/orbiter.conf"
KEEPALIVED_DROPIN_TEXT = "# managed by orbiter\n[Service]\nRestart=always\nRestartSec=2\n"
KEYRING = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
KERNEL_MODULES = ["overlay", "br_netfilter"]
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}
# The pause image kubeadm expects per minor; containerd must use the same, or kubeadm warns and
# the runtime may garbage-collect the image kubeadm pulled.
PAUSE = {29: "3.9", 30: "3.9", 31: "3.10", 32: "3.10", 33: "3.10"}

# Secret markers, filled by the activity on the machine (see the module docstring).
TOKEN = "{{TOKEN}}"
CERT_KEY = "{{CERT_KEY}}"
_SECRET_FORMAT = {
    "TOKEN": re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$"),  # kubeadm's bootstrap token format
    "CERT_KEY": re.compile(r"^[a-f0-9]{64}$"),  # hex AES-256 key, as upload-certs prints it
}
_MARKER = re.compile(r"\{\{([A-Z_]+)\}\}")
INIT_TOKEN_TTL = "15m"  # the init token is deleted after init; the TTL bounds a crash in between
INIT_TOKEN_DESCRIPTION = "orbiter: kubeadm init of "  # how the init token is found to delete it


# --- versions -----------------------------------------------------------------------------------


def parse_version(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of "v1.31.2", "1.31.2" or an apt version such as "1.31.2-1.1"."""
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+~].*)?$", version)
    if not m:
        raise ValueError(f"{version!r} is not a Kubernetes version like v1.31.2")
    major, minor, patch = (int(g) for g in m.groups())
    return major, minor, patch


def _v(version: tuple[int, int, int]) -> str:
    return "v{}.{}.{}".format(*version)


def parse_minor(version: str) -> tuple[int, int]:
    """(major, minor) of a version or of a minor's pattern such as "1.30.*" (an upgrade hop's packages)."""
    m = re.match(r"^v?(\d+)\.(\d+)\.(?:\d+|\*)", version)
    if not m:
        raise ValueError(f"{version!r} is not a Kubernetes version like v1.31.2")
    return int(m.group(1)), int(m.group(2))


def intermediate_minors(current: str, desired: str) -> list[str]:
    """Package patterns ("1.30.*") of the minors an upgrade passes through before `desired`'s.

    Which patch of a minor the repository offers is known only to the repository: the caller
    resolves each pattern to an exact version before upgrading to it.
    """
    refused = check_skew(current, desired)
    if refused:
        raise ValueError(refused)
    have, want = parse_version(current), parse_version(desired)
    return [f"{want[0]}.{minor}.*" for minor in range(have[1] + 1, want[1])]


def kubeadm_api_version(k8s_version: str) -> str:
    """The kubeadm config API this Kubernetes reads best: v1beta4 from 1.31, v1beta3 for 1.22-1.30."""
    major, minor, _ = parse_version(k8s_version)
    if (major, minor) < (1, 22):
        raise ValueError(f"Kubernetes {k8s_version} is too old: orbiter supports 1.22 and later")
    return "v1beta4" if (major, minor) >= (1, 31) else "v1beta3"


def default_repository(version: str) -> str:
    """The upstream apt line for the version's minor (pkgs.k8s.io has one repository per minor)."""
    major, minor = parse_minor(version)
    return f"deb [signed-by={KEYRING}] https://pkgs.k8s.io/core:/stable:/v{major}.{minor}/deb/ /"


def repository(spec: KubernetesCluster, version: str | None = None) -> str:
    """packages.repository when set, else upstream for `version` (an upgrade hop) or spec.version."""
    return spec.packages.repository or default_repository(version or spec.version)


def check_skew(current: str, desired: str) -> str | None:
    """Why going from `current` to `desired` is refused, or None. Upgrades across minors are allowed:
    upgrade_path() splits them into one-minor hops."""
    have, want = parse_version(current), parse_version(desired)
    if have[0] != want[0]:
        return f"upgrade from {_v(have)} to {_v(want)} changes the major version: not supported"
    if want[1] < have[1]:
        return f"downgrade from {_v(have)} to {_v(want)} crosses a minor version: not supported"
    if want < have:
        return (
            f"downgrade from {_v(have)} to {_v(want)}: kubeadm cannot downgrade a control plane,"
            " not even a patch release: not supported"
        )
    return None


def upgrade_path(current: str, desired: str, available: Iterable[str] = ()) -> list[str]:
    """The versions to upgrade through, one minor at a time, ending at `desired`.

    Each intermediate minor goes to its highest patch among `available` (versions the package
    repository offers, e.g. "1.30.6-1.1"): patch versions cannot be known offline.
    """
    refused = check_skew(current, desired)
    if refused:
        raise ValueError(refused)
    have, want = parse_version(current), parse_version(desired)
    if have == want:
        return []
    known = [parse_version(v) for v in available]
    path: list[str] = []
    for minor in range(have[1] + 1, want[1]):
        patches = [v for v in known if v[:2] == (want[0], minor)]
        if not patches:
            raise ValueError(
                f"upgrade from {_v(have)} to {_v(want)} goes through v{want[0]}.{minor},"
                f" but the package repository offers no v{want[0]}.{minor} version"
            )
        path.append(_v(max(patches)))
    return path + [_v(want)]


# --- kubeadm configuration ------------------------------------------------------------------------


def fill(text: str, values: dict[str, str]) -> str:
    """Put secret values in place of their markers, in the activity, just before kubeadm reads the file.

    Values are checked against their format so a value can never break out of its YAML string.
    """
    for name, value in values.items():
        pattern = _SECRET_FORMAT.get(name)
        if pattern is None:
            raise ValueError(f"unknown marker {name}")
        if not pattern.match(value):
            raise ValueError(f"the value for {name} does not have the expected format")
        text = text.replace("{{" + name + "}}", value)
    left = sorted(set(_MARKER.findall(text)))
    if left:
        raise ValueError(f"markers left unfilled: {', '.join(left)}")
    return text


def markers(text: str) -> list[str]:
    """The secret markers a rendered config still needs filled."""
    return sorted(set(_MARKER.findall(text)))


def _args(api: str, args: dict[str, str]) -> Any:
    # v1beta3 extra args are a map; v1beta4 a list of {name, value} (duplicates allowed).
    if api == "v1beta3":
        return dict(args)
    return [{"name": k, "value": v} for k, v in args.items()]


def _node_registration(api: str, node_name: str, node_ip: str) -> dict[str, Any]:
    return {
        "name": node_name,
        "criSocket": CRI_SOCKET,
        "kubeletExtraArgs": _args(api, {"node-ip": node_ip}),
    }


def endpoint(spec: KubernetesCluster, first_control_plane_ip: str) -> str:
    """host:port of the API every node uses: the VIP or load balancer, else the single control plane."""
    cpe = spec.control_plane_endpoint
    if cpe is None:
        return f"{first_control_plane_ip}:{API_PORT}"
    return f"{cpe.vip or cpe.host}:{cpe.port}"


def bind_port(spec: KubernetesCluster) -> int:
    """The API server's local port. With a VIP clients reach it directly, so it is the endpoint's port."""
    cpe = spec.control_plane_endpoint
    return cpe.port if cpe is not None and cpe.vip is not None else API_PORT


def _dump(documents: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False)


def init_documents(
    cluster: str,
    spec: KubernetesCluster,
    node_name: str,
    node_ip: str,
    api_endpoint: str,
    control_plane_ips: Iterable[str] = (),
    upload_certs: bool = False,
) -> list[dict[str, Any]]:
    """The documents of `kubeadm init --config`, as data (see init_config)."""
    api = kubeadm_api_version(spec.version)
    group = f"{kubeadm_api.KUBEADM_GROUP}/{api}"
    init: dict[str, Any] = {
        "apiVersion": group,
        "kind": "InitConfiguration",
        # An orbiter-made, short-lived token instead of kubeadm's default 24h one; the activity
        # deletes it after init. Joins use their own tokens.
        "bootstrapTokens": [
            {
                "token": TOKEN,
                "description": f"{INIT_TOKEN_DESCRIPTION}{cluster}",
                "ttl": INIT_TOKEN_TTL,
                "usages": ["signing", "authentication"],
                "groups": ["system:bootstrappers:kubeadm:default-node-token"],
            }
        ],
        "nodeRegistration": _node_registration(api, node_name, node_ip),
        "localAPIEndpoint": {"advertiseAddress": node_ip, "bindPort": bind_port(spec)},
    }
    if upload_certs:
        init["certificateKey"] = CERT_KEY
    host = api_endpoint.rsplit(":", 1)[0]
    sans = [host] + [ip for ip in dict.fromkeys([node_ip, *control_plane_ips]) if ip != host]
    net = spec.networking
    cluster_config = {
        "apiVersion": group,
        "kind": "ClusterConfiguration",
        "clusterName": cluster,
        "kubernetesVersion": spec.version,
        "controlPlaneEndpoint": api_endpoint,
        "networking": {
            "podSubnet": net.pod_cidr,
            "serviceSubnet": net.service_cidr,
            "dnsDomain": net.dns_domain,
        },
        "apiServer": {"certSANs": sans},
    }
    kubelet = {"apiVersion": kubeadm_api.KUBELET_API, "kind": "KubeletConfiguration", "cgroupDriver": "systemd"}
    return [init, cluster_config, kubelet]


def init_config(
    cluster: str,
    spec: KubernetesCluster,
    node_name: str,
    node_ip: str,
    api_endpoint: str,
    control_plane_ips: Iterable[str] = (),
    upload_certs: bool = False,
) -> str:
    """Multi-document YAML for `kubeadm init --config` on the first control plane.

    Carries the {{TOKEN}} marker, and {{CERT_KEY}} with `upload_certs` (further control planes
    will join with `kubeadm init phase upload-certs`' key); fill() them in the activity.
    """
    return _dump(init_documents(cluster, spec, node_name, node_ip, api_endpoint, control_plane_ips, upload_certs))


def join_documents(
    spec: KubernetesCluster,
    node_name: str,
    node_ip: str,
    api_endpoint: str,
    ca_cert_hash: str,
    control_plane: bool = False,
) -> list[dict[str, Any]]:
    """The documents of `kubeadm join --config`, as data (see join_config)."""
    if not re.match(r"^sha256:[a-f0-9]{64}$", ca_cert_hash):
        raise ValueError("the discovery CA hash must look like sha256:<64 hex digits>: it is always checked")
    api = kubeadm_api_version(spec.version)
    join: dict[str, Any] = {
        "apiVersion": f"{kubeadm_api.KUBEADM_GROUP}/{api}",
        "kind": "JoinConfiguration",
        "discovery": {
            "bootstrapToken": {"apiServerEndpoint": api_endpoint, "token": TOKEN, "caCertHashes": [ca_cert_hash]},
        },
        "nodeRegistration": _node_registration(api, node_name, node_ip),
    }
    if control_plane:
        join["controlPlane"] = {
            "localAPIEndpoint": {"advertiseAddress": node_ip, "bindPort": bind_port(spec)},
            "certificateKey": CERT_KEY,
        }
    return [join]


def join_config(
    spec: KubernetesCluster,
    node_name: str,
    node_ip: str,
    api_endpoint: str,
    ca_cert_hash: str,
    control_plane: bool = False,
) -> str:
    """YAML for `kubeadm join --config`: token discovery pinned to the cluster CA.

    Carries {{TOKEN}} and, for a control plane, {{CERT_KEY}}; fill() them in the activity.
    """
    return _dump(join_documents(spec, node_name, node_ip, api_endpoint, ca_cert_hash, control_plane))


# --- node software ----------------------------------------------------------------------------------


class Keepalived(Model):
    """One control plane's VRRP settings, known from the provider; the VIP itself is in desired.yml."""

    interface: str  # the interface that carries the VIP, e.g. "eth0"
    ip: str  # this machine's address: the unicast source
    peers: list[str] = []  # the other control planes' addresses (unicast works where multicast is filtered)
    position: int = Field(ge=0)  # index among the control planes: the first gets the highest priority
    router_id: int = Field(ge=1, le=255)  # virtual_router_id, see virtual_router_id()
    prefix: int = Field(32, ge=1, le=32)


def virtual_router_id(cluster: str) -> int:
    """A stable VRRP router id per cluster, so two clusters on one network do not fight over a VIP."""
    return zlib.crc32(cluster.encode()) % 255 + 1


def packages_for(role: Role, vip: bool) -> list[str]:
    """The packages whose exact apt versions node_spec() needs, so the caller can resolve them."""
    names = [CONTAINERD, *KUBE_PACKAGES]
    if role == CONTROL_PLANE and vip:
        names += KEEPALIVED_PACKAGES
    return names


def containerd_config(pause: str | None) -> str:
    """containerd with the systemd cgroup driver, as kubelet (cgroupDriver: systemd) expects."""
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    lines = ["# managed by orbiter", "version = 2", "", cri]
    if pause:
        lines.append(f'  sandbox_image = "registry.k8s.io/pause:{pause}"')
    lines += [
        "",
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '  runtime_type = "io.containerd.runc.v2"',
        "",
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        "  SystemdCgroup = true",
    ]
    return "\n".join(lines) + "\n"


def keepalived_config(machine: str, vip: str, k: Keepalived) -> str:
    """One VRRP instance for the VIP, held only where the local API server answers /healthz."""
    peers = "".join(f"        {p}\n" for p in k.peers)
    # Without peers (one control plane) keepalived keeps to multicast: no empty unicast block.
    unicast = f"    unicast_src_ip {k.ip}\n    unicast_peer {{\n{peers}    }}\n" if k.peers else ""
    return f"""# managed by orbiter
global_defs {{
    router_id {machine}
    script_user root
    enable_script_security
}}

vrrp_script check_apiserver {{
    script "{KEEPALIVED_CHECK}"
    interval 3
    timeout 5
    fall 3
    rise 2
}}

vrrp_instance kube_api {{
    state BACKUP
    nopreempt
    interface {k.interface}
    virtual_router_id {k.router_id}
    priority {max(1, 150 - 10 * k.position)}
    advert_int 1
{unicast}    virtual_ipaddress {{
        {vip}/{k.prefix} dev {k.interface}
    }}
    track_script {{
        check_apiserver
    }}
}}
"""


def keepalived_check(port: int) -> str:
    """keepalived's health check: the local API server answers /healthz (anonymous by default)."""
    return f"""#!/bin/sh
# managed by orbiter: the VIP stays only where the local API server is healthy
exec curl -sfk --max-time 2 -o /dev/null https://localhost:{port}/healthz
"""


def _version(versions: dict[str, str], package: str) -> str:
    try:
        return versions[package]
    except KeyError:
        raise ValueError(f"no apt version given for package {package}") from None


def node_spec(
    spec: KubernetesCluster,
    machine: str,
    role: Role,
    versions: dict[str, str],
    apt_sources: list[AptSource] | None = None,
    vip: Keepalived | None = None,
    joined: bool = False,
) -> NodeSpec:
    """Everything one machine needs before and after kubeadm; the node agent converges it.

    kubelet.service is only asserted once the node has joined (`joined`): before kubeadm writes its
    configuration the packaged kubelet crash-loops by design, and kubeadm itself restarts it. After
    joining the agent keeps it enabled and running, and restarts it when the kubelet package changes
    (the upgrade's "restart" step). `versions` maps each packages_for() name to its exact apt version;
    without `apt_sources` the upstream repository of the kubeadm package's minor is used.
    """
    cpe = spec.control_plane_endpoint
    address = cpe.vip if role == CONTROL_PLANE and cpe is not None else None
    if address is not None and vip is None:
        raise ValueError(f"{machine}: controlPlaneEndpoint.vip is set: give the keepalived settings")
    if vip is not None and address is None:
        raise ValueError(f"{machine}: keepalived settings given but this {role} carries no VIP")
    kubeadm_version = _version(versions, "kubeadm")
    minor = parse_minor(kubeadm_version)[1]
    if apt_sources is None:
        apt_sources = [AptSource(name="kubernetes", line=repository(spec, kubeadm_version))]
    packages = [Package(name=CONTAINERD, version=_version(versions, CONTAINERD), hold=True)]
    packages += [Package(name=p, version=_version(versions, p), hold=True) for p in KUBE_PACKAGES]
    files = [FileSpec(path=CONTAINERD_CONFIG, content=containerd_config(PAUSE.get(minor)))]
    units = [UnitSpec(name="containerd.service", restart_on=[CONTAINERD_CONFIG, CONTAINERD])]
    if joined:
        units.append(UnitSpec(name="kubelet.service", restart_on=["kubelet"]))
    if address is not None and vip is not None:
        port = bind_port(spec)
        packages += [Package(name=p, version=_version(versions, p)) for p in KEEPALIVED_PACKAGES]
        files += [
            FileSpec(path=KEEPALIVED_CONFIG, content=keepalived_config(machine, address, vip), mode="0640"),
            FileSpec(path=KEEPALIVED_CHECK, content=keepalived_check(port), mode="0755"),
            FileSpec(path=KEEPALIVED_DROPIN, content=KEEPALIVED_DROPIN_TEXT),
        ]
        restart = [KEEPALIVED_CONFIG, KEEPALIVED_CHECK, KEEPALIVED_DROPIN, "keepalived"]
        units.append(UnitSpec(name="keepalived.service", restart_on=restart))
    return NodeSpec(
        hostname=machine,
        apt_sources=apt_sources,
        packages=packages,
        files=files,
        units=units,
        sysctls=dict(SYSCTLS),
        kernel_modules=list(KERNEL_MODULES),
        swap_off=True,
    )


# --- reconcile plan -----------------------------------------------------------------------------

PhaseAction = Literal[
    "provision",
    "uncordon",
    "init",
    "join-control-plane",
    "join-workers",
    "upgrade-apply",
    "upgrade-node",
    "upgrade-workers",
    "remove-worker",
    "remove-control-plane",
    "blocked",
]


class Phase(Model):
    """One step of a reconcile; the workflow health-gates after each and plans again after a crash."""

    action: PhaseAction
    machines: list[str] = []
    version: str | None = None
    detail: str


def quorum(members: int) -> int:
    """etcd's majority: kubeadm runs one etcd member per control plane."""
    return members // 2 + 1


def _joined(n: NodeStatus) -> bool:
    return n.version is not None


def _in_pool(n: NodeStatus, ref: PoolRef) -> bool:
    return n.pool == ref.pool and (n.provider is None or n.provider == ref.provider)


def _batches(names: list[str], size: int) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


def _names(names: list[str]) -> str:
    return "[" + ", ".join(names) + "]"


def plan(
    spec: KubernetesCluster,
    nodes: list[NodeStatus],
    available: Iterable[str] = (),
    join_batch: int = 10,
) -> list[Phase]:
    """The phases that take the observed nodes to `spec`.

    `nodes` lists the cluster's machines in pool order (joined ones have a kubelet `version`); the
    end of a pool is removed first. Rules:
    - Not bootstrapped: init on the first control plane, control planes join one at a time, then
      workers in batches of `join_batch`.
    - Any joined node off the desired version: an upgrade plan only, hop by hop (upgrade_path over
      `available`): control planes one at a time (`kubeadm upgrade apply` on the first, `upgrade
      node` on the others), then workers in batches of upgrade.maxUnavailable. Scaling waits for a
      later plan: a machine joining meanwhile would run a kubelet newer than the API server.
    - Otherwise scale: provision missing machines, join control planes one at a time, join workers
      in batches, then remove workers (end of each pool first), then control planes (from the end),
      one at a time and never below etcd quorum of the Ready control planes. Joins come before
      removals so capacity never dips below the smaller of the old and new sizes.
    - Cordoned nodes that no phase drains are uncordoned first (a crash mid-drain leaves none behind).
    """
    cps = [n for n in nodes if n.role == CONTROL_PLANE]
    workers = [n for n in nodes if n.role == WORKER]
    groups = list(spec.workers.items())
    joined = [n for n in nodes if _joined(n)]

    if joined:
        highest = max((n.version for n in joined if n.version), key=parse_version)
        refused = check_skew(highest, spec.version)
        if refused:
            return [Phase(action="blocked", detail=refused)]
        stale = [n for n in joined if parse_version(n.version or "") != parse_version(spec.version)]
        if stale:
            return _uncordon(joined, busy={n.machine for n in stale}) + _upgrade(spec, cps, workers, available)

    phases: list[Phase] = []
    pools = [(("controlPlane",), spec.control_plane, cps)] + [
        (("workers", g), ref, [w for w in workers if _in_pool(w, ref)]) for g, ref in groups
    ]
    for path, ref, have in pools:
        if len(have) < ref.nodes:
            phases.append(
                Phase(
                    action="provision",
                    detail=f"provision {ref.nodes - len(have)} machine(s) for"
                    f" {'.'.join(path)} in pool {ref.pool} of provider {ref.provider}",
                )
            )

    want_cps = cps[: spec.control_plane.nodes]
    if not any(_joined(n) for n in cps):
        if not want_cps:
            return phases
        first = want_cps[0]
        phases.append(
            Phase(action="init", machines=[first.machine], version=spec.version, detail=f"init {first.machine}")
        )
        rest = want_cps[1:]
    else:
        rest = [n for n in want_cps if not _joined(n)]
    for n in rest:
        phases.append(
            Phase(
                action="join-control-plane",
                machines=[n.machine],
                version=spec.version,
                detail=f"join control plane {n.machine}",
            )
        )

    kept: list[NodeStatus] = []
    removed: list[NodeStatus] = []
    for _, ref in groups:
        have = [w for w in workers if _in_pool(w, ref)]
        kept += have[: ref.nodes]
        removed += list(reversed(have[ref.nodes :]))
    # Workers of a group no longer in desired.yml go too, from the end.
    orphans = [w for w in workers if not any(_in_pool(w, ref) for _, ref in groups)]
    removed += list(reversed(orphans))
    new_workers = [w.machine for w in kept if not _joined(w)]
    for batch in _batches(new_workers, max(1, join_batch)):
        phases.append(
            Phase(action="join-workers", machines=batch, version=spec.version, detail=f"join workers {_names(batch)}")
        )

    busy = {n.machine for n in removed}
    phases = _uncordon(joined, busy) + phases
    for w in removed:
        phases.append(Phase(action="remove-worker", machines=[w.machine], detail=f"remove worker {w.machine}"))

    members = [n for n in cps if _joined(n)]
    for n in reversed(cps[spec.control_plane.nodes :]):
        if not _joined(n):
            phases.append(
                Phase(
                    action="remove-control-plane",
                    machines=[n.machine],
                    detail=f"remove control plane {n.machine} (never joined)",
                )
            )
            continue
        # etcd removes a member only with quorum of the current members (the leaving one votes), and
        # the members left must still have quorum among themselves.
        after = [m for m in members if m.machine != n.machine]
        ready_now, ready_after = sum(1 for m in members if m.ready), sum(1 for m in after if m.ready)
        if ready_now < quorum(len(members)) or ready_after < quorum(len(after)):
            phases.append(
                Phase(
                    action="blocked",
                    machines=[n.machine],
                    detail=(
                        f"removing control plane {n.machine} would leave {ready_after} Ready of {len(after)} control"
                        f" planes, below etcd quorum: make the control planes Ready first"
                    ),
                )
            )
            break
        phases.append(
            Phase(action="remove-control-plane", machines=[n.machine], detail=f"remove control plane {n.machine}")
        )
        members = after
    return phases


def _uncordon(joined: list[NodeStatus], busy: set[str]) -> list[Phase]:
    return [
        Phase(action="uncordon", machines=[n.machine], detail=f"uncordon {n.machine}")
        for n in joined
        if n.cordoned and n.machine not in busy
    ]


def _upgrade(
    spec: KubernetesCluster, cps: list[NodeStatus], workers: list[NodeStatus], available: Iterable[str]
) -> list[Phase]:
    joined_cps = [n for n in cps if _joined(n)]
    joined_workers = [n for n in workers if _joined(n)]
    lowest = min((n.version for n in joined_cps + joined_workers if n.version), key=parse_version)
    phases: list[Phase] = []
    versions = {n.machine: parse_version(n.version or "") for n in joined_cps + joined_workers}
    for hop in upgrade_path(lowest, spec.version, available):
        target = parse_version(hop)
        applied = any(versions[n.machine] >= target for n in joined_cps)
        for n in joined_cps:
            if versions[n.machine] >= target:
                continue
            if not applied:
                phases.append(
                    Phase(
                        action="upgrade-apply",
                        machines=[n.machine],
                        version=hop,
                        detail=f"upgrade control plane {n.machine} to {hop} (kubeadm upgrade apply)",
                    )
                )
                applied = True
            else:
                phases.append(
                    Phase(
                        action="upgrade-node",
                        machines=[n.machine],
                        version=hop,
                        detail=f"upgrade control plane {n.machine} to {hop} (kubeadm upgrade node)",
                    )
                )
            versions[n.machine] = target
        stale = [n.machine for n in joined_workers if versions[n.machine] < target]
        for batch in _batches(stale, spec.upgrade.max_unavailable):
            phases.append(
                Phase(
                    action="upgrade-workers",
                    machines=batch,
                    version=hop,
                    detail=f"upgrade workers {_names(batch)} to {hop}",
                )
            )
            for m in batch:
                versions[m] = target
    return phases
