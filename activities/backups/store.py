"""Where backups are kept: an interface small enough for a directory or an object store.

A backup is two objects under the cluster's prefix: `<id>.snap` (the sealed snapshot) and
`<id>.json` (its metadata, written last, so a listed backup is always complete). Writes are
atomic (a partial object is never visible under its name), so a retried activity that finds the
metadata finds a whole backup.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import BinaryIO


class BackupStore(ABC):
    """Objects by name below one cluster's prefix (`<orb>/<cluster>/`)."""

    def __init__(self, orb: str, cluster: str) -> None:
        self.orb, self.cluster = orb, cluster

    @abstractmethod
    def where(self) -> str:
        """The store and prefix in words, for messages: `directory /var/lib/orbiter/backups/lab/meta`."""

    @abstractmethod
    def writer(self, name: str) -> "ObjectWriter":
        """A new object; visible under `name` only once committed."""

    @abstractmethod
    def read(self, name: str) -> Iterator[bytes]:
        """An object's bytes in chunks; FileNotFoundError when there is none."""

    @abstractmethod
    def names(self) -> list[str]:
        """The objects below the prefix."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Remove an object; absent is done."""

    def read_all(self, name: str) -> bytes:
        return b"".join(self.read(name))


class ObjectWriter(ABC):
    """Write chunks, then `commit` (atomic) or `abort`; a context manager aborts on error."""

    file: BinaryIO | None = None

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...

    def __enter__(self) -> "ObjectWriter":
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.abort()
