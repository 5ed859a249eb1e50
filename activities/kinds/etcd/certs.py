"""etcd's certificates: the cluster's own CA and one certificate per member, made in the worker.

They leave the worker only sealed; the member keys reach machines through the node agents'
secret files. Errors are one line naming the cluster, never a secret value.
"""

from __future__ import annotations

from datetime import timedelta

import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.pki import (
    CLIENT_CN,
    RENEW_BEFORE,
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
from orbiter.models.kinds.etcd.messages import (
    EnsureCertsInput,
    EnsureCertsResult,
    ca_cert_secret,
    ca_secret,
    client_bundle_secret,
    member_cert_secret,
    member_key_secret,
)
from orbiter.models.secrets import SecretsError, seal
from orbiter.worker.masterkey import load_master_key


def _ensure_certs(input: EnsureCertsInput) -> tuple[dict[str, bytes], dict[str, str]]:
    """The secrets to create or replace, as plain values (sealed by the caller), and each member
    certificate's expiry."""
    cluster = input.cluster
    master = load_master_key()
    have = SecretReader(input.secrets, master)
    out: dict[str, bytes] = {}
    expiry: dict[str, str] = {}
    validity = timedelta(seconds=input.validity_seconds) if input.validity_seconds else None
    renew = timedelta(seconds=input.renew_before_seconds) if input.renew_before_seconds else RENEW_BEFORE

    ca_doc = parse_bundle(have.get(ca_secret(cluster))) or {}
    ca = load_cert(str(ca_doc.get("cert", "")))
    ca_key = load_key(str(ca_doc.get("key", "")).encode())
    if ca is None or ca_key is None or ca.public_key() != ca_key.public_key():
        ca, ca_key = new_ca(f"{cluster} etcd CA")
        out[ca_secret(cluster)] = yaml.safe_dump({"cert": pem(ca).decode(), "key": key_pem(ca_key).decode()}).encode()
    ca_pem = pem(ca)
    if have.get(ca_cert_secret(cluster)) != ca_pem:
        out[ca_cert_secret(cluster)] = ca_pem

    for member in input.members:
        sans = member_sans(member.name, member.ip)
        cert_name, key_name = member_cert_secret(cluster, member.name), member_key_secret(cluster, member.name)
        cert_raw, key_raw = have.get(cert_name), have.get(key_name)
        key = load_key(key_raw) if key_raw else None
        cert = load_cert(cert_raw) if cert_raw else None
        if leaf_ok(cert, key, ca, sans, renew) and cert is not None:
            expiry[member.name] = cert.not_valid_after_utc.isoformat()
            continue
        if key is None:  # a new IP keeps the member's key: only the certificate changes
            key = ec.generate_private_key(ec.SECP256R1())
            out[key_name] = key_pem(key)
        both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        issued = issue(ca, ca_key, key, member.name, sans, both, validity)
        out[cert_name], expiry[member.name] = pem(issued), issued.not_valid_after_utc.isoformat()

    bundle = parse_bundle(have.get(client_bundle_secret(cluster)))
    cert = load_cert(str((bundle or {}).get("cert", "")))
    key = load_key(str((bundle or {}).get("key", "")).encode())
    fresh = leaf_ok(cert, key, ca, None, renew)
    if bundle is None or bundle.get("endpoints") != input.endpoints or bundle.get("ca") != ca_pem.decode() or not fresh:
        if not fresh or key is None or cert is None:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = issue(ca, ca_key, key, CLIENT_CN, [], [ExtendedKeyUsageOID.CLIENT_AUTH], validity)
        doc = {
            "endpoints": list(input.endpoints),
            "ca": ca_pem.decode(),
            "cert": pem(cert).decode(),
            "key": key_pem(key).decode(),
        }
        out[client_bundle_secret(cluster)] = yaml.safe_dump(doc, sort_keys=False).encode()
    return out, expiry


@activity.defn
def ensure_etcd_certs(input: EnsureCertsInput) -> EnsureCertsResult:
    """Create what is missing of the cluster's CA, member certificates and user bundle; idempotent."""
    try:
        values, expiry = _ensure_certs(input)
        master = load_master_key()
        return EnsureCertsResult(sealed_secrets={n: seal(master, n, v) for n, v in sorted(values.items())},
                                 expiry=expiry)
    except SecretsError as err:
        raise ApplicationError(
            f"etcd cluster {input.cluster}: {err}", type="SecretsError", non_retryable=True
        ) from None
