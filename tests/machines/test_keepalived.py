"""A keepalived VIP in front of three control planes, on real local machines.

What a user relies on when controlPlaneEndpoint.vip is set: the VIP answers from this host once a
healthy API server holds it, exactly one machine holds it, and it moves to another healthy control
plane when the holder's API server fails its health check or the holder's keepalived stops.

The machines get keepalived the way orbiter installs it: prepare_packages serves the host's
keepalived and curl debs from the provider's apt repository, network_facts finds the interface
that carries each machine's IP, and the node agent's activity (converge_node: observe, plan, apply)
converge the keepalived part of the control plane's NodeSpec as models/kinds/kubernetes.py renders
it. There is no Kubernetes here: a small HTTPS server on :6443 stands in for the API server's
/healthz, so "the API server fails" is "that server is stopped". Everything runs twice: with
unicast peers (what clouds without multicast need) and with VRRP multicast.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import http.client
import signal
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.testing import ActivityEnvironment

from orbiter.activities.kinds.kubernetes.network import network_facts
from orbiter.activities.machines import prepare_packages
from orbiter.activities.node import converge_node
from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.packages import ANY
from orbiter.activities.ssh import SshSession, connect, generate_ed25519
from orbiter.models.kinds.kubernetes.network import InterfaceFact, NetworkFactsInput
from orbiter.models.kinds.kubernetes.node import (
    KEEPALIVED_CHECK,
    KEEPALIVED_PACKAGES,
    Keepalived,
    node_spec,
    virtual_router_id,
)
from orbiter.models.kinds.kubernetes.spec import CONTROL_PLANE, KubernetesCluster
from orbiter.models.machines import Machine
from orbiter.models.node import ConvergeNodeInput
from orbiter.models.nodespec import AptSource, Change, NodeSpec
from orbiter.models.providers import default_secret_names
from orbiter.models.providers.local import LocalProvider as LocalProviderSpec
from orbiter.models.provision import PreparePackagesInput
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.models.secrets import seal
from orbiter.worker.masterkey import load_master_key

from ..support.machines_fixture import _sweep, _teardown
from ..support.net import host, subnet

pytestmark = [pytest.mark.machines, pytest.mark.slow]

PROVIDER = "vip"
SUBNET = subnet(82)  # etcd e2e 10.80, kubernetes e2e 10.81
VIP = host(SUBNET, 100)
PORT = 6443
MACHINES = ["meta-cp-0", "meta-cp-1", "meta-cp-2"]
HEALTHZ_UNIT = "orbiter-test-healthz.service"
HEALTHZ_PEM = "/root/healthz.pem"
HEALTHZ_SCRIPT = "/root/healthz.py"
# Failover budgets: a failing check needs `fall 3` x `interval 3` s plus VRRP's master-down time
# (3 adverts + skew); a stopping keepalived hands over at once with a priority-0 advert.
HEALTH_FAILOVER = 45.0
STOP_FAILOVER = 20.0
# Only for the KubernetesCluster's control plane NodeSpec; these packages are dropped from it.
KUBE_VERSIONS = {"containerd": "1.6.20", "kubelet": "1.31.2-1.1", "kubeadm": "1.31.2-1.1", "kubectl": "1.31.2-1.1"}
CLUSTER = KubernetesCluster.model_validate(
    {
        "kind": "kubernetes",
        "version": "v1.31.2",
        "controlPlane": {"provider": PROVIDER, "pool": "cp", "nodes": 3},
        "controlPlaneEndpoint": {"vip": VIP, "port": PORT},
    }
)

# The API server's /healthz stand-in: HTTPS with a self-signed certificate, answering its hostname.
HEALTHZ = f"""\
import http.server, socket, ssl
NAME = socket.gethostname().encode()
class Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/healthz"
        body = NAME if ok else b"not found"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", {PORT}), Healthz)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain("{HEALTHZ_PEM}")
server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""

HEALTHZ_UNIT_FILE = f"""\
[Unit]
Description=orbiter test: stands in for the API server's /healthz
[Service]
ExecStart=/usr/bin/python3 {HEALTHZ_SCRIPT}
"""

T = TypeVar("T")


def self_signed_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Lab:
    provider: LocalMachines
    machines: list[Machine]
    secrets: SecretsRef
    versions: dict[str, str]
    apt_source: str
    facts: dict[str, InterfaceFact]
    sessions: dict[str, SshSession] = field(default_factory=dict)

    def run(self, machine_id: str, command: str, check: bool = True) -> str:
        return self.sessions[machine_id].run(command, check=check, timeout=60).stdout

    def holders(self) -> list[str]:
        """The machines whose interfaces carry the VIP."""

        def carries(m: Machine) -> bool:
            return f" {VIP}/" in self.run(m.id, "ip -o -4 addr show")

        with ThreadPoolExecutor(len(self.machines)) as pool:
            return [m.id for m, yes in zip(self.machines, pool.map(carries, self.machines), strict=True) if yes]

    def start_healthz(self, machine_id: str) -> None:
        self.run(machine_id, f"systemctl start {HEALTHZ_UNIT}")
        # keepalived's own check script is what must pass.
        self.run(machine_id, f"for i in $(seq 100); do {KEEPALIVED_CHECK} && exit 0; sleep 0.1; done; exit 1")

    def stop_healthz(self, machine_id: str) -> None:
        self.run(machine_id, f"systemctl stop {HEALTHZ_UNIT}")
        assert self.sessions[machine_id].run(KEEPALIVED_CHECK).status != 0


