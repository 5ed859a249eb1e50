"""A patch policy on Kubernetes (the kubeadm stand-ins at 1.31.2, 1.31.4 and 1.32.0): orbiter
commits v1.31.4 to desired.yml, the cluster upgrades to it through kubeadm, and 1.32.0 is only
reported (one minor up is not a patch)."""

import uuid

import pytest

from orbiter.activities.ssh import SshError, connect
from orbiter.models.providers import default_secret_names
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret

from ..conftest import MASTER_KEY, GitRepo, git
from ..standins import read_invocations
from ..support.etcd_flows import current, poke, wait_cluster
from ..support.flows import takeoff, wait_for
from ..support.net import subnet
from .test_kubernetes_e2e import PROVIDER, _kube_steps, desired, k8s_machines, names_of, stop_orb
from .test_updates_etcd import orbiter_commits

pytestmark = [pytest.mark.machines, pytest.mark.slow]

SUBNET = subnet(95)
OLD, PATCH, MINOR = "1.31.2", "1.31.4", "1.32.0"


async def test_patch_policy_moves_to_the_newest_patch_through_a_commit(client, worker, repo: GitRepo,
                                                                       local_provider):
    orb = "ku" + uuid.uuid4().hex[:6]
    cp0, _, _, app0, _, _ = names_of(orb)
    wid = None
    with k8s_machines((OLD, PATCH, MINOR), subnet=SUBNET) as machines:
        try:
            first = repo.push({"desired.yml": desired(orb, version=OLD, subnet=SUBNET,
                                                      extra="      updates: {policy: patch, check: 3s}\n")},
                              "kubernetes 1.31.2, patch updates")
            wid = await takeoff(client, RepoRef(url=repo.url))
            commits = await wait_for(lambda: orbiter_commits(repo), timeout=900, interval=2,
                                     what="orbiter's version commit")
            sha, author, subject = commits[0]
            assert author == "orbiter" and subject.startswith(
                f"orbiter: update meta kubernetes v{OLD} -> v{PATCH} (policy patch, offered by provider {PROVIDER}")
            assert git(repo.remote, "rev-parse", f"{sha}~1") in {first} | set(git(  # on top of the user's commit
                repo.remote, "rev-list", f"{first}..{sha}~1").split())
            assert f'version: v{PATCH}' in (repo.remote_file("desired.yml", sha) or "")
            status = await wait_cluster(repo, sha, timeout=900)
            assert {n.version for n in status.nodes} == {f"v{PATCH}"} and all(n.ready for n in status.nodes)

            # 1.32.0 is offered and reported, never taken by a patch policy.
            seen = await wait_for(lambda: (u := current(repo).clusters["meta"].updates) and u.version == f"v{PATCH}"
                                  and u, timeout=60, what="a check at 1.31.4")
            assert (seen.available, seen.takes) == (f"v{MINOR}", None)
            assert len(orbiter_commits(repo)) == 1

            key = read_secret(MASTER_KEY, repo.remote_file("secrets.yml") or "",
                              default_secret_names(PROVIDER)["maintenance"]).decode()
            by_id = {m.id: m for m in machines.list()}
            with connect(by_id[cp0], key) as cp:
                applies = [c for c in read_invocations(cp) if c["argv"][:3] == ["kubeadm", "upgrade", "apply"]]
            assert [(c["argv"][3], c["exit"]) for c in applies] == [(f"v{PATCH}", 0)]
            assert app0 in {n.machine for n in status.nodes}

            # A worker asking for a reboot (reboot: auto): drained, rebooted, back Ready and uncordoned.
            text = repo.remote_file("desired.yml") or ""
            reboots = repo.push({"desired.yml": text.replace("      updates:", "      osUpdates: {policy: none,"
                                                             " reboot: auto}\n      updates:", 1)}, "reboots allowed")
            await poke(client, wid)
            await wait_cluster(repo, reboots, timeout=300)
            boot = _ssh(by_id[app0], key, "cat /proc/sys/kernel/random/boot_id")
            _ssh(by_id[app0], key, "echo '*** System restart required ***' > /var/run/reboot-required")
            await wait_for(lambda: _ssh(by_id[app0], key, "cat /proc/sys/kernel/random/boot_id", None)
                           not in (None, boot), timeout=300, interval=2, what=f"{app0} rebooted")
            settled = await wait_for(lambda: (m := current(repo).clusters["meta"]) and m.phase == "Ready" and all(
                n.ready and not n.cordoned and not n.reboot_required for n in m.nodes) and m, timeout=300,
                what="Ready, uncordoned, no reboot due")
            assert len(settled.nodes) == 2
            with connect(by_id[cp0], key) as cp:
                calls = [c for c in _kube_steps(read_invocations(cp)) if c.endswith(f" {app0}")]
            # One drain and uncordon for the patch upgrade, one for the reboot.
            assert calls == [f"kubectl drain {app0}", f"kubectl uncordon {app0}"] * 2, calls
        finally:
            await stop_orb(client, orb, wid, [m["id"] for m in machines.list_status()])


def _ssh(machine, key: str, command: str, unreachable: object = ...) -> str | None:
    """A command's output; `unreachable` instead while the machine reboots (if given)."""
    try:
        with connect(machine, key) as session:
            return session.run(command, check=True).stdout.strip()
    except SshError:
        if unreachable is ...:
            raise
        return unreachable  # type: ignore[return-value]


def test_a_static_machine_says_what_its_own_apt_offers(local_provider):
    """Providers that serve nothing ask a member's own apt: one SSH round trip, first machine that answers."""
    from orbiter.activities.providers import runtime_for
    from orbiter.activities.ssh import generate_ed25519
    from orbiter.models.machines import Machine
    from orbiter.models.providers.static import StaticProvider

    from ..support.net import host
    from ..support.static_machines import prepare_server, static_servers

    private, public = generate_ed25519()
    with static_servers("updstatic", SUBNET, {"s1": host(SUBNET, 2)}, public,
                        [f"{v}-1.1" for v in (OLD, PATCH, MINOR)]) as (servers, apt):
        server = servers["s1"]
        prepare_server(server, private)
        with connect(server, private) as s:
            s.run(f"echo '{apt.source_line()}' > /etc/apt/sources.list.d/cluster.list", check=True)
        provider = StaticProvider.model_validate({"kind": "static", "pools": {"p": [{"id": "s1", "ip": server.ip}]}})
        gone = Machine(id="s0", provider="dc1", pool="p", ip=host(SUBNET, 200), key_secret="k")
        machine = server.model_copy(update={"provider": "dc1", "pool": "p"})
        seen = runtime_for("dc1", provider).offered_versions("kubeadm", [gone, machine], lambda m: private)
        assert seen.source == "apt on s1"  # the unreachable machine is skipped
        assert seen.versions == [f"{v}-1.1" for v in (MINOR, PATCH, OLD)]
