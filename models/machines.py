"""Machines as every provider hands them out, and how to reach one over SSH."""

from .base import Model


class Machine(Model):
    """One machine in use by a cluster; the id is unique within its provider."""

    id: str
    provider: str
    pool: str
    ip: str
    ssh_port: int = 22
    user: str = "root"
    # Name of the secret holding the private key that logs in (never the key itself).
    key_secret: str
    # Pinned on first contact ("ssh-ed25519 AAAA..."); None until then.
    host_key: str | None = None