def ask_vip() -> str | None:
    """GET https://VIP:6443/healthz from this host: the answering machine's name, or None."""
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(VIP, PORT, timeout=2, context=tls)
    try:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        body = r.read().decode()
        return body.strip() if r.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> tuple[T, float]:
    """Poll until `probe` returns something truthy; (that, seconds it took)."""
    start = time.monotonic()
    last = None
    while True:
        last = probe()
        if last:
            return last, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


def sole_holder(lab: Lab) -> Callable[[], str | None]:
    """A probe: the machine that alone holds the VIP and answers on it from this host, else None."""

    def probe() -> str | None:
        held = lab.holders()
        return held[0] if len(held) == 1 and ask_vip() == held[0] else None

    return probe


def moved_from(lab: Lab, old: str) -> Callable[[], str | None]:
    """A probe: the machine other than `old` that alone holds the VIP and answers on it, else None."""
    probe = sole_holder(lab)

    def moved() -> str | None:
        holder = probe()
        return holder if holder != old else None

    return moved


def assert_stays(lab: Lab, holder: str, seconds: float) -> None:
    """The VIP stays on `holder` alone and keeps answering from it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert lab.holders() == [holder]
        assert ask_vip() == holder
        time.sleep(0.5)


# --- the lab: machines, packages, the node agent ------------------------------------------------


@contextlib.contextmanager
def cleaned_up(provider: LocalMachines) -> Iterator[None]:
    """Machines, apt server and bridge of `provider` go on exit, failure, SIGTERM or interpreter exit."""
    done = False

    def cleanup() -> None:
        nonlocal done
        if not done:
            done = True
            _teardown(provider)

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        cleanup()
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        else:
            signal.raise_signal(signal.SIGTERM)

    _sweep(provider)  # leftovers of an aborted earlier run on this bridge
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        cleanup()
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
        atexit.unregister(cleanup)


@pytest.fixture(scope="module")
def lab(local_provider: LocalMachines) -> Iterator[Lab]:
    """Three booted machines, keepalived and curl served to them, their interfaces found.

    `local_provider` holds the machines-tests session lock and the shared base image."""
    provider = LocalMachines(PROVIDER, SUBNET)
    with cleaned_up(provider), contextlib.ExitStack() as stack:
        private, public = generate_ed25519()
        key_secret = default_secret_names(PROVIDER)["maintenance"]
        machines = provider.create("cp", MACHINES, public, key_secret)
        # The key travels as a sealed secret, as one orbiter made and has not committed yet.
        secrets = SecretsRef(
            repo=RepoRef(url="unused: every secret is in extra"),
            commit="0" * 40,
            extra={key_secret: seal(load_master_key(), key_secret, private.encode())},
        )
        env = ActivityEnvironment()
        prepared = env.run(
            prepare_packages,
            PreparePackagesInput(
                provider_name=PROVIDER,
                provider=LocalProviderSpec(kind="local", subnet=SUBNET),
                packages=dict.fromkeys(KEEPALIVED_PACKAGES, ANY),
            ),
        )
        assert prepared.apt_source is not None
        facts = env.run(network_facts, NetworkFactsInput(cluster="meta", machines=machines, secrets=secrets))
        sessions = {m.id: stack.enter_context(connect(m, private)) for m in machines}
        pem = self_signed_pem()
        for s in sessions.values():
            s.upload(HEALTHZ_PEM, pem, mode="0600")
            s.upload(HEALTHZ_SCRIPT, HEALTHZ.encode())
            s.upload(f"/etc/systemd/system/{HEALTHZ_UNIT}", HEALTHZ_UNIT_FILE.encode())
            s.run("systemctl daemon-reload", check=True)
        yield Lab(provider, machines, secrets, prepared.versions, prepared.apt_source, facts.interfaces, sessions)


def keepalived_spec(lab: Lab, machine: Machine, unicast: bool) -> NodeSpec:
    """The keepalived part of this control plane's NodeSpec, as node_spec() renders it."""
    fact = lab.facts[machine.id]
    position = MACHINES.index(machine.id)
    settings = Keepalived(
        interface=fact.interface,
        ip=machine.ip,
        peers=[m.ip for m in lab.machines if m.id != machine.id] if unicast else [],
        position=position,
        router_id=virtual_router_id("vip/meta"),
        prefix=fact.prefix,
    )
    full = node_spec(
        CLUSTER,
        machine.id,
        CONTROL_PLANE,
        KUBE_VERSIONS | lab.versions,
        apt_sources=[AptSource(name="orbiter", line=lab.apt_source)],
        vip=settings,
    )
    return NodeSpec(
        hostname=full.hostname,
        apt_sources=full.apt_sources,
        packages=[p for p in full.packages if p.name in KEEPALIVED_PACKAGES],
        files=[f for f in full.files if f.path.startswith("/etc/keepalived/")],
        units=[u for u in full.units if u.name == "keepalived.service"],
    )


