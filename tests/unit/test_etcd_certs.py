"""ensure_etcd_certs against a real git repo holding secrets.yml: create once, then only what changed."""

import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from orbiter.activities.kinds.etcd import ensure_etcd_certs
from orbiter.models.kinds.etcd.messages import (
    EnsureCertsInput,
    MemberAddress,
    ca_cert_secret,
    ca_secret,
    client_bundle_secret,
    member_cert_secret,
    member_key_secret,
)
from orbiter.models.refs import RepoRef, SecretsRef
from orbiter.models.secrets import merge_sealed, seal, unseal

from ..conftest import MASTER_KEY, GitRepo

CLUSTER = "meta"
MEMBERS = [MemberAddress(name=f"meta-{i}", ip=f"10.9.0.{10 + i}") for i in range(3)]
ENDPOINTS = [f"https://{m.ip}:2379" for m in MEMBERS]


def run(input: EnsureCertsInput) -> dict[str, str]:
    return ActivityEnvironment().run(ensure_etcd_certs, input).sealed_secrets


def values(sealed: dict[str, str]) -> dict[str, bytes]:
    return {name: unseal(MASTER_KEY, name, v) for name, v in sealed.items()}


def commit(repo: GitRepo, sealed: dict[str, str]) -> str:
    """What the write-back does: merge the sealed secrets into secrets.yml and push."""
    text = repo.remote_file("secrets.yml") if repo.has_remote_main() else None
    return repo.push({"secrets.yml": merge_sealed(MASTER_KEY, text, sealed)}, "secrets")


def all_names(members: list[MemberAddress]) -> set[str]:
    names = {ca_secret(CLUSTER), ca_cert_secret(CLUSTER), client_bundle_secret(CLUSTER)}
    for m in members:
        names |= {member_cert_secret(CLUSTER, m.name), member_key_secret(CLUSTER, m.name)}
    return names


def check_leaf(pem: bytes, ca: x509.Certificate, sans: set, usages: set) -> x509.Certificate:
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca)
    have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) if sans else set()
    assert have == sans
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    return cert


def member_sans(m: MemberAddress) -> set:
    return {
        x509.IPAddress(ipaddress.ip_address(m.ip)),
        x509.DNSName(m.name),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    }


def test_certs_are_created_once_and_reissued_only_where_needed(repo: GitRepo):
    repo.push({"README": "secrets live here\n"}, "init")
    ref = SecretsRef(repo=RepoRef(url=repo.url), commit=repo.push({"x": "1\n"}))
    first = run(EnsureCertsInput(cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, secrets=ref))
    assert set(first) == all_names(MEMBERS)
    got = values(first)

    ca_doc = yaml.safe_load(got[ca_secret(CLUSTER)])
    ca = x509.load_pem_x509_certificate(ca_doc["cert"].encode())
    assert got[ca_cert_secret(CLUSTER)] == ca_doc["cert"].encode()
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3000
    both = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    for m in MEMBERS:
        cert = check_leaf(got[member_cert_secret(CLUSTER, m.name)], ca, member_sans(m), both)
        assert 700 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 800
        assert b"PRIVATE KEY" in got[member_key_secret(CLUSTER, m.name)]
    bundle = yaml.safe_load(got[client_bundle_secret(CLUSTER)])
    assert bundle["endpoints"] == ENDPOINTS and bundle["ca"] == ca_doc["cert"]
    client = check_leaf(bundle["cert"].encode(), ca, set(), {ExtendedKeyUsageOID.CLIENT_AUTH})
    assert client.subject.rfc4514_string() == "CN=orbiter-client"
    assert "PRIVATE KEY" in bundle["key"]
    assert not any("PRIVATE KEY" in v for v in first.values())  # sealed, not plain

    # Not yet committed: the sealed overlay counts as existing.
    pending = SecretsRef(repo=ref.repo, commit=ref.commit, extra=first)
    assert run(EnsureCertsInput(cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, secrets=pending)) == {}

    # Committed: secrets.yml alone is enough.
    ref = SecretsRef(repo=ref.repo, commit=commit(repo, first))
    assert run(EnsureCertsInput(cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, secrets=ref)) == {}

    # One member moved: only its certificate is issued again (same key, new SANs).
    moved = [*MEMBERS[:2], MemberAddress(name="meta-2", ip="10.9.0.99")]
    changed = run(EnsureCertsInput(cluster=CLUSTER, members=moved, endpoints=ENDPOINTS, secrets=ref))
    assert set(changed) == {member_cert_secret(CLUSTER, "meta-2")}
    new = check_leaf(values(changed)[member_cert_secret(CLUSTER, "meta-2")], ca, member_sans(moved[2]), both)
    old = x509.load_pem_x509_certificate(got[member_cert_secret(CLUSTER, "meta-2")])
    assert new.public_key() == old.public_key()
    ref = SecretsRef(repo=ref.repo, commit=ref.commit, extra=changed)
    assert run(EnsureCertsInput(cluster=CLUSTER, members=moved, endpoints=ENDPOINTS, secrets=ref)) == {}

    # A new member gets a certificate; nothing else changes.
    grown = [*moved, MemberAddress(name="meta-3", ip="10.9.0.13")]
    added = run(EnsureCertsInput(cluster=CLUSTER, members=grown, endpoints=ENDPOINTS, secrets=ref))
    assert set(added) == {member_cert_secret(CLUSTER, "meta-3"), member_key_secret(CLUSTER, "meta-3")}

    # Other endpoints: only the bundle, with the same client certificate.
    endpoints = [*ENDPOINTS, "https://10.9.0.13:2379"]
    rebundled = run(EnsureCertsInput(cluster=CLUSTER, members=moved, endpoints=endpoints, secrets=ref))
    assert set(rebundled) == {client_bundle_secret(CLUSTER)}
    again = yaml.safe_load(values(rebundled)[client_bundle_secret(CLUSTER)])
    assert again["endpoints"] == endpoints and again["cert"] == bundle["cert"] and again["ca"] == bundle["ca"]


