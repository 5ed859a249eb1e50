"""The local provider boots real, distinct Debian machines and cleans up after them."""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from orbiter.activities.providers.local import LocalMachines, nspawn
from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.providers.local.runtime import gc, list_all_local_machines
from orbiter.activities.ssh import Unreachable, connect
from orbiter.models.machines import Machine

from ..support.machines_fixture import TEST_PROVIDER

pytestmark = pytest.mark.machines


def _facts(machine: Machine, key: str) -> tuple[str, str, str]:
    with connect(machine, key) as s:
        out = s.run("hostname; cat /etc/machine-id", check=True).stdout.split()
        return out[0], out[1], s.host_key


def test_two_machines_boot_in_parallel_and_are_distinct(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    with ThreadPoolExecutor(2) as ex:
        facts = list(ex.map(lambda m: _facts(m, maintenance_key[0]), two_machines))
    hostnames, machine_ids, host_keys = zip(*facts, strict=True)
    assert list(hostnames) == [m.id for m in two_machines]
    assert len(set(machine_ids)) == 2
    assert len(set(host_keys)) == 2
    assert len({m.ip for m in two_machines}) == 2
    assert all(m.provider == TEST_PROVIDER and m.host_key is None for m in two_machines)


def test_create_is_idempotent(
    local_provider: LocalMachines, two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    pids = [nspawn.read_pid(local_provider.path / "machines" / m.id / "nspawn.pid")
            for m in two_machines]
    start = time.monotonic()
    again = local_provider.create("test", [m.id for m in two_machines], maintenance_key[1], "k")
    assert time.monotonic() - start < 5
    assert [m.ip for m in again] == [m.ip for m in two_machines]
    assert [nspawn.read_pid(local_provider.path / "machines" / m.id / "nspawn.pid")
            for m in two_machines] == pids


def test_machine_is_a_real_systemd_host(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    with connect(two_machines[0], maintenance_key[0]) as s:
        assert s.run("cat /proc/1/comm").stdout.strip() == "systemd"
        s.upload("/etc/systemd/system/orbiter-t.service",
                 b"[Service]\nExecStart=/bin/sleep 1000\n")
        script = (
            "systemctl daemon-reload && systemctl start orbiter-t && systemctl stop orbiter-t"
            " && systemctl daemon-reload && systemctl start orbiter-t"
            " && systemctl restart orbiter-t && systemctl is-active orbiter-t"
        )
        assert s.run(script, check=True).stdout.strip() == "active"
        s.run("sysctl -w net.ipv4.ip_forward=1", check=True)
        other = two_machines[1].ip
        s.run(f"timeout 5 bash -c 'echo > /dev/tcp/{other}/22'", check=True)


def test_stopped_machine_is_started_again_with_its_disk(
    local_provider: LocalMachines, maintenance_key: tuple[str, str]
) -> None:
    (m,) = local_provider.create("test", ["orb-restart"], maintenance_key[1], "k")
    with connect(m, maintenance_key[0]) as s:
        s.run("echo kept > /root/marker", check=True)
        host_key = s.host_key
    local_provider.stop(m.id)
    assert not local_provider.is_running(m.id)
    assert {"id": m.id, "orb": "", "cluster": "", "pool": "test", "ip": m.ip, "state": "stopped"} in (
        local_provider.list_status()
    )
    (again,) = local_provider.create("test", [m.id], maintenance_key[1], "k")
    assert again.ip == m.ip
    with connect(again.model_copy(update={"host_key": host_key}), maintenance_key[0]) as s:
        assert s.run("cat /root/marker").stdout.strip() == "kept"
    local_provider.delete(m.id)


def test_set_link_cuts_machine_off_and_back(
    local_provider: LocalMachines, two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    m = two_machines[1]
    local_provider.set_link(m.id, up=False)
    try:
        start = time.monotonic()
        with pytest.raises(Unreachable, match=m.id):
            connect(m, maintenance_key[0], timeout=2)
        assert time.monotonic() - start < 10
    finally:
        local_provider.set_link(m.id, up=True)
    with connect(m, maintenance_key[0], timeout=10) as s:
        assert s.run("hostname").stdout.strip() == m.id


def _reach(local_provider: LocalMachines, source: Machine, ip: str, port: int = 22) -> bool:
    """A TCP connection from inside `source` (its network namespace) to ip:port within 2 s."""
    pid = nspawn.read_pid(local_provider.path / "machines" / source.id / "nspawn.pid")
    assert pid is not None
    init = nspawn.container_init_pid(pid)
    probe = subprocess.run(["nsenter", "-t", str(init), "-n", "timeout", "2", "bash", "-c", f"</dev/tcp/{ip}/{port}"],
                           capture_output=True)
    return probe.returncode == 0


def test_a_reused_address_is_reachable_from_the_other_machines_at_once(
    local_provider: LocalMachines, two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    """A machine deleted and another created gets the freed address (scale down, then up): the
    machines that talked to the old one reach the new one at once, not after their ARP entry for
    that address goes stale (etcd's new member could not reach its peers and failed to start:
    found by bench/soak.py)."""
    [old] = local_provider.create("test", ["orb-old"], maintenance_key[1], "k")
    new: Machine | None = None
    try:
        assert _reach(local_provider, two_machines[0], old.ip)
        local_provider.delete(old.id)
        [new] = local_provider.create("test", ["orb-new"], maintenance_key[1], "k")
        assert new.ip == old.ip
        assert _reach(local_provider, two_machines[0], new.ip)
    finally:
        for machine in (old, new):
            if machine is not None:
                local_provider.delete(machine.id)


def test_list_and_list_all(local_provider: LocalMachines, two_machines: list[Machine]) -> None:
    ids = {m.id for m in local_provider.list()}
    assert {m.id for m in two_machines} <= ids
    rows = list_all_local_machines(local_provider.state_root)
    mine = {r["id"]: r for r in rows if r["provider"] == local_provider.name}
    for m in two_machines:
        assert mine[m.id] == {"provider": local_provider.name, "id": m.id, "orb": "", "cluster": "", "pool": "test",
                              "ip": m.ip, "state": "running"}


def test_delete_and_gc_remove_disk_process_and_address(
    local_provider: LocalMachines, two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    a, b = local_provider.create("test", ["orb-del", "orb-gc"], maintenance_key[1], "k")
    pid = nspawn.read_pid(local_provider.path / "machines" / a.id / "nspawn.pid")
    assert pid and nspawn.pid_alive(pid)
    start = time.monotonic()
    local_provider.delete(a.id)
    assert time.monotonic() - start < 20
    assert not nspawn.pid_alive(pid)
    assert not (local_provider.path / "machines" / a.id).exists()
    assert a.id not in (local_provider.path / "ipam.json").read_text()
    local_provider.delete(a.id)  # idempotent
    links = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert local_provider.veth(a.id) not in links
    owned = {(local_provider.name, m.id) for m in two_machines}
    assert gc(owned, local_provider.state_root) == [f"{local_provider.name}/{b.id}"]
    assert {m.id for m in local_provider.list()} == {m.id for m in two_machines}


def _candidate(package: str) -> str:
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    found = re.search(r"Candidate:\s*(\S+)", out)
    if not found or found.group(1) == "(none)":
        pytest.skip(f"the host's apt does not know {package}")
    return found.group(1)


def test_apt_installs_exact_version_from_served_repo(
    local_provider: LocalMachines, two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    version = _candidate("etcd-server")
    repo = AptRepo(local_provider)
    repo.ensure_packages([("etcd-server", version)])
    start = time.monotonic()
    repo.ensure_packages([("etcd-server", version)])
    assert time.monotonic() - start < 1  # nothing missing: no apt run
    repo.ensure_served()
    repo.ensure_served()
    with connect(two_machines[0], maintenance_key[0]) as s:
        s.upload("/etc/apt/sources.list.d/orbiter.list", (repo.source_line() + "\n").encode())
        s.run("apt-get update -q", check=True, timeout=120)
        s.run(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server={version}",
              check=True, timeout=300)
        assert s.run("dpkg-query -W -f '${Version}' etcd-server").stdout == version
        assert s.run("etcd --version", check=True).stdout.startswith("etcd Version: 3.4")
