"""The Kubernetes health gate of k8s_nodes: each control plane's /readyz and its etcd member's /health.

The parsing is checked here without machines; the gate itself on local machines running the
kubeadm stand-ins (tests/standins): a stacked etcd member per control plane in the stand-in API,
each control plane serving etcd's /health on 127.0.0.1:2381, and a test hook that makes one
member unhealthy.
"""

import base64
import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from orbiter.activities.kinds.kubernetes.admin import ca_cert_hash
from orbiter.activities.kinds.kubernetes.kubeadm import apply_cni, kubeadm_init, kubeadm_join, kubeadm_reset
from orbiter.activities.kinds.kubernetes.nodes import _GATE_SCRIPT, ETCD_HEALTH_URL, _gate_parse, k8s_nodes
from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.ssh import SshSession, connect
from orbiter.models.kinds.kubernetes import kubeadm_config as kcfg
from orbiter.models.kinds.kubernetes.messages import (
    DEFAULT_CNI,
    ApplyCniInput,
    K8sNodesInput,
    KubeadmInitInput,
    KubeadmJoinInput,
    KubeadmResetInput,
    KubeTarget,
)
from orbiter.models.kinds.kubernetes.spec import KubernetesCluster
from orbiter.models.machines import Machine
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.models.secrets import SecretBox

from ..conftest import MASTER_KEY, GitRepo
from ..standins import api_state, install_command, serve_standins, set_etcd_unhealthy
from ..support.net import subnet

PROVIDER = "kgate"
SUBNET = subnet(83)  # the etcd e2e tests use 10.80, the kubernetes e2e tests 10.81
VERSION = "1.31.2"
CLUSTER = "meta"
KEY_NAME = "kgate_maintenancekey"


# -- the check's output, parsed ------------------------------------------------------------------


def lines(readyz: tuple[int, str], etcd: tuple[int, str], port: str = "6443") -> str:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return f"readyz {port} {readyz[0]} {b64(readyz[1])}\netcd - {etcd[0]} {b64(etcd[1])}\n"


HEALTHY = 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{"health":"true","reason":""}'
UNHEALTHY = 'HTTP/1.0 503 Service Unavailable\r\nServer: etcd\r\n\r\n{"health":"false","reason":"RAFT NO LEADER"}'


def test_gate_parse_passes_only_ok_and_a_true_health():
    assert _gate_parse(lines((0, "ok"), (0, HEALTHY))) == []
    assert _gate_parse(lines((0, "ok"), (0, UNHEALTHY))) == [
        f'etcd member not healthy ({ETCD_HEALTH_URL}: HTTP 503 {{"health":"false","reason":"RAFT NO LEADER"}})'
    ]
    # health "true" under a non-200 status, or no JSON, is not healthy either
    assert _gate_parse(lines((0, "ok"), (0, HEALTHY.replace("200 OK", "500 Internal")))) != []
    assert _gate_parse(lines((0, "ok"), (0, "HTTP/1.0 200 OK\r\n\r\nnot json"))) != []


def test_gate_parse_names_the_failed_check_in_one_line():
    refused = "bash: connect: Connection refused\nbash: line 1: /dev/tcp/127.0.0.1/2381: Connection refused"
    [etcd] = _gate_parse(lines((0, "ok"), (1, refused)))
    assert etcd.startswith(f"etcd member not healthy ({ETCD_HEALTH_URL}: bash: connect: Connection refused")
    assert "\n" not in etcd
    failed = _gate_parse(
        lines(
            (1, "Error from server (InternalError): [-]etcd failed: reason withheld\nreadyz check failed"),
            (0, HEALTHY),
            port="8443",
        )
    )
    assert failed == [
        "API server not ready (https://127.0.0.1:8443/readyz: Error from server (InternalError): "
        "[-]etcd failed: reason withheld readyz check failed)"
    ]
    assert _gate_parse(lines((1, ""), (0, HEALTHY))) == [
        "API server not ready (https://127.0.0.1:6443/readyz: kubectl exited with 1)"
    ]
    # No output at all (a shell that ran nothing): both checks fail, neither passes silently.
    assert [f.split(" (")[0] for f in _gate_parse("")] == ["API server not ready", "etcd member not healthy"]


def test_gate_control_planes_defaults_to_none():
    target = KubeTarget(cluster=CLUSTER, via=[], secrets=SecretsRef(repo=RepoRef(url="x"), commit="0" * 40))
    assert K8sNodesInput(target=target).gate_control_planes == []


# -- on local machines with the stand-ins -------------------------------------------------------


def act(fn, input):
    return ActivityEnvironment().run(fn, input)


