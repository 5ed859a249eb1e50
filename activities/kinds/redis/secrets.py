"""A Redis cluster's secrets, made in the worker: the password, its TLS certificates from
orbiter's own CA (activities/pki.py, as etcd's), and the users' client bundle.

They leave the worker only sealed. The password reaches machines as the node agents' secret file
auth.conf; activities that talk to Redis read it there, on the machine, so no activity input or
result carries it. Errors are one line naming the cluster, never a secret value.
"""

import re
import secrets

import yaml
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.pki import (
    SecretReader,
    client_pair,
    ensure_ca,
    ensure_leaf,
    key_pem,
    member_sans,
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
    _, ca, ca_key = ensure_ca(have, out, ca_secret(cluster), f"{cluster} redis CA")
    ca_pem = pem(ca)
    if have.get(ca_cert_secret(cluster)) != ca_pem:
        out[ca_cert_secret(cluster)] = ca_pem
    for member in input.members:
        ensure_leaf(have, out, member_cert_secret(cluster, member.name), member_key_secret(cluster, member.name),
                    ca, ca_key, member.name, member_sans(member.name, member.ip))
    cert, key, _ = client_pair(parse_bundle(have.get(client_bundle_secret(cluster))), ca, ca_key)
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
