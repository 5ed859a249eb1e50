"""A Kubernetes machine's NodeSpec: containerd, kubelet/kubeadm/kubectl held at their versions,
the kernel settings kubeadm checks, and keepalived on control planes that carry a VIP."""

import zlib

from pydantic import Field

from orbiter.models.base import Model
from orbiter.models.nodespec import AptSource, FileSpec, NodeSpec, Package, UnitSpec

from .kubeadm_config import bind_port
from .spec import CONTROL_PLANE, KubernetesCluster, Role
from .versions import parse_minor, repository

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
KERNEL_MODULES = ["overlay", "br_netfilter"]
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}
# The pause image kubeadm expects per minor; containerd must use the same, or kubeadm warns and
# the runtime may garbage-collect the image kubeadm pulled.
PAUSE = {29: "3.9", 30: "3.9", 31: "3.10", 32: "3.10", 33: "3.10"}


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