@dataclass
class StandinCluster:
    provider: LocalMachines
    private: str
    secrets: SecretsRef
    spec: KubernetesCluster
    cps: list[Machine]
    joined: set[str] = field(default_factory=set)

    @property
    def target(self) -> KubeTarget:
        return KubeTarget(cluster=CLUSTER, via=self.cps[:1], secrets=self.secrets)

    def session(self, m: Machine) -> contextlib.AbstractContextManager[SshSession]:
        return connect(m, self.private)

    def gate(self, gate: list[Machine], timeout: float = 60) -> list[str]:
        """Run the gate; the names of the Ready nodes it returns."""
        got = act(
            k8s_nodes,
            K8sNodesInput(
                target=self.target, wait_ready=[m.id for m in gate], gate_control_planes=gate, timeout_seconds=timeout
            ),
        )
        return sorted(n.name for n in got.nodes if n.ready)

    def join(self, m: Machine) -> None:
        """Join `m` as a control plane (the activity skips a machine that has joined already)."""
        with self.session(self.cps[0]) as s:
            ca_hash = ca_cert_hash(s.run("cat /etc/kubernetes/pki/ca.crt", check=True).stdout)
        config = kcfg.join_config(self.spec, m.id, m.ip, kcfg.endpoint(self.spec, self.cps[0].ip), ca_hash, True)
        act(kubeadm_join, KubeadmJoinInput(target=self.target, machine=m, node=m.id, config=config, control_plane=True))
        self.joined.add(m.id)

    def members(self) -> list[str]:
        with self.session(self.cps[0]) as s:
            return [m["name"] for m in api_state(s)["etcdMembers"]]


@contextlib.contextmanager
def gate_machines(private: str, public: str, tmp_path: Path) -> Iterator[StandinCluster]:
    """Two control-plane machines with the stand-ins, the first initialized; all gone afterwards."""
    provider = LocalMachines(PROVIDER, SUBNET)
    repo = AptRepo(provider)
    suffix = uuid.uuid4().hex[:4]
    ids = [f"hg{suffix}-cp-0", f"hg{suffix}-cp-1"]
    try:
        provider.ensure_network()
        serve_standins(repo, [f"{VERSION}-1.1"], tmp_path / "debs")
        git = GitRepo(tmp_path)
        box = SecretBox.new(MASTER_KEY)
        file = box.empty_file()
        file.secrets[KEY_NAME] = box.encrypt(KEY_NAME, private.encode())
        secrets = SecretsRef(repo=RepoRef(url=git.url), commit=git.push({"secrets.yml": file.to_yaml()}))
        machines = []
        for m in provider.create("cp", ids, public, KEY_NAME):
            with connect(m, private) as s:
                r = s.run(install_command(repo, f"{VERSION}-1.1") + " && sysctl -w net.ipv4.ip_forward=1", timeout=600)
                assert r.status == 0, r.stderr
                machines.append(m.model_copy(update={"host_key": s.host_key}))
        spec = KubernetesCluster.model_validate(
            {
                "kind": "kubernetes",
                "version": f"v{VERSION}",
                "controlPlane": {"provider": PROVIDER, "pool": "cp", "nodes": 3},
                "controlPlaneEndpoint": {"host": machines[0].ip, "port": 6443},
            }
        )
        cluster = StandinCluster(provider, private, secrets, spec, machines)
        first = machines[0]
        config = kcfg.init_config(CLUSTER, spec, first.id, first.ip, kcfg.endpoint(spec, first.ip), [first.ip])
        act(kubeadm_init, KubeadmInitInput(target=cluster.target, config=config))
        act(apply_cni, ApplyCniInput(target=cluster.target, manifest=DEFAULT_CNI["calico"]))
        cluster.joined.add(first.id)
        yield cluster
    finally:
        for machine in provider.list_status():
            with contextlib.suppress(Exception):
                provider.delete(machine["id"])
        with contextlib.suppress(Exception):
            repo.stop()
        with contextlib.suppress(Exception):
            provider.destroy_network()


@pytest.fixture(scope="module")
def standin_cluster(
    local_provider: LocalMachines, maintenance_key: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandinCluster]:
    """`local_provider` only for the machines session lock: this module has its own provider and subnet."""
    private, public = maintenance_key
    with gate_machines(private, public, tmp_path_factory.mktemp("kgate")) as cluster:
        yield cluster


