"""Commands for a Kubernetes cluster over SSH: on one machine, or with admin.conf on the first
control plane that answers. Bootstrap tokens and certificate keys are made here and scrubbed from
every message, whichever tool printed them."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orbiter.activities.remote import OkCheck, Remote
from orbiter.models.kinds.kubernetes.messages import ADMIN_CONF, CONFIG_DIR, KubeTarget
from orbiter.models.machines import Machine
from orbiter.models.refs import SecretsRef

KUBECTL = f"kubectl --kubeconfig {ADMIN_CONF}"
ETCD_MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
KUBEADM_TIMEOUT = 600.0
KUBECTL_TIMEOUT = 120.0
POLL_SECONDS = 1.0
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
TOKEN_RE = re.compile(r"\b([a-z0-9]{6})\.([a-z0-9]{16})\b")
CERT_KEY_RE = re.compile(r"^([a-f0-9]{64})$", re.M)


def scrub(text: str, hidden: list[str]) -> str:
    """No token or certificate key in a message, whichever tool printed it."""
    for value in hidden:
        if value:
            text = text.replace(value, "***")
    return TOKEN_RE.sub("***", text)


def new_token() -> str:
    """A bootstrap token in kubeadm's format, made here so it is never in a workflow's history."""
    return (
        "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(6))
        + "."
        + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
    )


def ca_cert_hash(pem: str) -> str:
    """kubeadm's discovery pin: sha256 of the CA certificate's SubjectPublicKeyInfo."""
    der = (
        x509.load_pem_x509_certificate(pem.encode())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


class KubeRemote(Remote):
    """A session to one machine (or the first of several that answers), its messages scrubbed of
    the secret values in `hidden`."""

    def __init__(self, cluster: str, machines: list[Machine], secrets_ref: SecretsRef) -> None:
        self.hidden: list[str] = []
        super().__init__(f"kubernetes cluster {cluster}", machines, secrets_ref, pool=False,
                         scrub=lambda text: scrub(text, self.hidden))

    def run(self, script: str, what: str, error_type: str = "KubeadmError",  # type: ignore[override]
            timeout: float = KUBECTL_TIMEOUT, ok: OkCheck | None = None) -> str:
        return super().run(script, what, error_type, timeout=timeout, ok=ok)

    def exists(self, path: str) -> bool:  # type: ignore[override]
        return super().exists(path, "KubeadmError")

    def upload(self, path: str, content: str) -> None:  # type: ignore[override]
        super().upload(path, content, CONFIG_DIR)


@contextmanager
def on_machines(cluster: str, machines: list[Machine], secrets_ref: SecretsRef) -> Iterator[KubeRemote]:
    remote = KubeRemote(cluster, machines, secrets_ref)
    try:
        yield remote
    finally:
        remote.close()


def on_control_plane(target: KubeTarget) -> Any:
    return on_machines(target.cluster, target.via, target.secrets)


def delete_token(cp: KubeRemote, token: str) -> None:
    tid = token.split(".", 1)[0]
    cp.run(
        f"kubeadm token delete --kubeconfig {ADMIN_CONF} {tid}",
        "kubeadm token delete",
        ok=lambda _s, out, err: "not found" in err,
    )


