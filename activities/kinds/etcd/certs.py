"""etcd's certificates: the cluster's own CA and one certificate per member, made in the worker.

They leave the worker only sealed; the member keys reach machines through the node agents'
secret files. Errors are one line naming the cluster, never a secret value.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.repo import read_file
from orbiter.models.kinds.etcd.messages import (
    EnsureCertsInput,
    EnsureCertsResult,
    ca_cert_secret,
    ca_secret,
    client_bundle_secret,
    member_cert_secret,
    member_key_secret,
)
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretBox, SecretsError, parse_secrets_file, seal, unseal
from orbiter.worker.masterkey import load_master_key

CA_DAYS = 3650
LEAF_DAYS = 730
# A leaf this close to expiry is issued again, so a renewal rides the next rolling change.
RENEW_BEFORE = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(hours=1)
CLIENT_CN = "orbiter-client"


# -- certificates ----------------------------------------------------------------------------


class _Secrets:
    """Existing secrets: sealed ones not yet committed first, else secrets.yml at the commit."""

    def __init__(self, ref: SecretsRef, master: bytes) -> None:
        self.ref, self.master = ref, master
        self.file = parse_secrets_file(read_file(ref.repo, ref.commit, "secrets.yml"))
        self._box: SecretBox | None = None

    def get(self, name: str) -> bytes | None:
        if name in self.ref.extra:
            return unseal(self.master, name, self.ref.extra[name])
        if self.file is None or name not in self.file.secrets:
            return None
        if self._box is None:
            self._box = SecretBox.for_file(self.master, self.file)
        return self._box.decrypt(name, self.file.secrets[name])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(pem: bytes) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _load_cert(pem: bytes | str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError:
        return None


def _new_ca(cluster: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster} etcd CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    cn: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
) -> x509.Certificate:
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def member_sans(name: str, ip: str) -> list[x509.GeneralName]:
    """What a member is reached as: its IP (peers, clients), its name, and itself locally."""
    return [
        x509.IPAddress(ipaddress.ip_address(ip)),
        x509.DNSName(name),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]


def _san_set(sans: list[x509.GeneralName]) -> set[str]:
    return {f"{type(s).__name__}:{s.value}" for s in sans}


def _leaf_ok(
    cert: x509.Certificate | None,
    key: ec.EllipticCurvePrivateKey | None,
    ca: x509.Certificate,
    sans: list[x509.GeneralName] | None,
) -> bool:
    """Whether an existing leaf can stay: signed by this CA, for this key, not near expiry, same SANs."""
    if cert is None or key is None:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if cert.public_key() != key.public_key() or cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return False
    if sans is None:
        return True
    try:
        have = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return False
    return _san_set(have) == _san_set(sans)


def _parse_bundle(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _ensure_certs(input: EnsureCertsInput) -> dict[str, bytes]:
    """The secrets to create or replace, as plain values (sealed by the caller)."""
    cluster = input.cluster
    master = load_master_key()
    have = _Secrets(input.secrets, master)
    out: dict[str, bytes] = {}

    ca_doc = _parse_bundle(have.get(ca_secret(cluster))) or {}
    ca = _load_cert(str(ca_doc.get("cert", "")))
    ca_key = _load_key(str(ca_doc.get("key", "")).encode())
    if ca is None or ca_key is None or ca.public_key() != ca_key.public_key():
        ca, ca_key = _new_ca(cluster)
        out[ca_secret(cluster)] = yaml.safe_dump({"cert": _pem(ca).decode(), "key": _key_pem(ca_key).decode()}).encode()
    ca_pem = _pem(ca)
    if have.get(ca_cert_secret(cluster)) != ca_pem:
        out[ca_cert_secret(cluster)] = ca_pem

    for member in input.members:
        sans = member_sans(member.name, member.ip)
        cert_name, key_name = member_cert_secret(cluster, member.name), member_key_secret(cluster, member.name)
        cert_raw, key_raw = have.get(cert_name), have.get(key_name)
        key = _load_key(key_raw) if key_raw else None
        if _leaf_ok(_load_cert(cert_raw) if cert_raw else None, key, ca, sans):
            continue
        if key is None:  # a new IP keeps the member's key: only the certificate changes
            key = ec.generate_private_key(ec.SECP256R1())
            out[key_name] = _key_pem(key)
        both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        out[cert_name] = _pem(_issue(ca, ca_key, key, member.name, sans, both))

    bundle = _parse_bundle(have.get(client_bundle_secret(cluster)))
    if bundle is None or bundle.get("endpoints") != input.endpoints or bundle.get("ca") != ca_pem.decode():
        cert = _load_cert(str((bundle or {}).get("cert", "")))
        key = _load_key(str((bundle or {}).get("key", "")).encode())
        if not _leaf_ok(cert, key, ca, None) or key is None or cert is None:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue(ca, ca_key, key, CLIENT_CN, [], [ExtendedKeyUsageOID.CLIENT_AUTH])
        doc = {
            "endpoints": list(input.endpoints),
            "ca": ca_pem.decode(),
            "cert": _pem(cert).decode(),
            "key": _key_pem(key).decode(),
        }
        out[client_bundle_secret(cluster)] = yaml.safe_dump(doc, sort_keys=False).encode()
    return out


@activity.defn
def ensure_etcd_certs(input: EnsureCertsInput) -> EnsureCertsResult:
    """Create what is missing of the cluster's CA, member certificates and user bundle; idempotent."""
    try:
        values = _ensure_certs(input)
        master = load_master_key()
        return EnsureCertsResult(sealed_secrets={n: seal(master, n, v) for n, v in sorted(values.items())})
    except SecretsError as err:
        raise ApplicationError(
            f"etcd cluster {input.cluster}: {err}", type="SecretsError", non_retryable=True
        ) from None
