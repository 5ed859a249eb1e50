"""network_facts without machines: parsing `ip -o addr show`, one round trip per machine, its errors.

tests/test_keepalived.py runs it against real local machines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from temporalio.exceptions import ApplicationError

from orbiter.activities.kinds.kubernetes import network
from orbiter.activities.kinds.kubernetes.network import interface_of, network_facts, parse_addresses
from orbiter.activities.ssh import AuthFailed, RunResult, Unreachable
from orbiter.models.kinds.kubernetes.network import InterfaceFact, NetworkFactsInput
from orbiter.models.machines import Machine
from orbiter.models.refs import RepoRef, SecretsRef

# `ip -o addr show` of a cloud machine with a VIP already on it, a container and a tunnel.
ADDRESSES = """\
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
2: ens4    inet 10.156.0.7/32 metric 100 scope global dynamic ens4\\       valid_lft 3524sec preferred_lft 3524sec
2: ens4    inet 10.156.0.100/32 scope global ens4\\       valid_lft forever preferred_lft forever
3: eth1    inet 192.168.5.10/22 brd 192.168.7.255 scope global eth1\\       valid_lft forever preferred_lft forever
3: eth1    inet6 fd00::10/64 scope global \\       valid_lft forever preferred_lft forever
4: host0@if12    inet 10.82.0.2/24 scope global host0\\       valid_lft forever preferred_lft forever
5: wg0    inet 10.9.0.1 peer 10.9.0.2/32 scope global wg0\\       valid_lft forever preferred_lft forever
"""


def test_parse_addresses_reads_each_family_and_form() -> None:
    assert parse_addresses(ADDRESSES) == [
        ("lo", "127.0.0.1", 8),
        ("lo", "::1", 128),
        ("ens4", "10.156.0.7", 32),
        ("ens4", "10.156.0.100", 32),
        ("eth1", "192.168.5.10", 22),
        ("eth1", "fd00::10", 64),
        ("host0", "10.82.0.2", 24),
        ("wg0", "10.9.0.1", 32),
    ]
    assert parse_addresses("") == []
    assert parse_addresses("garbage\n2: eth0 link/ether 00:11:22:33:44:55\n") == []


def test_interface_of_the_machine_ip() -> None:
    assert interface_of("10.156.0.7", ADDRESSES) == InterfaceFact(interface="ens4", prefix=32)
    assert interface_of("192.168.5.10", ADDRESSES) == InterfaceFact(interface="eth1", prefix=22)
    assert interface_of("10.82.0.2", ADDRESSES) == InterfaceFact(interface="host0", prefix=24)
    assert interface_of("fd00:0::10", ADDRESSES) == InterfaceFact(interface="eth1", prefix=64)
    assert interface_of("10.82.0.20", ADDRESSES) is None  # a prefix match is not the address
    assert interface_of("not an ip", ADDRESSES) is None


def machine(mid: str, ip: str) -> Machine:
    return Machine(id=mid, provider="lab", pool="cp", ip=ip, key_secret="lab_maintenancekey")


SECRETS = SecretsRef(repo=RepoRef(url="/nowhere"), commit="0" * 40)


class FakeSession:
    def __init__(self, answer: RunResult) -> None:
        self.answer = answer
        self.commands: list[str] = []

    def run(self, command: str, **_: object) -> RunResult:
        self.commands.append(command)
        return self.answer


@pytest.fixture
def machines(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeSession | Exception]:
    """What each machine (by ip) answers; sessions come from this instead of SSH."""
    answers: dict[str, FakeSession | Exception] = {}

    @contextlib.contextmanager
    def pooled(m: Machine, key: str) -> Iterator[FakeSession]:
        assert key == "private key"
        answer = answers[m.ip]
        if isinstance(answer, Exception):
            raise answer
        yield answer

    monkeypatch.setattr(network, "pooled", pooled)
    monkeypatch.setattr(network, "resolve_secret", lambda ref, name: b"private key")
    return answers


def ok(text: str = ADDRESSES) -> FakeSession:
    return FakeSession(RunResult(stdout=text, stderr="", status=0))


def facts(*ms: Machine) -> dict[str, InterfaceFact]:
    return network_facts(NetworkFactsInput(cluster="meta", machines=list(ms), secrets=SECRETS)).interfaces


def test_one_round_trip_per_machine(machines: dict[str, FakeSession | Exception]) -> None:
    machines["10.156.0.7"] = a = ok()
    machines["192.168.5.10"] = b = ok()
    got = facts(machine("cp-0", "10.156.0.7"), machine("cp-1", "192.168.5.10"))
    assert got == {
        "cp-0": InterfaceFact(interface="ens4", prefix=32),
        "cp-1": InterfaceFact(interface="eth1", prefix=22),
    }
    assert len(a.commands) == len(b.commands) == 1 and "ip -o addr show" in a.commands[0]
    assert facts() == {}


def test_no_interface_carries_the_ip_is_one_line_naming_machine_and_ip(
    machines: dict[str, FakeSession | Exception],
) -> None:
    machines["10.156.0.7"] = ok()
    machines["34.1.2.3"] = ok()  # e.g. a NAT address: no interface of the machine has it
    with pytest.raises(ApplicationError) as err:
        facts(machine("cp-0", "10.156.0.7"), machine("cp-1", "34.1.2.3"))
    assert err.value.type == "NetworkError" and err.value.non_retryable
    msg = err.value.message
    assert "\n" not in msg
    assert msg.startswith("cluster meta: machine cp-1: no network interface carries its IP 34.1.2.3")
    assert "ens4 10.156.0.7/32" in msg and "127.0.0.1" not in msg


def test_a_failing_ip_command_is_a_network_error(machines: dict[str, FakeSession | Exception]) -> None:
    machines["10.0.0.5"] = FakeSession(RunResult(stdout="", stderr="sh: 1: ip: not found\n", status=127))
    with pytest.raises(ApplicationError) as err:
        facts(machine("cp-0", "10.0.0.5"))
    assert err.value.type == "NetworkError" and err.value.non_retryable
    assert err.value.message == "cluster meta: machine cp-0: `ip -o addr show` exited with 127: sh: 1: ip: not found"


def test_unreachable_is_retried_an_operator_problem_wins(machines: dict[str, FakeSession | Exception]) -> None:
    machines["10.0.0.5"] = Unreachable("machine cp-0 (root@10.0.0.5:22): timed out connecting after 10s")
    with pytest.raises(ApplicationError) as err:
        facts(machine("cp-0", "10.0.0.5"))
    assert err.value.type == "Unreachable" and not err.value.non_retryable
    assert err.value.message == "cluster meta: machine cp-0 (root@10.0.0.5:22): timed out connecting after 10s"

    machines["10.0.0.6"] = AuthFailed("machine cp-1 (root@10.0.0.6:22): authentication failed for user root")
    with pytest.raises(ApplicationError) as err:
        facts(machine("cp-0", "10.0.0.5"), machine("cp-1", "10.0.0.6"))
    assert err.value.type == "AuthFailed" and err.value.non_retryable and "machine cp-1" in str(err.value)
