"""etcd activities on real machines: a 3-member TLS cluster, then one member added and removed."""

import shlex
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from orbiter.activities.kinds.etcd import ensure_etcd_certs, etcd_member_add, etcd_member_remove, etcd_status
from orbiter.activities.providers.local import LocalMachines
from orbiter.activities.providers.local.aptrepo import AptRepo
from orbiter.activities.ssh import connect
from orbiter.models.kinds.etcd.messages import (
    CONFIG_FILE,
    DATA_DIR,
    PKI_DIR,
    EnsureCertsInput,
    EtcdStatusInput,
    EtcdStatusResult,
    EtcdTarget,
    MemberAddInput,
    MemberAddress,
    MemberRemoveInput,
    ca_cert_secret,
    client_bundle_secret,
    member_cert_secret,
    member_key_secret,
)
from orbiter.models.machines import Machine
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.models.secrets import SecretBox, unseal

from ..conftest import MASTER_KEY, GitRepo

pytestmark = [pytest.mark.machines, pytest.mark.slow]

CLUSTER = "meta"
KEY_NAME = "etcdtest_maintenancekey"


def act(fn, input):
    return ActivityEnvironment().run(fn, input)


def host_version(package: str) -> str:
    out = subprocess.run(["apt-cache", "madison", package], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].split("|")[1].strip()


def peer(m: Machine) -> str:
    return f"https://{m.ip}:2380"


def client(m: Machine) -> str:
    return f"https://{m.ip}:2379"


def config(m: Machine, initial_cluster: str, state: str) -> str:
    pki = PKI_DIR
    return "\n".join(
        [
            f"ETCD_NAME={m.id}",
            f"ETCD_DATA_DIR={DATA_DIR}",
            f"ETCD_LISTEN_PEER_URLS={peer(m)}",
            f"ETCD_LISTEN_CLIENT_URLS={client(m)},https://127.0.0.1:2379",
            f"ETCD_INITIAL_ADVERTISE_PEER_URLS={peer(m)}",
            f"ETCD_ADVERTISE_CLIENT_URLS={client(m)}",
            f"ETCD_INITIAL_CLUSTER={initial_cluster}",
            f"ETCD_INITIAL_CLUSTER_STATE={state}",
            f"ETCD_INITIAL_CLUSTER_TOKEN={CLUSTER}-test",
            f"ETCD_CERT_FILE={pki}/member.crt",
            f"ETCD_KEY_FILE={pki}/member.key",
            f"ETCD_TRUSTED_CA_FILE={pki}/ca.crt",
            "ETCD_CLIENT_CERT_AUTH=true",
            f"ETCD_PEER_CERT_FILE={pki}/member.crt",
            f"ETCD_PEER_KEY_FILE={pki}/member.key",
            f"ETCD_PEER_TRUSTED_CA_FILE={pki}/ca.crt",
            "ETCD_PEER_CLIENT_CERT_AUTH=true",
            "",
        ]
    )


