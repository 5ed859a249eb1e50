"""Messages of the kubeadm activities (activities/kubeadm.py).

Bootstrap tokens and certificate keys never appear here: configs carry the `{{TOKEN}}` and
`{{CERT_KEY}}` markers of models/kinds/kubernetes.py and the activity fills them on the machine.
"""

from orbiter.models.base import Model
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef

KUBE_DIR = "/etc/kubernetes"
ADMIN_CONF = KUBE_DIR + "/admin.conf"
KUBELET_CONF = KUBE_DIR + "/kubelet.conf"
CA_CERT = KUBE_DIR + "/pki/ca.crt"
CONFIG_DIR = "/etc/orbiter/kubeadm"  # where filled configs live for the length of one kubeadm call
JOIN_TOKEN_TTL = "15m"

# The upstream manifest applied from a control plane when desired.yml names no cni.manifest.
DEFAULT_CNI = {
    "calico": "https://raw.githubusercontent.com/projectcalico/calico/v3.28.2/manifests/calico.yaml",
    "cilium": "https://raw.githubusercontent.com/cilium/cilium/v1.16.3/install/kubernetes/quick-install.yaml",
}


def kubeconfig_secret(cluster: str) -> str:
    return f"{cluster}_kubeconfig"


class KubeTarget(Model):
    """Where kubectl/kubeadm admin commands run: the first control plane of `via` that answers."""

    cluster: str
    via: list[Machine]
    secrets: SecretsRef


class KubeadmInitInput(Model):
    target: KubeTarget  # via[0] is the machine to init
    config: str  # init_config() text with markers


class KubeadmInitResult(Model):
    initialized: bool  # False: admin.conf was already there, init was not run again
    ca_cert_hash: str  # sha256:<hex> of the cluster CA's public key (a pin, not a secret)
    sealed_secrets: dict[str, str] = {}  # <cluster>_kubeconfig, sealed


class KubeadmJoinInput(Model):
    target: KubeTarget  # the control planes that make the token (and the certificate key)
    machine: Machine  # the joining machine
    node: str
    config: str  # join_config() text with markers
    control_plane: bool = False


class KubeadmJoinResult(Model):
    joined: bool  # False: kubelet.conf was already there, the join was not run again


class ApplyCniInput(Model):
    target: KubeTarget
    manifest: str  # an http(s) URL, or a path in the orb's repository (read at target.secrets.commit)
    applied: str | None = None  # the digest of the repository file last applied: unchanged is done


class ApplyCniResult(Model):
    applied: str  # the URL, or the digest of the repository file that was applied


def is_url(manifest: str) -> bool:
    return manifest.startswith(("https://", "http://"))


class K8sNode(Model):
    name: str
    ready: bool
    version: str | None = None
    cordoned: bool = False


class K8sNodesInput(Model):
    target: KubeTarget
    # With wait_ready: poll until each of these nodes is listed and Ready (the health gate).
    wait_ready: list[str] = []
    wait_version: str | None = None  # and, when set, running this kubelet version ("v1.31.2")
    timeout_seconds: float = 180.0
    # With wait_ready, also on each of these control planes (in parallel, one SSH round trip each per
    # poll): the local API server's /readyz answers ok and the local etcd member's /health is true.
    gate_control_planes: list[Machine] = []


class K8sNodesResult(Model):
    nodes: list[K8sNode]


class NodeActionInput(Model):
    target: KubeTarget
    node: str
    timeout_seconds: float = 300.0  # drain timeout


class KubeadmUpgradeInput(Model):
    target: KubeTarget  # the control planes, for `kubectl get --raw /version`
    machine: Machine  # the machine to upgrade; its kubeadm package is already at `version`
    # "v1.31.2", or a minor's pattern "v1.30.*" where only the machine's apt knows the patch (an
    # upgrade hop on static machines): the installed kubeadm's own version is applied then.
    version: str
    apply: bool  # `kubeadm upgrade apply` (the first control plane), else `kubeadm upgrade node`


class KubeadmUpgradeResult(Model):
    version: str  # the version the machine's kubeadm upgraded to, "v1.30.6"


class KubeadmResetInput(Model):
    cluster: str
    machine: Machine
    secrets: SecretsRef