def test_errors_never_hold_secret_values(repo: GitRepo):
    ref = SecretsRef(repo=RepoRef(url=repo.url), commit=repo.push({"x": "1\n"}))
    first = run(EnsureCertsInput(cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, secrets=ref))
    plain = values(first)
    # A sealed value under another name does not open: a SecretsError naming the secret, not its value.
    swapped = dict(first)
    swapped[ca_secret(CLUSTER)] = first[member_key_secret(CLUSTER, "meta-0")]
    bad = SecretsRef(repo=ref.repo, commit=ref.commit, extra=swapped)
    with pytest.raises(ApplicationError) as info:
        run(EnsureCertsInput(cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, secrets=bad))
    assert info.value.type == "SecretsError" and info.value.non_retryable
    text = str(info.value) + repr(info.value.details) + str(info.value.__cause__ or "")
    assert ca_secret(CLUSTER) in text
    for name, value in plain.items():
        for line in value.decode().splitlines():
            if len(line) > 20:
                assert line not in text, name
        assert first[name] not in text


def test_a_broken_member_certificate_is_issued_again(tmp_path: Path, repo: GitRepo):
    ref = SecretsRef(repo=RepoRef(url=repo.url), commit=repo.push({"x": "1\n"}))
    first = run(EnsureCertsInput(cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, secrets=ref))
    name = member_cert_secret(CLUSTER, "meta-1")
    broken = {**first, name: seal(MASTER_KEY, name, b"not a certificate")}
    ref = SecretsRef(repo=ref.repo, commit=ref.commit, extra=broken)
    assert set(run(EnsureCertsInput(cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, secrets=ref))) == {name}


def test_rotate_ca_steps_trust_both_then_switch_then_drop_the_old_one(repo: GitRepo):
    """`orbiter rotate-ca` in the activity: each step changes the CAs once and is a no-op when
    repeated (a retry after a crash makes no third CA); leaves change only at the switch."""
    repo.push({"README": "secrets live here\n"}, "init")
    ref = SecretsRef(repo=RepoRef(url=repo.url), commit=repo.push({"x": "1\n"}))
    sealed = run(EnsureCertsInput(cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, secrets=ref))
    old_ca = yaml.safe_load(values(sealed)[ca_secret(CLUSTER)])["cert"]
    old_leaf = values(sealed)[member_cert_secret(CLUSTER, "meta-0")]

    def step(name: str) -> tuple[dict[str, bytes], object]:
        nonlocal sealed
        result = ActivityEnvironment().run(ensure_etcd_certs, EnsureCertsInput(
            cluster=CLUSTER, members=MEMBERS, endpoints=ENDPOINTS, ca_step=name,
            secrets=SecretsRef(repo=ref.repo, commit=ref.commit, extra=sealed)))
        sealed = {**sealed, **result.sealed_secrets}
        return values(result.sealed_secrets), result

    def bundle_ca() -> str:
        return yaml.safe_load(values(sealed)[client_bundle_secret(CLUSTER)])["ca"]

    # add-next: members and clients trust both; no leaf changes.
    changed, result = step("add-next")
    assert set(changed) == {ca_secret(CLUSTER), ca_cert_secret(CLUSTER), client_bundle_secret(CLUSTER)}
    assert result.trust != result.trust_before
    trusted = values(sealed)[ca_cert_secret(CLUSTER)].decode()
    assert trusted.count("BEGIN CERTIFICATE") == 2 and trusted.startswith(old_ca) and bundle_ca() == trusted
    new_ca = trusted.removeprefix(old_ca)
    assert step("add-next")[0] == {}  # repeated: nothing new

    # switch: every leaf and the client certificate from the new CA; both still trusted.
    changed, result = step("switch")
    assert {member_cert_secret(CLUSTER, m.name) for m in MEMBERS} <= set(changed)
    assert result.trust == result.trust_before  # the same two CAs, the new one now signs
    issuer = x509.load_pem_x509_certificate(new_ca.encode())
    for m in MEMBERS:
        x509.load_pem_x509_certificate(values(sealed)[member_cert_secret(CLUSTER, m.name)]).verify_directly_issued_by(
            issuer)
    client = yaml.safe_load(values(sealed)[client_bundle_secret(CLUSTER)])["cert"]
    x509.load_pem_x509_certificate(client.encode()).verify_directly_issued_by(issuer)
    assert values(sealed)[member_cert_secret(CLUSTER, "meta-0")] != old_leaf
    assert step("switch")[0] == {}
    assert step("add-next")[0] == {}  # a rotation under way starts no second one

    # drop-previous: the new CA alone.
    changed, result = step("drop-previous")
    assert values(sealed)[ca_cert_secret(CLUSTER)].decode() == new_ca == bundle_ca()
    assert not {member_cert_secret(CLUSTER, m.name) for m in MEMBERS} & set(changed)
    assert step("drop-previous")[0] == {} and step("")[0] == {}
