"""The etcd cluster kind: a quorum of equal members on one pool."""

from orbiter.models.kinds.base import Kind, Leftovers

from .config import PACKAGES, UNIT
from .messages import CONFIG_FILE, DATA_DIR, PKI_DIR
from .spec import EtcdCluster, EtcdMember, EtcdState

KIND = Kind(
    name="etcd",
    spec=EtcdCluster,
    state=EtcdState,
    member=EtcdMember,
    leaves=Leftovers(units=(UNIT,), files=(CONFIG_FILE, PKI_DIR), packages=PACKAGES, data_dirs=(DATA_DIR,)),
    runbook="orbiter.workflows.kinds.etcd:EtcdRunbook",
    activities="orbiter.activities.kinds.etcd:ACTIVITIES",
)
