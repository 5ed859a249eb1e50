"""kubeadm's configuration files for init and join, rendered purely.

Secrets and Temporal history: bootstrap tokens and certificate keys must never be in a workflow's
inputs or results. The configs are rendered with markers (`{{TOKEN}}`, `{{CERT_KEY}}`) where a
secret goes; the workflow passes the rendered text, and the activity that runs kubeadm on the
machine creates (or reads) the secret values, calls `fill()` and writes the file just before
kubeadm reads it, then deletes it. The discovery CA hash is a public-key pin, not a secret, and
is always set: orbiter never writes `unsafeSkipCAVerification`.
"""

import re
from collections.abc import Iterable
from typing import Any

import yaml

from . import kubeadm_api
from .spec import KubernetesCluster
from .versions import kubeadm_api_version

API_PORT = 6443
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
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


def endpoint(spec: KubernetesCluster, first_control_plane_ip: str, load_balancer: str | None = None) -> str:
    """host:port of the API every node uses: the VIP or load balancer (the provider's at the address
    it gave), else the single control plane."""
    cpe = spec.control_plane_endpoint
    if cpe is None:
        return f"{first_control_plane_ip}:{API_PORT}"
    if cpe.load_balancer:
        if load_balancer is None:
            raise ValueError("the load balancer's address is not known yet")
        return f"{load_balancer}:{cpe.port}"
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
