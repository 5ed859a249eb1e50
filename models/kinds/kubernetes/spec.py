"""Kubernetes in desired.yml, and the state its ClusterWorkflow keeps."""

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from orbiter.models.base import Spec
from orbiter.models.duration import Duration
from orbiter.models.kinds.base import KindProblem, KindSpec, KindState, MemberBase, PoolRef, PortRule
from orbiter.models.names import Name, ipv4
from orbiter.models.providers import ProviderSpec
from orbiter.models.updates import VersionChoice, one_step

Role = Literal["control-plane", "worker"]
CONTROL_PLANE: Role = "control-plane"
WORKER: Role = "worker"
CONTROL_PLANE_GROUP = "controlPlane"


class ControlPlaneRef(PoolRef):
    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: int) -> int:
        if value not in (1, 3, 5):
            raise ValueError("must be 1, 3 or 5")
        return value


class Networking(Spec):
    network: Literal["calico", "cilium"] = "calico"
    pod_cidr: StrictStr = Field("10.244.0.0/16", alias="podCidr")
    service_cidr: StrictStr = Field("10.96.0.0/12", alias="serviceCidr")
    dns_domain: StrictStr = Field("cluster.local", alias="dnsDomain")

    @field_validator("pod_cidr", "service_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            raise ValueError(f"{value!r} is not a network like 10.96.0.0/12 ({err})") from None
        return value


class Upgrade(Spec):
    max_unavailable: Annotated[StrictInt, Field(ge=1)] = Field(1, alias="maxUnavailable")
    drain_timeout: Duration = Field("5m", alias="drainTimeout")


class ControlPlaneEndpoint(Spec):
    vip: StrictStr | None = None
    host: StrictStr | None = None
    # A TCP load balancer the control planes' provider creates; its address becomes the endpoint.
    load_balancer: StrictBool = Field(False, alias="loadBalancer")
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = 6443

    @model_validator(mode="after")
    def _one_of(self) -> "ControlPlaneEndpoint":
        if [self.vip is not None, self.host is not None, self.load_balancer].count(True) != 1:
            raise ValueError("give one of vip (keepalived on the control planes), host (a load balancer you run)"
                             " or loadBalancer: true (one the provider creates)")
        if self.vip is not None:
            ipv4(self.vip)
        if self.load_balancer and self.port != 6443:
            raise ValueError("port: a load balancer the provider creates forwards the API servers' port 6443")
        return self


class Packages(Spec):
    repository: StrictStr | None = None  # default: pkgs.k8s.io for the version's minor
    container_runtime: Literal["containerd"] = Field("containerd", alias="containerRuntime")


class Cni(Spec):
    manifest: StrictStr | None = None


class KubernetesCluster(KindSpec):
    kind: Literal["kubernetes"]
    version: Annotated[StrictStr, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    control_plane: ControlPlaneRef = Field(alias="controlPlane")
    workers: dict[Name, PoolRef] = {}
    networking: Networking = Networking()
    upgrade: Upgrade = Upgrade()
    control_plane_endpoint: ControlPlaneEndpoint | None = Field(None, alias="controlPlaneEndpoint")
    packages: Packages = Packages()
    cni: Cni = Cni()

    @model_validator(mode="after")
    def _endpoint(self) -> "KubernetesCluster":
        if self.control_plane.nodes > 1 and self.control_plane_endpoint is None:
            # "field: message" lets load.py name the missing field instead of the whole cluster.
            raise ValueError(
                f"controlPlaneEndpoint: required with {self.control_plane.nodes} control planes:"
                " add {vip: IP} (keepalived), {host: NAME, port: 6443} (a load balancer you run) or"
                " {loadBalancer: true} (one the provider creates)"
            )
        return self



    def repo_files(self) -> list[str]:
        manifest = self.cni.manifest
        return [manifest.lstrip("/")] if manifest and not manifest.startswith(("https://", "http://")) else []

    def pools(self) -> list[tuple[tuple[str, ...], PoolRef]]:
        refs: list[tuple[tuple[str, ...], PoolRef]] = [(("controlPlane",), self.control_plane)]
        return refs + [(("workers", group), ref) for group, ref in self.workers.items()]

    def groups(self) -> list[tuple[str, PoolRef]]:
        """The control plane and each worker group, the control plane first."""
        return [(CONTROL_PLANE_GROUP, self.control_plane), *self.workers.items()]

    def problems(self, providers: dict[str, ProviderSpec]) -> list[KindProblem]:
        endpoint = self.control_plane_endpoint
        provider = providers.get(self.control_plane.provider)
        if endpoint and endpoint.vip and provider is not None and not provider.can("vip"):
            return [KindProblem(("controlPlaneEndpoint", "vip"),
                                f"provider {self.control_plane.provider} cannot carry a keepalived VIP;"
                                " use loadBalancer: true (or host: a load balancer you run)")]
        if endpoint and endpoint.load_balancer and provider is not None and not provider.can("load-balancer"):
            return [KindProblem(("controlPlaneEndpoint", "loadBalancer"),
                                f"provider {self.control_plane.provider} creates no load balancer;"
                                " use vip (keepalived) or host (a load balancer you run)")]
        return []

    def load_balanced(self) -> bool:
        """Whether the control planes' provider puts a load balancer in front of them."""
        return bool(self.control_plane_endpoint and self.control_plane_endpoint.load_balancer)

    def member_ports(self) -> list[PortRule]:
        cni = {
            "calico": [PortRule(ports=["179", "5473"], why="calico BGP and typha"),
                       PortRule(protocol="udp", ports=["4789"], why="calico VXLAN"),
                       PortRule(protocol="ipip", why="calico IP-in-IP")],
            "cilium": [PortRule(protocol="udp", ports=["8472"], why="cilium VXLAN"),
                       PortRule(ports=["4240"], why="cilium health")],
        }[self.networking.network]
        return [PortRule(ports=["6443", "10250", "2379-2380"], why="API servers, kubelets, stacked etcd"),
                PortRule(ports=["30000-32767"], why="node ports"), *cni]

    def member_role(self, path: tuple[str, ...]) -> tuple[str, str | None]:
        return (CONTROL_PLANE, CONTROL_PLANE_GROUP) if path[0] == "controlPlane" else (WORKER, path[1])

    def summary(self) -> str:
        return f"kubernetes {self.version}"

    def current_version(self) -> str | None:
        return self.version

    def version_package(self) -> str | None:
        return "kubeadm"  # kubeadm decides what a control plane may move to

    def choose_versions(self, offered: list[str]) -> VersionChoice:
        """kubeadm's skew rules: a control plane moves one minor at a time, within its major, never
        down (not even a patch); the kubelets follow it in the same upgrade."""
        return one_step(self.version, offered, prefix="v")


class K8sMember(MemberBase):
    version: str | None = None  # the Kubernetes version it runs, once joined
    apt: dict[str, str] = {}  # kubelet/kubeadm/kubectl -> the apt version it runs, moved one by one on upgrade
    ca_cert_hash: str | None = None  # the discovery pin, known to every joined control plane
    endpoint: str | None = None  # the API endpoint the cluster was created with (first control plane)
    interface: str | None = None  # where keepalived puts the VIP (control planes with a VIP)
    prefix: int | None = None
    reboot_from: str | None = None  # the boot id an `orbiter reboot` ends; recorded before it starts


class KubernetesState(KindState):
    kind: Literal["kubernetes"] = "kubernetes"
    members: list[K8sMember] = []
    cni: str | None = None  # the manifest last applied
    # The address of the load balancer the provider made for the API: the endpoint from kubeadm init on.
    load_balancer: str | None = None
    cni_digest: str | None = None  # of a repository manifest: applied again when its content changes