def test_etcd_cluster_status_add_and_remove(
    local_provider: LocalMachines, maintenance_key: tuple[str, str], tmp_path: Path
):
    private, public = maintenance_key
    suffix = uuid.uuid4().hex[:4]
    ids = [f"etcd{suffix}-{i}" for i in range(4)]
    repo = GitRepo(tmp_path)
    box = SecretBox.new(MASTER_KEY)
    file = box.empty_file()
    file.secrets[KEY_NAME] = box.encrypt(KEY_NAME, private.encode())
    secrets = SecretsRef(repo=RepoRef(url=repo.url), commit=repo.push({"secrets.yml": file.to_yaml()}))

    apt = AptRepo(local_provider)
    versions = {p: host_version(p) for p in ("etcd-server", "etcd-client")}
    apt.ensure_packages(sorted(versions.items()))
    apt.ensure_served()
    try:
        created = local_provider.create("etcd", ids, public, KEY_NAME)
        machines: list[Machine] = []
        for m in created:
            with connect(m, private) as s:
                machines.append(m.model_copy(update={"host_key": s.host_key}))
        first, fourth = machines[:3], machines[3]
        sealed: dict[str, str] = {}

        def certs(members: list[Machine]) -> None:
            ref = SecretsRef(repo=secrets.repo, commit=secrets.commit, extra=sealed)
            addresses = [MemberAddress(name=m.id, ip=m.ip) for m in members]
            got = act(
                ensure_etcd_certs,
                EnsureCertsInput(
                    cluster=CLUSTER, members=addresses, endpoints=[client(m) for m in members], secrets=ref
                ),
            )
            sealed.update(got.sealed_secrets)

        def secret(name: str) -> bytes:
            return unseal(MASTER_KEY, name, sealed[name])

        def install(m: Machine, conf: str) -> None:
            """etcd from the served repo, kept from starting with Debian's default config, then ours."""
            with connect(m, private) as s:
                s.upload("/etc/apt/sources.list.d/orbiter.list", (apt.source_line() + "\n").encode())
                s.upload("/usr/sbin/policy-rc.d", b"#!/bin/sh\nexit 101\n", mode="0755")
                pkgs = " ".join(f"{p}={v}" for p, v in versions.items())
                s.run(
                    "apt-get update -qq -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/orbiter.list"
                    " -o Dir::Etc::sourceparts=- && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq " + pkgs,
                    check=True,
                    timeout=600,
                )
                s.run(f"rm -f /usr/sbin/policy-rc.d; systemctl stop etcd; rm -rf {DATA_DIR}", check=True)
                s.upload(f"{PKI_DIR}/ca.crt", secret(ca_cert_secret(CLUSTER)), group="etcd")
                s.upload(f"{PKI_DIR}/member.crt", secret(member_cert_secret(CLUSTER, m.id)), group="etcd")
                s.upload(f"{PKI_DIR}/member.key", secret(member_key_secret(CLUSTER, m.id)), mode="0640", group="etcd")
                s.upload(CONFIG_FILE, conf.encode())
                s.run("systemctl daemon-reload && systemctl start --no-block etcd", check=True)

        certs(first)
        initial = ",".join(f"{m.id}={peer(m)}" for m in first)
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda m: install(m, config(m, initial, "new")), first))

        target = EtcdTarget(cluster=CLUSTER, via=first, endpoints=[client(m) for m in first], secrets=secrets)
        status: EtcdStatusResult = act(etcd_status, EtcdStatusInput(target=target, wait_healthy=True, expect_members=3))
        assert status.healthy and len(status.members) == 3
        assert sorted(m.name for m in status.members) == sorted(m.id for m in first)
        assert all(m.started and m.healthy and m.version and m.db_size for m in status.members)
        assert sum(m.leader for m in status.members) == 1
        assert all(int(m.id, 16) > 0 for m in status.members)

        # A key written with the user's bundle, read back after the membership changes.
        bundle = yaml.safe_load(secret(client_bundle_secret(CLUSTER)))

        def etcdctl(m: Machine, args: str) -> str:
            with connect(m, private) as s:
                for part in ("ca", "cert", "key"):
                    s.upload(f"/root/user/{part}.pem", bundle[part].encode(), mode="0600")
                eps = shlex.quote(",".join(bundle["endpoints"]))
                return s.run(
                    f"ETCDCTL_API=3 etcdctl --endpoints={eps} --cacert=/root/user/ca.pem --cert=/root/user/cert.pem"
                    f" --key=/root/user/key.pem {args}",
                    check=True,
                ).stdout

        assert etcdctl(first[0], "put /orbiter/hello world").strip() == "OK"

        # Scale up: the same add twice is one member; the new one joins with the list it was given.
        certs(machines)
        add = MemberAddInput(target=target, name=fourth.id, peer_url=peer(fourth))
        joined = act(etcd_member_add, add).initial_cluster
        assert act(etcd_member_add, add).initial_cluster == joined
        assert sorted(joined.split(",")) == sorted(f"{m.id}={peer(m)}" for m in machines)
        pending = act(etcd_status, EtcdStatusInput(target=target))
        assert len(pending.members) == 4 and not pending.healthy
        assert [m.started for m in pending.members if peer(fourth) in m.peer_urls] == [False]
        install(fourth, config(fourth, joined, "existing"))
        big = target.model_copy(update={"via": machines, "endpoints": [client(m) for m in machines]})
        status = act(etcd_status, EtcdStatusInput(target=big, wait_healthy=True, expect_members=4))
        assert sorted(m.name for m in status.members) == sorted(m.id for m in machines)
        assert all(m.healthy for m in status.members)

        # Scale down: removing twice is fine; the cluster is back to three.
        remove = MemberRemoveInput(target=big, name=fourth.id, peer_url=peer(fourth))
        act(etcd_member_remove, remove)
        act(etcd_member_remove, remove)
        with connect(fourth, private) as s:
            s.run(f"systemctl stop etcd; rm -rf {DATA_DIR}", check=True)
        status = act(
            etcd_status, EtcdStatusInput(target=target, wait_healthy=True, expect_members=3, timeout_seconds=30)
        )
        assert sorted(m.name for m in status.members) == sorted(m.id for m in first)
        assert etcdctl(first[1], "get --print-value-only /orbiter/hello").strip() == "world"

        # Wait with a member down: EtcdUnhealthy naming it; one unreachable machine in `via` is skipped.
        with connect(first[2], private) as s:
            s.run("systemctl stop etcd", check=True)
        down = target.model_copy(update={"via": [fourth.model_copy(update={"ip": "10.254.254.254"}), *first]})
        with pytest.raises(ApplicationError) as info:
            act(etcd_status, EtcdStatusInput(target=down, wait_healthy=True, timeout_seconds=3))
        assert info.value.type == "EtcdUnhealthy" and not info.value.non_retryable
        assert first[2].id in str(info.value) and CLUSTER in str(info.value)

        # Down to one member (the stopped one first, so quorum holds); the last is never removed.
        only = target.model_copy(update={"via": [first[0]], "endpoints": [client(first[0])]})
        for m in (first[2], first[1]):
            act(etcd_member_remove, MemberRemoveInput(target=only, name=m.id, peer_url=peer(m)))
        with pytest.raises(ApplicationError) as info:
            act(etcd_member_remove, MemberRemoveInput(target=only, name=first[0].id, peer_url=peer(first[0])))
        assert info.value.type == "QuorumRefused" and info.value.non_retryable
        assert etcdctl(first[0], "get --print-value-only /orbiter/hello").strip() == "world"
    finally:
        for mid in ids:
            local_provider.delete(mid)
