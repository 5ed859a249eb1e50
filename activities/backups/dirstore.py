"""`backupStore: {kind: dir, path: ...}`: backups as files in a directory of the worker's host."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from orbiter.models.backups import DirBackupStore

from .store import BackupStore, ObjectWriter

READ_CHUNK = 1 << 20


class _FileWriter(ObjectWriter):
    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
        self.file = self.tmp.open("wb")

    def write(self, data: bytes) -> None:
        assert self.file is not None
        self.file.write(data)

    def commit(self) -> None:
        assert self.file is not None
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


class DirStore(BackupStore):
    def __init__(self, spec: DirBackupStore, orb: str, cluster: str) -> None:
        super().__init__(orb, cluster)
        self.dir = Path(spec.path) / orb / cluster

    def where(self) -> str:
        return f"directory {self.dir}"

    def writer(self, name: str) -> ObjectWriter:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return _FileWriter(self.dir / name)

    def read(self, name: str) -> Iterator[bytes]:
        with (self.dir / name).open("rb") as f:
            while chunk := f.read(READ_CHUNK):
                yield chunk

    def names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if not p.name.startswith("."))

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / name).unlink()
