"""OS updates on a real etcd cluster: the served repo gains a newer build of a package the machines
have (Debian's media-types, rebuilt at 10.0.0+orbitertest1); the node agents and the update check
report it, and orbiter upgrades the members one at a time. Then /var/run/reboot-required on two
machines: orbiter reboots exactly those two, one after the other, while etcd keeps serving."""

import uuid

import pytest

from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.ssh import SshError, connect
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret

from ..conftest import MASTER_KEY, GitRepo
from ..standins import add_debs
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, poke, stop_orb, wait_cluster
from ..support.flows import takeoff, wait_for
from ..support.net import subnet
from ..support.served import rebuilt, remove_debs
from .test_etcd_e2e import Traffic

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(94)  # as test_updates_etcd: modules of one xdist worker run one after the other
PACKAGE, OLD, NEW = "media-types", "10.0.0", "10.0.0+orbitertest1"


def orb_yaml(orb: str, reboot: str) -> str:
    extra = ("      updates: {policy: none, check: 3s}\n"
             f"      osUpdates: {{policy: all, reboot: {reboot}}}\n")
    return desired(orb, 3, extra=extra, subnet=SUBNET)


def nodes(repo: GitRepo):
    meta = current(repo).clusters.get("meta")
    return {n.machine: n for n in meta.nodes} if meta else {}


async def test_os_updates_member_by_member_and_reboots_one_at_a_time(client, worker, repo: GitRepo,
                                                                     local_provider, tmp_path):
    orb = "os" + uuid.uuid4().hex[:6]
    deb = rebuilt(PACKAGE, OLD, NEW, tmp_path / "debs")
    with e2e_machines(SUBNET) as machines:
        apt = AptRepo(machines)
        wid = None
        try:
            c1 = repo.push({"desired.yml": orb_yaml(orb, "never")}, "etcd with OS updates, no reboots")
            wid = await takeoff(client, RepoRef(url=repo.url))
            await wait_cluster(repo, c1)
            names = sorted(nodes(repo))
            await wait_for(lambda: (ns := nodes(repo)) and all(n.upgradable == [] for n in ns.values()), timeout=60,
                           what="no OS updates reported")
            key = read_secret(MASTER_KEY, repo.remote_file("secrets.yml"), "lab_maintenancekey").decode()
            by_id = {m.id: m for m in machines.list()}

            def ssh(name: str, command: str) -> str:
                with connect(by_id[name], key) as session:
                    return session.run(command, check=True).stdout.strip()

            def boot_id(name: str) -> str | None:
                """None while the machine reboots."""
                try:
                    return ssh(name, "cat /proc/sys/kernel/random/boot_id")
                except SshError:
                    return None

            # A newer build in the served repo: reported, then applied member by member.
            add_debs(apt, [deb])
            await wait_for(lambda: all(ssh(n, f"dpkg-query -W -f '${{Version}}' {PACKAGE}") == NEW for n in names),
                           timeout=300, interval=2, what=f"{PACKAGE} {NEW} on every member")
            done = await wait_for(lambda: (ns := nodes(repo)) and all(n.upgradable == [] for n in ns.values())
                                  and current(repo).clusters["meta"], timeout=120, what="nothing left to upgrade")
            assert done.phase == "Ready" and all(n.ready for n in done.nodes)
            record = next(r for r in reversed(done.history) if any(s.startswith("os updates") for s in r.steps))
            ordered = [s.removeprefix("os updates ") for s in record.steps if s.startswith("os updates")]
            assert sorted(ordered) == names
            # One at a time: each member's upgrade (dpkg's log) came after the previous member's.
            times = [ssh(n, f"grep ' upgrade {PACKAGE}:' /var/log/dpkg.log | tail -1 | cut -c1-19") for n in ordered]
            assert times == sorted(times), times

            # reboot-required on two machines: exactly those two reboot, one after the other.
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            etcdctl("put", "/kept", "yes")
            boots = {n: ssh(n, "cat /proc/sys/kernel/random/boot_id") for n in names}
            first, second, untouched = names
            c2 = repo.push({"desired.yml": orb_yaml(orb, "auto")}, "reboots allowed")
            await poke(client, wid)
            await wait_cluster(repo, c2)
            with Traffic(etcdctl) as traffic:
                for name in (first, second):
                    ssh(name, "echo '*** System restart required ***' > /var/run/reboot-required")
                await wait_for(lambda: all(boot_id(n) not in (None, boots[n]) for n in (first, second)),
                               timeout=300, interval=2, what="both rebooted")
                settled = await wait_for(lambda: (ns := nodes(repo)) and len(ns) == 3 and all(
                    n.ready and not n.reboot_required for n in ns.values()) and current(repo).clusters["meta"],
                    timeout=180, what="Ready with no reboot due")
            assert settled.phase == "Ready"
            assert ssh(untouched, "cat /proc/sys/kernel/random/boot_id") == boots[untouched]
            assert all(ssh(n, "test -e /var/run/reboot-required && echo yes || echo no") == "no" for n in names)
            # One after the other: the second machine's new boot began after the first's.
            record = next(r for r in reversed(settled.history) if any(s.startswith("os updates") for s in r.steps))
            rebooted = [s.removeprefix("os updates ") for s in record.steps if s.startswith("os updates")]
            assert sorted(rebooted) == sorted([first, second])
            assert _epoch(ssh, rebooted[0]) < _epoch(ssh, rebooted[1])
            assert traffic.ops > 10 and len(traffic.failures) <= 2, traffic.failures  # a leader change may cost one
            assert etcdctl("get", "/kept", "--print-value-only").strip() == "yes"
            assert len(etcdctl("endpoint", "status", "--cluster", "-w", "simple").strip().splitlines()) == 3
        finally:
            if wid is not None:
                await stop_orb(client, orb, wid, machines)
            remove_debs(apt, [deb.name])


def _epoch(ssh, name: str) -> int:
    """When the machine's current boot began (its PID 1's start), in seconds since the epoch."""
    return int(ssh(name, "date -d \"$(ps -o lstart= -p 1)\" +%s"))