@pytest.mark.machines
@pytest.mark.slow
def test_gate_passes_on_healthy_control_planes(standin_cluster: StandinCluster):
    c = standin_cluster
    cp0, cp1 = c.cps
    assert c.gate([cp0]) == [cp0.id]
    assert c.members() == [cp0.id]
    c.join(cp1)
    assert c.members() == [cp0.id, cp1.id]
    assert c.gate([cp0, cp1]) == [cp0.id, cp1.id]
    # Each control plane answers on its own: the first as the API, the joined one as a follower.
    for m in c.cps:
        with c.session(m) as s:
            health = s.run("exec 3<>/dev/tcp/127.0.0.1/2381; printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3")
            assert health.stdout.endswith('{"health":"true","reason":""}'), health.stdout


@pytest.mark.machines
@pytest.mark.slow
def test_gate_fails_naming_the_unhealthy_etcd_member(standin_cluster: StandinCluster):
    c = standin_cluster
    cp0, cp1 = c.cps
    if cp1.id not in c.joined:
        c.join(cp1)
    with c.session(cp1) as s:
        set_etcd_unhealthy(s, "stand-in test: disk stalled")
        try:
            start = time.monotonic()
            with pytest.raises(ApplicationError) as info:
                c.gate([cp0, cp1], timeout=4)
            took = time.monotonic() - start
        finally:
            set_etcd_unhealthy(s, None)
    message = info.value.message
    assert info.value.type == "NotReady" and not info.value.non_retryable
    assert message == (
        f"kubernetes cluster {CLUSTER}: health gate: {cp1.id}: etcd member not healthy ({ETCD_HEALTH_URL}: HTTP 503 "
        '{"health":"false","reason":"stand-in test: disk stalled"}); still failing after 4s'
    )
    assert 4 <= took < 30
    assert c.gate([cp0, cp1]) == [cp0.id, cp1.id]  # healthy again without the hook

    # The primary gone: the follower's /readyz fails and its etcd member has no leader. (The gate
    # itself stops earlier there: the node list comes from the API, and that is gone.)
    with c.session(cp0) as s0, c.session(cp1) as s1:
        s0.run("systemctl stop standin-apiserver.service", check=True)
        try:
            failed = _gate_parse(s1.run(_GATE_SCRIPT, check=True, timeout=60).stdout)
        finally:
            s0.run("systemctl start standin-apiserver.service", check=True)
    assert [f.split(" (")[0] for f in failed] == ["API server not ready", "etcd member not healthy"], failed
    assert "[-]etcd failed" in failed[0]
    no_leader = '{"health":"false","reason":"RAFT NO LEADER"}'
    assert failed[1] == f"etcd member not healthy ({ETCD_HEALTH_URL}: HTTP 503 {no_leader})"
    assert c.gate([cp0, cp1]) == [cp0.id, cp1.id]


@pytest.mark.machines
@pytest.mark.slow
def test_reset_of_a_joined_control_plane_removes_its_etcd_member(standin_cluster: StandinCluster):
    c = standin_cluster
    cp0, cp1 = c.cps
    if cp1.id not in c.joined:
        c.join(cp1)
    assert c.members() == [cp0.id, cp1.id]
    act(kubeadm_reset, KubeadmResetInput(cluster=CLUSTER, machine=cp1, secrets=c.secrets))
    c.joined.discard(cp1.id)
    assert c.members() == [cp0.id]
    with c.session(cp0) as s:
        events = [e for e in api_state(s)["events"] if e["event"].startswith("etcd-member")]
    assert [(e["event"], e["member"]) for e in events[-2:]] == [
        ("etcd-member-add", cp1.id),
        ("etcd-member-remove", cp1.id),
    ]
    # The gate over what is left passes; over the reset machine it fails, naming it.
    assert c.gate([cp0]) == [cp0.id]
    with pytest.raises(ApplicationError) as info:
        c.gate([cp0, cp1], timeout=2)
    message = info.value.message
    assert f"nodes not Ready after 2s: {cp1.id}; health gate: {cp1.id}: API server not ready" in message
    refused = f"; health gate: {cp1.id}: etcd member not healthy ({ETCD_HEALTH_URL}: bash: connect: Connection refused"
    assert refused in message
    assert cp0.id + ":" not in message.split("health gate", 1)[1]

    # It joins again as a new member; `kubeadm reset` prints what the real one prints when it removed it.
    c.join(cp1)
    assert c.members() == [cp0.id, cp1.id]
    assert c.gate([cp0, cp1]) == [cp0.id, cp1.id]
    with c.session(cp1) as s:
        out = s.run("kubeadm reset -f", check=True).stdout
    c.joined.discard(cp1.id)
    assert "[reset] Deleted contents of the etcd data directory: /var/lib/etcd" in out
    assert c.members() == [cp0.id]