def converge(lab: Lab, machine: Machine, spec: NodeSpec) -> list[Change]:
    """One node agent round (observe, plan, apply), then proof that nothing is left to do."""
    env = ActivityEnvironment()
    first = env.run(converge_node, ConvergeNodeInput(machine=machine, spec=spec, secrets=lab.secrets))
    again = env.run(converge_node, ConvergeNodeInput(machine=machine, spec=spec, secrets=lab.secrets))
    assert again.changes == [], f"{machine.id} not converged after one round"
    return first.changes


# --- tests ---------------------------------------------------------------------------------------


def test_network_facts_name_the_interface_that_carries_each_machine_ip(lab: Lab) -> None:
    # Local machines are nspawn containers: their one interface is host0, with the provider's /24.
    assert lab.facts == {m: InterfaceFact(interface="host0", prefix=24) for m in MACHINES}
    again = ActivityEnvironment().run(
        network_facts, NetworkFactsInput(cluster="meta", machines=lab.machines, secrets=lab.secrets)
    )
    assert again.interfaces == lab.facts


@pytest.mark.parametrize("mode", ["unicast", "multicast"])
def test_vip_follows_a_healthy_control_plane(lab: Lab, mode: str) -> None:
    timings: dict[str, float] = {}
    by_id = {m.id: m for m in lab.machines}
    for m in lab.machines:
        lab.stop_healthz(m.id)

    # The node agent installs keepalived from the provider's repo and starts it with orbiter's config.
    specs = {m.id: keepalived_spec(lab, m, unicast=mode == "unicast") for m in lab.machines}
    with ThreadPoolExecutor(len(lab.machines)) as pool:
        rounds = dict(zip(MACHINES, pool.map(lambda m: converge(lab, m, specs[m.id]), lab.machines), strict=True))
    for machine_id, changes in rounds.items():
        assert ("file", "/etc/keepalived/keepalived.conf") in {(c.kind, c.target) for c in changes}, machine_id
        conf = lab.run(machine_id, "cat /etc/keepalived/keepalived.conf")
        assert ("unicast_peer" in conf) == (mode == "unicast")
        assert lab.run(machine_id, "systemctl is-active keepalived").strip() == "active"
        assert lab.run(machine_id, "keepalived -t -f /etc/keepalived/keepalived.conf 2>&1; echo rc=$?").endswith(
            "rc=0\n"
        )

    # No API server is healthy (before kubeadm init, say): nobody takes the VIP.
    deadline = time.monotonic() + 6  # longer than VRRP's master-down interval
    while time.monotonic() < deadline:
        assert lab.holders() == [] and ask_vip() is None
        time.sleep(0.5)

    # Healthy control planes: exactly one takes the VIP, and the VIP answers from this host.
    for m in MACHINES:
        lab.start_healthz(m)
    first, timings["first holder"] = wait_for("one healthy machine holds the VIP", sole_holder(lab), 30)
    assert_stays(lab, first, 3)
    addr = lab.run(first, "ip -o -4 addr show dev host0")
    assert f"{VIP}/24 scope global secondary host0" in addr

    # The holder's API server fails its health check: the VIP moves to a healthy one.
    lab.stop_healthz(first)
    start = time.monotonic()
    second, _ = wait_for(
        "the VIP leaves the unhealthy holder for a healthy one",
        moved_from(lab, first),
        HEALTH_FAILOVER,
    )
    timings["health check failover"] = time.monotonic() - start
    assert_stays(lab, second, 3)

    # The first holder is healthy again: the VIP stays where it is (nopreempt), no second outage.
    lab.start_healthz(first)
    assert_stays(lab, second, 10)  # > rise 2 x interval 3 s + a few adverts

    # keepalived stops on the holder: the VIP moves at once.
    lab.run(second, "systemctl stop keepalived")
    start = time.monotonic()
    third, _ = wait_for(
        "the VIP leaves a holder whose keepalived stopped",
        moved_from(lab, second),
        STOP_FAILOVER,
    )
    timings["keepalived stop failover"] = time.monotonic() - start
    assert third in MACHINES and third != second

    # The node agent's next round starts keepalived again; the VIP stays put and single.
    changes = converge(lab, by_id[second], specs[second])
    assert ("unit", "keepalived.service", "start") in {(c.kind, c.target, c.detail) for c in changes}
    assert_stays(lab, third, 5)
    print(f"\n{mode}: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
