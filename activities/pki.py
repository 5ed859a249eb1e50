"""orbiter's own certificate authority per cluster: a CA, leaf certificates for members and
clients, and the checks that decide whether one already issued can stay. Made in the worker;
kinds seal what they create (etcd's and Redis's certificates come from here).

Pure functions of keys and certificates, plus `SecretReader`, which reads a cluster's existing
secrets (sealed and not yet committed first, else secrets.yml at the commit being applied).
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

from orbiter.activities.repo import read_file
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretBox, parse_secrets_file, unseal

CA_DAYS = 3650
LEAF_DAYS = 730
# A leaf this close to expiry is issued again, so a renewal rides the next rolling change.
RENEW_BEFORE = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(hours=1)
CLIENT_CN = "orbiter-client"


class SecretReader:
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


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def load_cert(pem: bytes | str) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError:
        return None


def new_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA for one cluster ("meta etcd CA"), valid CA_DAYS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = utcnow()
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


def issue(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    cn: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    validity: datetime.timedelta | None = None,
) -> x509.Certificate:
    now = utcnow()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + (validity or datetime.timedelta(days=LEAF_DAYS)))
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


def san_set(sans: list[x509.GeneralName]) -> set[str]:
    return {f"{type(s).__name__}:{s.value}" for s in sans}


def leaf_ok(
    cert: x509.Certificate | None,
    key: ec.EllipticCurvePrivateKey | None,
    ca: x509.Certificate,
    sans: list[x509.GeneralName] | None,
    renew_before: datetime.timedelta = RENEW_BEFORE,
) -> bool:
    """Whether an existing leaf can stay: signed by this CA, for this key, not near expiry, same SANs."""
    if cert is None or key is None:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    if cert.public_key() != key.public_key() or cert.not_valid_after_utc - utcnow() < renew_before:
        return False
    if sans is None:
        return True
    try:
        have = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return False
    return san_set(have) == san_set(sans)


def parse_bundle(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


# -- what a kind's certificate activity does with these, in the same way for every kind ---------
Key = ec.EllipticCurvePrivateKey
SERVER_AND_CLIENT = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]  # peers are clients too


def ensure_ca(have: SecretReader, out: dict[str, bytes], name: str,
              common_name: str) -> tuple[dict[str, Any], x509.Certificate, Key]:
    """The cluster's CA document ({cert, key}, kinds may keep more in it) from secret `name`;
    a new CA into `out` when there is none or it does not hold together."""
    doc = parse_bundle(have.get(name)) or {}
    ca, ca_key = load_cert(str(doc.get("cert", ""))), load_key(str(doc.get("key", "")).encode())
    if ca is None or ca_key is None or ca.public_key() != ca_key.public_key():
        ca, ca_key = new_ca(common_name)
        doc = {"cert": pem(ca).decode(), "key": key_pem(ca_key).decode()}
        out[name] = yaml.safe_dump(doc).encode()
    return doc, ca, ca_key


def ensure_leaf(have: SecretReader, out: dict[str, bytes], cert_name: str, key_name: str,
                ca: x509.Certificate, ca_key: Key, cn: str, sans: list[x509.GeneralName],
                renew_before: datetime.timedelta = RENEW_BEFORE,
                validity: datetime.timedelta | None = None) -> x509.Certificate:
    """A member's certificate: the one it has while `leaf_ok`, else one issued into `out` for the
    key it has (a new IP changes the certificate only) or a new key."""
    cert_raw, key_raw = have.get(cert_name), have.get(key_name)
    key = load_key(key_raw) if key_raw else None
    cert = load_cert(cert_raw) if cert_raw else None
    if cert is not None and leaf_ok(cert, key, ca, sans, renew_before):
        return cert
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
        out[key_name] = key_pem(key)
    issued = issue(ca, ca_key, key, cn, sans, SERVER_AND_CLIENT, validity)
    out[cert_name] = pem(issued)
    return issued


def client_pair(bundle: dict[str, Any] | None, ca: x509.Certificate, ca_key: Key,
                renew_before: datetime.timedelta = RENEW_BEFORE,
                validity: datetime.timedelta | None = None) -> tuple[x509.Certificate, Key, bool]:
    """The client bundle's certificate and key, kept while `leaf_ok`; else a new pair (True)."""
    cert = load_cert(str((bundle or {}).get("cert", "")))
    key = load_key(str((bundle or {}).get("key", "")).encode())
    if cert is not None and key is not None and leaf_ok(cert, key, ca, None, renew_before):
        return cert, key, False
    key = ec.generate_private_key(ec.SECP256R1())
    return issue(ca, ca_key, key, CLIENT_CN, [], [ExtendedKeyUsageOID.CLIENT_AUTH], validity), key, True
