"""Static provider on real machines: bootstrap-to-maintenance key switch, host key pinning, release.

Local nspawn machines stand in for the operator's own servers: each is created with only a
bootstrap key and then addressed statically (its IP), as orbiter would
address a machine listed in a `kind: static` provider.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from orbiter.activities.machines import acquire_machines, release_machine
from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.static import switch_to_maintenance_key
from orbiter.activities.ssh import (
    AuthFailed,
    HostKeyChanged,
    SshSession,
    Unreachable,
    connect,
    fingerprint,
    generate_ed25519,
)
from orbiter.models.machines import Machine
from orbiter.models.providers import default_secret_names
from orbiter.models.providers.static import StaticProvider
from orbiter.models.provision import AcquireMachinesInput, ReleaseMachineInput
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.models.secrets import open_secrets, seal
from orbiter.worker.masterkey import load_master_key

from ..conftest import GitRepo

pytestmark = pytest.mark.machines

PROVIDER = "edge"
POOL = "servers"
NAMES = default_secret_names(PROVIDER)
IDS = {
    "switch": "orb-st-switch",
    "crash": "orb-st-crash",
    "sudo": "orb-st-sudo",
    "hostkey": "orb-st-hostkey",
    "activity": "orb-st-activity",
    "keep": "orb-st-keep",
    "refuse": "orb-st-refuse",
    "shared": "orb-st-shared",
}


@pytest.fixture(scope="module")
def bootstrap_key() -> tuple[str, str]:
    """The key the operator's servers trust before orbiter takes them over."""
    return generate_ed25519()


@pytest.fixture(scope="module")
def static_machines(local_provider: LocalMachines, bootstrap_key: tuple[str, str]) -> Iterator[dict[str, Machine]]:
    """Fresh machines trusting only the bootstrap key, addressed statically; always deleted."""
    try:
        created = local_provider.create(POOL, list(IDS.values()), bootstrap_key[1], "unused")
        by_id = {m.id: m for m in created}
        yield {
            role: Machine(id=mid, provider=PROVIDER, pool=POOL, ip=by_id[mid].ip,
                          key_secret=NAMES["maintenance"])
            for role, mid in IDS.items()
        }
    finally:
        for mid in IDS.values():
            with contextlib.suppress(Exception):
                local_provider.delete(mid)


