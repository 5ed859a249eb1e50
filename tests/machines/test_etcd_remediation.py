"""Remediation on real etcd: the machine of one of three members is switched off while a client
keeps writing; after `unhealthyAfter` orbiter replaces the member (learner, promoted, the dead one
removed and released). With two of three machines off there is no quorum: no remediation, the
cluster goes Blocked with the quorum line."""

import asyncio
import re
import time
import uuid

import pytest

from orbiter.models.refs import RepoRef

from ..conftest import GitRepo
from ..support.etcd_flows import Etcdctl, current, desired, e2e_machines, stop_orb, wait_cluster
from ..support.flows import gitops_id, takeoff, wait_for
from ..support.net import subnet
from .test_etcd_e2e import Traffic

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(97)
UNHEALTHY_AFTER = 20
BOUND = 150  # seconds after unhealthyAfter: a check every 5s, a backup-less replacement, a new machine booted
REMEDIATION = f"      remediation: {{unhealthyAfter: {UNHEALTHY_AFTER}s, maxUnhealthy: 1}}\n"


async def test_a_dead_member_is_replaced_and_two_dead_block_on_quorum(client, worker, repo: GitRepo, local_provider,
                                                                      tmp_path):
    orb = "rm" + uuid.uuid4().hex[:6]
    with e2e_machines(SUBNET) as machines:
        try:
            first = repo.push({"desired.yml": desired(orb, 3, REMEDIATION, subnet=SUBNET, drift="5s")}, "remediation")
            await takeoff(client, RepoRef(url=repo.url))
            status = await wait_cluster(repo, first)
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            etcdctl("put", "/before", "kept")
            victim = next(n.machine for n in status.nodes if not n.leader)
            with Traffic(etcdctl) as traffic:
                machines.stop(victim)
                killed = time.monotonic()
                replaced = await wait_for(
                    lambda: (s := current(repo).clusters["meta"]) and s.phase == "Ready" and len(s.nodes) == 3
                    and victim not in {n.machine for n in s.nodes} and all(n.ready for n in s.nodes) and s,
                    timeout=UNHEALTHY_AFTER + BOUND, interval=1, what="the member replaced")
                took = time.monotonic() - killed
            print(f"replaced {victim} {took:.0f}s after its machine stopped; client: {traffic.ops} rounds,"
                  f" {len(traffic.failures)} failed")
            assert took >= UNHEALTHY_AFTER  # not before it was unhealthy for unhealthyAfter
            assert f"replace member {victim}" in replaced.done and replaced.commit == first
            assert victim not in {m["id"] for m in machines.list_status()}  # released
            etcdctl = Etcdctl(repo, "meta", tmp_path)
            assert etcdctl("get", "/before", "--print-value-only").strip() == "kept"
            assert len(traffic.failures) <= 5, traffic.failures

            # Two of three off: no quorum, nothing replaced, Blocked with the line that says what to do.
            for node in [n for n in replaced.nodes if not n.leader][:1] + [n for n in replaced.nodes if n.leader]:
                machines.stop(node.machine)
            deadline = time.monotonic() + UNHEALTHY_AFTER + BOUND
            while (blocked := current(repo).clusters["meta"]).phase != "Blocked":
                assert time.monotonic() < deadline, ("not Blocked on quorum", blocked.phase, blocked.step, blocked.done,
                                                     [(n.machine, n.healthy) for n in blocked.nodes])
                await asyncio.sleep(1)
            # "0 of 3" here: with quorum gone the survivor answers no health check either. No backups in
            # this test, so the line names none.
            assert re.fullmatch(r"quorum lost \(\d of 3 members healthy\): restore with orbiter restore meta"
                                r" --from <latest backup id>", blocked.error), blocked.error
            assert len(blocked.nodes) == 3  # nothing was replaced
        finally:
            await stop_orb(client, orb, gitops_id(repo), machines)
