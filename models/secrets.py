"""secrets.yml: authenticated encryption of each secret under a key derived from the master key.

AES-256-GCM with the secret's name as associated data (a ciphertext moved to another name fails),
the key derived with scrypt and a per-file salt, and a key id so a wrong master key is named as
such instead of surfacing as a decryption failure. Pure functions: no file or network I/O.
"""

import base64
import functools
import hashlib
import os
from typing import Literal

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import Field

from .base import Model

HEADER = "# Encrypted by orbiter (AES-256-GCM, scrypt). Change with `orbiter secret add|rm`.\n"


class SecretsError(Exception):
    """A problem with secrets the user must fix; the message is one line and never holds a value."""


class Kdf(Model):
    name: Literal["scrypt"] = "scrypt"
    n: int = 2**15
    r: int = 8
    p: int = 1
    salt: str


class SecretsFile(Model):
    api_version: Literal["orbiter.dev/v1"] = Field("orbiter.dev/v1", alias="apiVersion")
    kind: Literal["Secrets"] = "Secrets"
    kdf: Kdf
    key_id: str = Field(alias="keyId")
    secrets: dict[str, str] = {}

    def to_yaml(self) -> str:
        data = self.model_dump(by_alias=True)
        data["secrets"] = dict(sorted(self.secrets.items()))
        return HEADER + yaml.safe_dump(data, sort_keys=False)


@functools.lru_cache(maxsize=64)
def _derive(master_key: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(master_key)


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"orbiter-key-id\0" + key).hexdigest()[:16]


def derive_codec_key(master_key: bytes) -> bytes:
    """The payload codec's key: fixed salt, so every worker and the CLI agree without state."""
    return _derive(master_key, b"orbiter-payload-codec-v1", 2**14, 8, 1)


class SecretBox:
    """Encrypts and decrypts the secrets of one secrets.yml."""

    def __init__(self, master_key: bytes, kdf: Kdf) -> None:
        self.kdf = kdf
        self._key = _derive(master_key, base64.b64decode(kdf.salt), kdf.n, kdf.r, kdf.p)
        self.key_id = key_id(self._key)
        self._aead = AESGCM(self._key)

    @classmethod
    def new(cls, master_key: bytes) -> "SecretBox":
        return cls(master_key, Kdf(salt=base64.b64encode(os.urandom(16)).decode()))

    @classmethod
    def for_file(cls, master_key: bytes, secrets: SecretsFile) -> "SecretBox":
        box = cls(master_key, secrets.kdf)
        if box.key_id != secrets.key_id:
            raise SecretsError(
                f"secrets.yml is encrypted with master key id {secrets.key_id}, but the master key"
                f" given has id {box.key_id}: point ORBITER_MASTERKEY_FILE at the right key"
            )
        return box

    def encrypt(self, name: str, value: bytes) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, value, name.encode())).decode()

    def decrypt(self, name: str, ciphertext: str) -> bytes:
        try:
            raw = base64.b64decode(ciphertext, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], name.encode())
        except (InvalidTag, ValueError) as err:
            raise SecretsError(
                f"secret {name!r} in secrets.yml failed authentication: it was altered or is"
                " corrupt; add it again with `orbiter secret add`"
            ) from err

    def empty_file(self) -> SecretsFile:
        return SecretsFile(kdf=self.kdf, keyId=self.key_id)


def parse_secrets_file(text: str | None) -> SecretsFile | None:
    if not text or not text.strip():
        return None
    try:
        data = yaml.safe_load(text)
        return SecretsFile.model_validate(data)
    except Exception as err:  # noqa: BLE001 - any parse failure is the same user error
        raise SecretsError(f"secrets.yml is not a valid orbiter secrets file: {str(err).splitlines()[0]}") from err


def open_secrets(master_key: bytes, text: str | None) -> tuple[SecretBox, SecretsFile]:
    """The box and file for a repo's secrets.yml, creating an empty file when there is none."""
    existing = parse_secrets_file(text)
    if existing is None:
        box = SecretBox.new(master_key)
        return box, box.empty_file()
    return SecretBox.for_file(master_key, existing), existing


def read_secret(master_key: bytes, text: str | None, name: str) -> bytes:
    """A secret's value from secrets.yml text."""
    secrets = parse_secrets_file(text)
    if secrets is None or name not in secrets.secrets:
        raise SecretsError(f"secret {name!r} is not in secrets.yml: add it with `orbiter secret add {name}`")
    return SecretBox.for_file(master_key, secrets).decrypt(name, secrets.secrets[name])


def _sealing_key(master_key: bytes) -> bytes:
    return _derive(master_key, b"orbiter-sealed-secret-v1", 2**14, 8, 1)


_SEAL_CACHE: dict[bytes, AESGCM] = {}


def _sealer(master_key: bytes) -> AESGCM:
    digest = hashlib.sha256(master_key).digest()
    if digest not in _SEAL_CACHE:
        _SEAL_CACHE[digest] = AESGCM(_sealing_key(master_key))
    return _SEAL_CACHE[digest]


def seal(master_key: bytes, name: str, value: bytes) -> str:
    """A secret orbiter created, encrypted for transit until the write-back puts it in secrets.yml.

    Independent of any secrets.yml salt, so it stays readable whichever file it lands in."""
    nonce = os.urandom(12)
    return "sealed:" + base64.b64encode(nonce + _sealer(master_key).encrypt(nonce, value, name.encode())).decode()


def unseal(master_key: bytes, name: str, sealed: str) -> bytes:
    try:
        raw = base64.b64decode(sealed.removeprefix("sealed:"), validate=True)
        return _sealer(master_key).decrypt(raw[:12], raw[12:], name.encode())
    except (InvalidTag, ValueError) as err:
        raise SecretsError(f"sealed secret {name!r} does not open with this master key") from err


def read_secret_with_extra(master_key: bytes, text: str | None, name: str, extra: dict[str, str]) -> bytes:
    """A secret from the overlay of sealed, not yet committed secrets, else from secrets.yml."""
    if name in extra:
        return unseal(master_key, name, extra[name])
    return read_secret(master_key, text, name)


def merge_sealed(master_key: bytes, text: str | None, sealed: dict[str, str]) -> str:
    """secrets.yml text with the sealed secrets re-encrypted into it.

    A secret whose value is unchanged keeps its ciphertext, so a repeated write-back is no commit."""
    box, secrets = open_secrets(master_key, text)
    for name, value in sorted(sealed.items()):
        plain = unseal(master_key, name, value)
        if name in secrets.secrets and box.decrypt(name, secrets.secrets[name]) == plain:
            continue
        secrets.secrets[name] = box.encrypt(name, plain)
    return secrets.to_yaml()


def derive_backup_key(master_key: bytes) -> bytes:
    """The key backups are encrypted with: fixed salt, so any worker with the master key (and the
    CLI, for a restore by hand) opens a backup another one took."""
    return _derive(master_key, b"orbiter-backup-v1", 2**14, 8, 1)
