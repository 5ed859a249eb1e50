"""Payload encryption: workflow inputs, results and failure messages leave the worker encrypted.

Temporal's history holds machine addresses, tokens and error texts; the server and anyone reading
it (Web UI, CLI) see only ciphertext unless they go through the codec server with the master key.

Payloads of COMPRESS_FROM bytes or more are deflated before they are encrypted: a thousand node
statuses in one write-back repeat the same package lists, and uncompressed they outgrow
Temporal's 2 MB limit for one payload and fill histories (bench/README.md, "scale"). No payload
holds a secret in plain text (secrets travel sealed), so the compressed length tells nothing
about one.
"""

import dataclasses
import os
import zlib
from collections.abc import Sequence

import temporalio.converter
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes

from orbiter.models.secrets import SecretsError, derive_codec_key, key_id

ENCODING = b"binary/encrypted"
COMPRESSED = b"binary/encrypted-deflate"  # the same, deflated before encryption
COMPRESS_FROM = 1024
KEY_ID_META = "encryption-key-id"


class CodecKeyError(SecretsError):
    """A payload cannot be decrypted with this master key: named so the operator can fix it."""


class EncryptionCodec(temporalio.converter.PayloadCodec):
    """AES-256-GCM over the whole serialized payload, so metadata (the encoding) is hidden too."""

    def __init__(self, master_key: bytes) -> None:
        key = derive_codec_key(master_key)
        self.key_id = key_id(key)
        self._key_id_bytes = self.key_id.encode()
        self._aead = AESGCM(key)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encode_one(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(p) for p in payloads]

    def encode_one(self, payload: Payload) -> Payload:
        plain, encoding = payload.SerializeToString(), ENCODING
        if len(plain) >= COMPRESS_FROM:
            deflated = zlib.compress(plain, 1)  # the fastest level: the worker is CPU-bound at scale
            if len(deflated) < len(plain):
                plain, encoding = deflated, COMPRESSED
        nonce = os.urandom(12)
        data = nonce + self._aead.encrypt(nonce, plain, self._key_id_bytes)
        return Payload(metadata={"encoding": encoding, KEY_ID_META: self._key_id_bytes}, data=data)

    def decode_one(self, payload: Payload) -> Payload:
        """Decrypts our payloads; others (e.g. written before encryption) pass through unchanged."""
        encoding = payload.metadata.get("encoding")
        if encoding not in (ENCODING, COMPRESSED):
            return payload
        found = payload.metadata.get(KEY_ID_META, b"").decode(errors="replace")
        if found != self.key_id:
            raise CodecKeyError(
                f"payload is encrypted with codec key id {found or '(none)'}, but this master key"
                f" gives key id {self.key_id}: use the master key the workers were started with"
            )
        try:
            plain = self._aead.decrypt(payload.data[:12], payload.data[12:], self._key_id_bytes)
        except InvalidTag as err:
            raise CodecKeyError(
                f"encrypted payload with key id {found} failed authentication: it was altered"
            ) from err
        # Authenticated above: only a holder of the key made it, so inflating it is safe.
        return Payload.FromString(zlib.decompress(plain) if encoding == COMPRESSED else plain)


def data_converter(master_key: bytes) -> DataConverter:
    """Pydantic conversion plus encryption; failure messages and stack traces are encrypted too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(master_key),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
