"""The kubernetes cluster kind, driven with kubeadm: control planes and worker groups."""

from orbiter.agent import plan as agent_plan
from orbiter.models.kinds.base import Kind, Leftovers

from . import node
from .messages import CONFIG_DIR, KUBE_DIR
from .spec import K8sMember, KubernetesCluster, KubernetesState

KIND = Kind(
    name="kubernetes",
    spec=KubernetesCluster,
    state=KubernetesState,
    member=K8sMember,
    leaves=Leftovers(
        units=("kubelet.service", "containerd.service", "keepalived.service"),
        files=(KUBE_DIR, node.CONTAINERD_CONFIG, node.KEEPALIVED_CONFIG, node.KEEPALIVED_CHECK, node.KEEPALIVED_DROPIN,
               CONFIG_DIR, agent_plan.SYSCTL_CONF, agent_plan.MODULES_CONF, agent_plan.apt_source_path("kubernetes"),
               agent_plan.apt_source_path("orbiter")),
        packages=(*node.KUBE_PACKAGES, node.CONTAINERD, node.KEEPALIVED_PACKAGES[0]),
        data_dirs=("/var/lib/kubelet", "/var/lib/etcd"),
    ),
    runbook="orbiter.workflows.kinds.kubernetes:KubernetesRunbook",
    activities="orbiter.activities.kinds.kubernetes:ACTIVITIES",
    commands=frozenset({"replace", "reboot"}),
)
