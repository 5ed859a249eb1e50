"""The master key file: any passphrase, read once per process."""

import os
from pathlib import Path

from orbiter.models.secrets import SecretsError

DEFAULT_MASTERKEY_FILE = "/etc/orbiter/masterkey"


def masterkey_path() -> Path:
    return Path(os.environ.get("ORBITER_MASTERKEY_FILE", DEFAULT_MASTERKEY_FILE))


def load_master_key(path: Path | None = None) -> bytes:
    path = path or masterkey_path()
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise SecretsError(
            f"master key file {path} does not exist: create it (any passphrase) or set"
            " ORBITER_MASTERKEY_FILE"
        ) from None
    except PermissionError:
        raise SecretsError(f"master key file {path} is not readable by this user") from None
    if not key:
        raise SecretsError(f"master key file {path} is empty: write a passphrase into it")
    return key
