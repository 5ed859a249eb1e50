"""etcd's certificates: the cluster's own CA and one certificate per member, made in the worker.

They leave the worker only sealed; the member keys reach machines through the node agents'
secret files. Errors are one line naming the cluster, never a secret value.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

import yaml
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.pki import (
    RENEW_BEFORE,
    SecretReader,
    client_pair,
    ensure_ca,
    ensure_leaf,
    key_pem,
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

    ca_doc, ca, ca_key = ensure_ca(have, out, ca_secret(cluster), f"{cluster} etcd CA")
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
        issued = ensure_leaf(have, out, member_cert_secret(cluster, member.name),
                             member_key_secret(cluster, member.name), ca, ca_key, member.name,
                             member_sans(member.name, member.ip), renew, validity)
        expiry[member.name] = issued.not_valid_after_utc.isoformat()

    bundle = parse_bundle(have.get(client_bundle_secret(cluster)))
    cert, key, renewed = client_pair(bundle, ca, ca_key, renew, validity)
    if bundle is None or bundle.get("endpoints") != input.endpoints or bundle.get("ca") != ca_pem.decode() or renewed:
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
