"""Large objects (backups) encrypted as a stream of AES-256-GCM chunks, so neither side ever holds
the whole object in memory.

Each chunk is sealed with its own nonce and with the object's name, its index and whether it is
the last as associated data: a chunk moved, dropped, reordered or a stream cut short fails to
open, as does an object renamed. Pure functions over bytes.
"""

import os
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"ORBSEAL1"
CHUNK = 1 << 20


class SealError(Exception):
    """An object that does not open: altered, cut short, or another key."""


def _aad(name: str, index: int, last: bool) -> bytes:
    return f"{name}\0{index}\0{int(last)}".encode()


class Sealer:
    """Feed plaintext with `push`, end with `finish`; both return ciphertext to write."""

    def __init__(self, key: bytes, name: str) -> None:
        self._aead, self._name = AESGCM(key), name
        self._buf, self._index, self._started = bytearray(), 0, False

    def _record(self, data: bytes, last: bool) -> bytes:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, data, _aad(self._name, self._index, last))
        self._index += 1
        return struct.pack(">I", len(sealed)) + nonce + sealed

    def _header(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return MAGIC

    def push(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray(self._header())
        # A full chunk is held back until more follows, so the last record is known to be last.
        while len(self._buf) > CHUNK:
            out += self._record(bytes(self._buf[:CHUNK]), last=False)
            del self._buf[:CHUNK]
        return bytes(out)

    def finish(self) -> bytes:
        out = self._header() + self._record(bytes(self._buf), last=True)
        self._buf.clear()
        return out


def unseal_stream(key: bytes, name: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The plaintext of a sealed object, chunk by chunk; SealError when any part does not open."""
    aead, buf, index, last = AESGCM(key), bytearray(), 0, False
    source = iter(chunks)

    def need(n: int) -> bytes:
        while len(buf) < n:
            more = next(source, None)
            if more is None:
                raise SealError(f"{name}: cut short")
            buf.extend(more)
        data = bytes(buf[:n])
        del buf[:n]
        return data

    if need(len(MAGIC)) != MAGIC:
        raise SealError(f"{name}: not an orbiter-sealed object")
    while not last:
        length = struct.unpack(">I", need(4))[0]
        nonce, sealed = need(12), need(length)
        for last in (False, True):
            try:
                plain = aead.decrypt(nonce, sealed, _aad(name, index, last))
                break
            except InvalidTag:
                continue
        else:
            raise SealError(f"{name}: chunk {index} does not open (altered, moved, or another master key)")
        index += 1
        yield plain
    if buf or next(source, None):
        raise SealError(f"{name}: data after the last chunk")
