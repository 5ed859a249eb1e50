"""etcd's certificates: the cluster's own CA and one certificate per member, made in the worker.

They leave the worker only sealed; the member keys reach machines through the node agents'
secret files. Errors are one line naming the cluster, never a secret value.
"""

from __future__ import annotations

import hashlib
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


def trusted(ca_doc: dict) -> bytes:
    """What members and clients trust: the CA, and during a rotation the other one too."""
    # oldest first, so the switch from old-and-next to previous-and-new changes no byte of it
    certs = [str(ca_doc.get("previous", "")), str(ca_doc["cert"]), str((ca_doc.get("next") or {}).get("cert", ""))]
    return "".join(c for c in certs if c).encode()


def digest(bundle: bytes) -> str:
    return hashlib.sha256(bundle).hexdigest()[:16]


def _rotate(cluster: str, ca_doc: dict, step: str) -> dict | None:
    """The CA document after one step of a rotation; None when there is nothing to do (done already)."""
    if step == "add-next" and not ca_doc.get("next") and not ca_doc.get("previous"):
        ca, key = new_ca(f"{cluster} etcd CA")
        return {**ca_doc, "next": {"cert": pem(ca).decode(), "key": key_pem(key).decode()}}
    if step == "switch" and ca_doc.get("next"):
        return {"cert": ca_doc["next"]["cert"], "key": ca_doc["next"]["key"], "previous": ca_doc["cert"]}
    if step == "drop-previous" and ca_doc.get("previous"):
        return {"cert": ca_doc["cert"], "key": ca_doc["key"]}
    return None


def _ensure_certs(input: EnsureCertsInput,
                  digests: dict[str, str]) -> tuple[dict[str, bytes], dict[str, str]]:
    """The secrets to create or replace, as plain values (sealed by the caller), and each member
    certificate's expiry; `digests` gets the trusted CAs' digests before and after."""
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
        ca_doc = {"cert": pem(ca).decode(), "key": key_pem(ca_key).decode()}
        out[ca_secret(cluster)] = yaml.safe_dump(ca_doc).encode()
    trust_before = have.get(ca_cert_secret(cluster))
    if (step := _rotate(cluster, ca_doc, input.ca_step)) is not None:
        ca_doc = step
        out[ca_secret(cluster)] = yaml.safe_dump(ca_doc).encode()
        ca, ca_key = load_cert(str(ca_doc["cert"])), load_key(str(ca_doc["key"]).encode())
        assert ca is not None and ca_key is not None
    ca_pem = trusted(ca_doc)
    if trust_before != ca_pem:
        out[ca_cert_secret(cluster)] = ca_pem
    digests["before"], digests["after"] = digest(trust_before or ca_pem), digest(ca_pem)

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
        digests: dict[str, str] = {}
        values, expiry = _ensure_certs(input, digests)
        master = load_master_key()
        return EnsureCertsResult(sealed_secrets={n: seal(master, n, v) for n, v in sorted(values.items())},
                                 expiry=expiry, trust_before=digests["before"], trust=digests["after"])
    except SecretsError as err:
        raise ApplicationError(
            f"etcd cluster {input.cluster}: {err}", type="SecretsError", non_retryable=True
        ) from None
