"""A Redis cluster's secrets, made in the worker: the password, its TLS certificates from
orbiter's own CA (activities/pki.py, as etcd's), and the users' client bundle.

They leave the worker only sealed. The password reaches machines as the node agents' secret file
auth.conf; activities that talk to Redis read it there, on the machine, so no activity input or
result carries it. Errors are one line naming the cluster, never a secret value.
"""

import re
import secrets

import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.pki import (
    CLIENT_CN,
    SecretReader,
    issue,
    key_pem,
    leaf_ok,
    load_cert,
    load_key,
    member_sans,
    new_ca,
    parse_bundle,
    pem,
)
from orbiter.models.kinds.redis.messages import (
    SENTINEL_PORT,
    EnsureRedisSecretsInput,
    EnsureRedisSecretsResult,
    auth_secret,
    ca_cert_secret,
    ca_secret,
    client_bundle_secret,
    member_cert_secret,
    member_key_secret,
)
from orbiter.models.secrets import SecretsError, seal
from orbiter.worker.masterkey import load_master_key

_REQUIREPASS = re.compile(rb"^requirepass (\S+)$", re.MULTILINE)


def auth_conf(password: str) -> bytes:
    """The password for clients (requirepass), for replicas (masterauth), and for Sentinel."""
    return f"requirepass {password}\nmasterauth {password}\n".encode()


def password_of(auth: bytes | None) -> str | None:
    match = _REQUIREPASS.search(auth or b"")
    return match.group(1).decode() if match else None


def _tls(input: EnsureRedisSecretsInput, have: SecretReader, out: dict[str, bytes]) -> dict[str, str]:
    """CA and member certificates (created or renewed into `out`); the bundle's TLS part."""
    cluster = input.cluster
    ca_doc = parse_bundle(have.get(ca_secret(cluster))) or {}
    ca, ca_key = load_cert(str(ca_doc.get("cert", ""))), load_key(str(ca_doc.get("key", "")).encode())
    if ca is None or ca_key is None or ca.public_key() != ca_key.public_key():
        ca, ca_key = new_ca(f"{cluster} redis CA")
        out[ca_secret(cluster)] = yaml.safe_dump({"cert": pem(ca).decode(), "key": key_pem(ca_key).decode()}).encode()
    ca_pem = pem(ca)
    if have.get(ca_cert_secret(cluster)) != ca_pem:
        out[ca_cert_secret(cluster)] = ca_pem
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]  # replicas are clients too
    for member in input.members:
        sans = member_sans(member.name, member.ip)
        cert_name, key_name = member_cert_secret(cluster, member.name), member_key_secret(cluster, member.name)
        cert_raw, key_raw = have.get(cert_name), have.get(key_name)
        key = load_key(key_raw) if key_raw else None
        if leaf_ok(load_cert(cert_raw) if cert_raw else None, key, ca, sans):
            continue
        if key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            out[key_name] = key_pem(key)
        out[cert_name] = pem(issue(ca, ca_key, key, member.name, sans, both))
    bundle = parse_bundle(have.get(client_bundle_secret(cluster))) or {}
    cert, key = load_cert(str(bundle.get("cert", ""))), load_key(str(bundle.get("key", "")).encode())
    if cert is None or key is None or not leaf_ok(cert, key, ca, None):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(ca, ca_key, key, CLIENT_CN, [], [ExtendedKeyUsageOID.CLIENT_AUTH])
    return {"ca": ca_pem.decode(), "cert": pem(cert).decode(), "key": key_pem(key).decode()}


def _ensure(input: EnsureRedisSecretsInput) -> dict[str, bytes]:
    """The secrets to create or replace, as plain values (sealed by the caller)."""
    cluster = input.cluster
    have = SecretReader(input.secrets, load_master_key())
    out: dict[str, bytes] = {}
    password = password_of(have.get(auth_secret(cluster)))
    if password is None:
        password = secrets.token_urlsafe(32)
        out[auth_secret(cluster)] = auth_conf(password)
    doc: dict[str, object] = {
        "sentinels": [f"{m.ip}:{SENTINEL_PORT}" for m in input.members],
        "master": input.master,
        "password": password,
        "tls": input.tls,
    }
    if input.tls:
        doc |= _tls(input, have, out)
    bundle = yaml.safe_dump(doc, sort_keys=False).encode()
    if have.get(client_bundle_secret(cluster)) != bundle:
        out[client_bundle_secret(cluster)] = bundle
    return out


@activity.defn
def ensure_redis_secrets(input: EnsureRedisSecretsInput) -> EnsureRedisSecretsResult:
    """Create what is missing of the password, certificates and client bundle; idempotent."""
    try:
        values = _ensure(input)
        master = load_master_key()
        return EnsureRedisSecretsResult(sealed_secrets={n: seal(master, n, v) for n, v in sorted(values.items())})
    except SecretsError as err:
        raise ApplicationError(f"redis cluster {input.cluster}: {err}", type="SecretsError",
                               non_retryable=True) from None