def authorized_keys(session: SshSession, user: str = "root") -> list[str]:
    home = "/root" if user == "root" else f"/home/{user}"
    out = session.run(f"cat {home}/.ssh/authorized_keys", check=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def blob(public: str) -> str:
    return public.split()[1]


def assert_switched(machine: Machine, bootstrap: tuple[str, str], maintenance: tuple[str, str],
                    user: str = "root") -> None:
    """Maintenance key logs in (host key pinned), bootstrap key no longer does, key present once."""
    assert machine.host_key and machine.host_key.startswith("ssh-ed25519 ")
    with connect(machine, maintenance[0], accept_new_host_key=False) as s:
        keys = authorized_keys(s, user)
        assert [k for k in keys if blob(maintenance[1]) in k] == [maintenance[1].strip()]
        assert not [k for k in keys if blob(bootstrap[1]) in k]
    with pytest.raises(AuthFailed, match=machine.id):
        connect(machine, bootstrap[0])


def test_switch_replaces_bootstrap_key_and_retry_is_harmless(
    static_machines: dict[str, Machine], bootstrap_key: tuple[str, str]
) -> None:
    machine = static_machines["switch"]
    maintenance = generate_ed25519()
    with connect(machine, bootstrap_key[0]) as s:
        real_host_key = s.host_key
        assert [blob(k) for k in authorized_keys(s)] == [blob(bootstrap_key[1])]
    with pytest.raises(AuthFailed):
        connect(machine, maintenance[0])

    switched = switch_to_maintenance_key(machine, bootstrap_key[0], maintenance[0], maintenance[1])
    assert switched.host_key is not None and switched.host_key.split()[:2] == real_host_key.split()[:2]
    assert_switched(switched, bootstrap_key, maintenance)

    # A retry (e.g. the activity ran again after the worker died) changes nothing and breaks nothing,
    # both from an unpinned machine and from the pinned one.
    for again_from in (machine, switched):
        again = switch_to_maintenance_key(again_from, bootstrap_key[0], maintenance[0], maintenance[1])
        assert again.host_key == switched.host_key
        assert_switched(again, bootstrap_key, maintenance)


def test_crash_between_adding_and_removing_is_finished_by_a_retry(
    static_machines: dict[str, Machine], bootstrap_key: tuple[str, str]
) -> None:
    machine = static_machines["crash"]
    maintenance = generate_ed25519()
    # The state a crash after "maintenance key added" and before "bootstrap key removed" leaves.
    with connect(machine, bootstrap_key[0]) as s:
        s.run(f"echo '{maintenance[1]}' >> /root/.ssh/authorized_keys", check=True)
        assert len(authorized_keys(s)) == 2
    with connect(machine, maintenance[0]):
        pass  # both keys log in now

    switched = switch_to_maintenance_key(machine, bootstrap_key[0], maintenance[0], maintenance[1])
    assert_switched(switched, bootstrap_key, maintenance)
    with connect(switched, maintenance[0]) as s:
        assert authorized_keys(s) == [maintenance[1].strip()]


def test_switch_keeps_other_keys_and_copes_with_no_final_newline(
    static_machines: dict[str, Machine], bootstrap_key: tuple[str, str]
) -> None:
    machine = static_machines["keep"]
    maintenance = generate_ed25519()
    admin = generate_ed25519()
    # An operator's file: a comment, their own key, the bootstrap key last and no final newline.
    content = f"# managed by hand\n{admin[1].replace('orbiter', 'admin@laptop')}\n{bootstrap_key[1]}"
    with connect(machine, bootstrap_key[0]) as s:
        s.upload("/root/.ssh/authorized_keys", content.encode(), mode="0600")

    switched = switch_to_maintenance_key(machine, bootstrap_key[0], maintenance[0], maintenance[1])
    assert_switched(switched, bootstrap_key, maintenance)
    with connect(switched, maintenance[0]) as s:
        keys = authorized_keys(s)
        assert keys[:2] == content.splitlines()[:2]  # not orbiter's to remove
    with connect(switched, admin[0]):
        pass


def test_switch_for_a_non_root_user_with_sudo(
    static_machines: dict[str, Machine], bootstrap_key: tuple[str, str]
) -> None:
    root = static_machines["sudo"]
    maintenance = generate_ed25519()
    with connect(root, bootstrap_key[0]) as s:
        s.run("useradd -m -s /bin/bash deploy", check=True)
        s.upload("/etc/sudoers.d/deploy", b"deploy ALL=(ALL) NOPASSWD: ALL\n", mode="0440")
        s.upload("/home/deploy/.ssh/authorized_keys", bootstrap_key[1].encode() + b"\n", mode="0600",
                 owner="deploy", group="deploy")
        s.run("chown deploy:deploy /home/deploy/.ssh && chmod 700 /home/deploy/.ssh", check=True)
    deploy = root.model_copy(update={"user": "deploy"})

    switched = switch_to_maintenance_key(deploy, bootstrap_key[0], maintenance[0], maintenance[1])
    assert switched.user == "deploy"
    assert_switched(switched, bootstrap_key, maintenance, user="deploy")
    with connect(switched, maintenance[0]) as s:
        assert s.run("id -u", check=True).stdout.strip() == "0"  # commands run through sudo
        assert s.run("stat -c '%U %a' /home/deploy/.ssh /home/deploy/.ssh/authorized_keys",
                     check=True).stdout.split() == ["deploy", "700", "deploy", "600"]
    # root's own authorized_keys was not touched: it is not the user orbiter logs in as.
    with connect(root, bootstrap_key[0]) as s:
        assert [blob(k) for k in authorized_keys(s)] == [blob(bootstrap_key[1])]

    again = switch_to_maintenance_key(switched, bootstrap_key[0], maintenance[0], maintenance[1])
    assert_switched(again, bootstrap_key, maintenance, user="deploy")


def _ecdsa_key() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode() + " operator"


def test_a_maintenance_key_sshd_refuses_keeps_the_bootstrap_key(
    static_machines: dict[str, Machine], bootstrap_key: tuple[str, str]
) -> None:
    """A hardened sshd that accepts only ECDSA keys: orbiter's ed25519 maintenance key cannot log
    in, so the switch stops with one line naming the machine, and the operator's key still works."""
    machine = static_machines["refuse"]
    operator = _ecdsa_key()
    with connect(machine, bootstrap_key[0]) as s:
        s.run(f"echo '{operator[1]}' >> /root/.ssh/authorized_keys", check=True)
        s.upload("/etc/ssh/sshd_config.d/hardened.conf", b"PubkeyAcceptedAlgorithms ecdsa-sha2-nistp256\n")
        s.run("systemctl reload ssh", check=True)
    _connect_retrying(machine, operator[0]).close()  # sshd re-executes itself on reload
    maintenance = generate_ed25519()
    with pytest.raises(AuthFailed, match=f"machine {machine.id} .*maintenance key does not log in.*bootstrap key"):
        switch_to_maintenance_key(machine, operator[0], maintenance[0], maintenance[1])
    with _connect_retrying(machine, operator[0]) as s:
        assert blob(operator[1]) in "\n".join(authorized_keys(s))


def _connect_retrying(machine: Machine, key: str, seconds: float = 30) -> SshSession:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return connect(machine, key, timeout=5)
        except Unreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_pinned_host_key_refuses_a_machine_whose_host_key_changed(
    static_machines: dict[str, Machine], bootstrap_key: tuple[str, str]
) -> None:
    machine = static_machines["hostkey"]
    maintenance = generate_ed25519()
    with connect(machine, bootstrap_key[0]) as s:
        old = s.host_key
        s.run("rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh", check=True)
    pinned = machine.model_copy(update={"host_key": old})
    with _connect_retrying(machine, bootstrap_key[0]) as s:
        new = s.host_key
    assert new.startswith("ssh-ed25519 ") and new.split()[1] != old.split()[1]

    for attempt in (lambda: connect(pinned, bootstrap_key[0]),
                    lambda: connect(pinned, maintenance[0]),
                    lambda: switch_to_maintenance_key(pinned, bootstrap_key[0], maintenance[0], maintenance[1])):
        with pytest.raises(HostKeyChanged) as err:
            attempt()
        msg = str(err.value)
        assert machine.id in msg and fingerprint(old) in msg and fingerprint(new) in msg and "\n" not in msg
    # Nothing was changed on the machine: the bootstrap key is still the only one.
    with connect(machine, bootstrap_key[0]) as s:
        assert [blob(k) for k in authorized_keys(s)] == [blob(bootstrap_key[1])]


def test_acquire_and_release_through_the_activities(
    static_machines: dict[str, Machine], bootstrap_key: tuple[str, str], repo: GitRepo, tmp_path: Path
) -> None:
    machine = static_machines["activity"]
    master = load_master_key()
    box, secrets = open_secrets(master, None)
    secrets.secrets[NAMES["bootstrap"]] = box.encrypt(NAMES["bootstrap"], bootstrap_key[0].encode())
    commit = repo.push({"secrets.yml": secrets.to_yaml()}, "bootstrap key")
    maintenance = generate_ed25519()
    ref = SecretsRef(
        repo=RepoRef(url=repo.url),
        commit=commit,
        extra={
            NAMES["maintenance"]: seal(master, NAMES["maintenance"], maintenance[0].encode()),
            NAMES["maintenance_pub"]: seal(master, NAMES["maintenance_pub"], maintenance[1].encode()),
        },
    )
    provider = StaticProvider.model_validate(
        {"kind": "static", "pools": {POOL: [{"id": machine.id, "ip": machine.ip}]}})
    env = ActivityEnvironment()
    acquire = AcquireMachinesInput(orb="one", cluster="meta", kind="etcd", provider_name=PROVIDER,
                                   provider=provider, pool=POOL, machine_ids=[machine.id], secrets=ref)

    [got] = env.run(acquire_machines, acquire).machines
    assert (got.id, got.provider, got.ip, got.user, got.key_secret) == (
        machine.id, PROVIDER, machine.ip, "root", NAMES["maintenance"])
    assert_switched(got, bootstrap_key, maintenance)

    # Acquiring again (a retried activity, with the host key pinned from the first time) is harmless.
    again = acquire.model_copy(update={"host_keys": {got.id: got.host_key}})
    [got2] = env.run(acquire_machines, again).machines
    assert got2 == got
    assert_switched(got2, bootstrap_key, maintenance)

    with connect(got, maintenance[0]) as s:
        s.upload("/etc/orbiter-dummy.conf", b"x\n")
        s.upload("/etc/systemd/system/orbiter-dummy.service",
                 b"[Unit]\nDescription=dummy\n[Service]\nExecStart=/bin/sleep infinity\n"
                 b"[Install]\nWantedBy=multi-user.target\n")
        s.run("mkdir -p /var/lib/orbiter-dummy && touch /var/lib/orbiter-dummy/data", check=True)
        s.run("systemctl daemon-reload && systemctl enable --now orbiter-dummy.service", check=True)
        assert s.run("systemctl is-active orbiter-dummy.service").stdout.strip() == "active"

    release = ReleaseMachineInput(
        provider_name=PROVIDER, provider=provider, machine=got, secrets=ref,
        units=["orbiter-dummy.service"],
        files=["/etc/orbiter-dummy.conf", "/etc/systemd/system/orbiter-dummy.service"],
        data_dirs=["/var/lib/orbiter-dummy"],
    )
    env.run(release_machine, release)
    env.run(release_machine, release)  # idempotent: releasing twice is fine

    # The machine stays, handed back as it came: the bootstrap key logs in, the maintenance key not.
    with pytest.raises(AuthFailed):
        connect(got, maintenance[0])
    with connect(got, bootstrap_key[0]) as s:
        assert not [k for k in authorized_keys(s) if blob(maintenance[1]) in k]
        gone = "for p in /etc/orbiter-dummy.conf /etc/systemd/system/orbiter-dummy.service /var/lib/orbiter-dummy" \
               " /etc/orbiter/claim; do [ -e $p ] && echo $p; done; true"
        assert s.run(gone, check=True).stdout == ""
        assert s.run("systemctl is-active orbiter-dummy.service").stdout.strip() in ("inactive", "unknown")
        assert s.run("systemctl list-unit-files orbiter-dummy.service --no-legend").stdout.strip() == ""
        assert s.run("systemctl is-system-running --wait").stdout.strip() in ("running", "degraded")


def secrets_for(repo: GitRepo, bootstrap: tuple[str, str], maintenance: tuple[str, str], message: str) -> SecretsRef:
    """An orb's secrets: its own bootstrap key committed, its maintenance key not yet."""
    master = load_master_key()
    box, secrets = open_secrets(master, None)
    secrets.secrets[NAMES["bootstrap"]] = box.encrypt(NAMES["bootstrap"], bootstrap[0].encode())
    commit = repo.push({"secrets.yml": secrets.to_yaml()}, message)
    return SecretsRef(repo=RepoRef(url=repo.url), commit=commit, extra={
        NAMES["maintenance"]: seal(master, NAMES["maintenance"], maintenance[0].encode()),
        NAMES["maintenance_pub"]: seal(master, NAMES["maintenance_pub"], maintenance[1].encode()),
    })


def test_a_machine_two_orbs_list_belongs_to_the_first_until_it_releases_it(
    static_machines: dict[str, Machine], bootstrap_key: tuple[str, str], repo: GitRepo, tmp_path: Path
) -> None:
    """Two orbs list one server (the operator gave each its own bootstrap key): the first takes it
    over and claims it; the second is refused with the first orb's name and changes nothing; once
    the first releases it, the second takes it."""
    machine = static_machines["shared"]
    second_bootstrap = generate_ed25519()
    with connect(machine, bootstrap_key[0]) as s:  # the operator lets the second orb's key in too
        s.run(f"echo '{second_bootstrap[1]}' >> /root/.ssh/authorized_keys", check=True)
    provider = StaticProvider.model_validate(
        {"kind": "static", "pools": {POOL: [{"id": machine.id, "ip": machine.ip}]}})
    one_key, two_key = generate_ed25519(), generate_ed25519()
    one = secrets_for(repo, bootstrap_key, one_key, "orb one")
    (tmp_path / "two").mkdir()
    other = GitRepo(tmp_path / "two")
    two = secrets_for(other, second_bootstrap, two_key, "orb two")
    env = ActivityEnvironment()

    def acquire(orb: str, ref: SecretsRef) -> AcquireMachinesInput:
        return AcquireMachinesInput(orb=orb, cluster="meta", kind="etcd", provider_name=PROVIDER, provider=provider,
                                    pool=POOL, machine_ids=[machine.id], secrets=ref)

    [taken] = env.run(acquire_machines, acquire("one", one)).machines
    with pytest.raises(ApplicationError) as refused:
        env.run(acquire_machines, acquire("two", two))
    assert refused.value.type == "MachineClaimed" and refused.value.non_retryable
    assert refused.value.message == (
        f"machine {machine.id} is claimed by orb one (cluster meta): release it there first, or run"
        f" `orbiter machines release {PROVIDER}/{machine.id} --force` if that orb is gone")
    with connect(taken, one_key[0]) as s:  # the second orb changed nothing
        keys = authorized_keys(s)
        assert not [k for k in keys if blob(two_key[1]) in k] and [k for k in keys if blob(one_key[1]) in k]
        assert "orb: one" in s.run("cat /etc/orbiter/claim", check=True).stdout

    env.run(release_machine, ReleaseMachineInput(provider_name=PROVIDER, provider=provider, machine=taken,
                                                 secrets=one))
    [second] = env.run(acquire_machines, acquire("two", two)).machines
    assert_switched(second, second_bootstrap, two_key)
    with connect(second, two_key[0]) as s:
        assert "orb: two" in s.run("cat /etc/orbiter/claim", check=True).stdout
