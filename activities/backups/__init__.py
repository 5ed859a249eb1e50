"""Backups in their store: sealed with a key derived from the master key, listed, pruned.

Kinds take the snapshot (activities/kinds/<kind>/); this module knows no kind. The store kind
in desired.yml picks the class in `STORES`.
"""

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.models.backups import BackupInfo, BackupListInput, BackupListResult, BackupStoreSpec
from orbiter.models.sealing import Sealer, SealError, unseal_stream
from orbiter.models.secrets import SecretsError, derive_backup_key
from orbiter.worker.masterkey import load_master_key

from .dirstore import DirStore
from .store import BackupStore

STORES: dict[str, Callable[..., BackupStore]] = {"dir": DirStore}
SNAPSHOT, META = ".snap", ".json"


def open_store(spec: BackupStoreSpec, orb: str, cluster: str) -> BackupStore:
    return STORES[spec.kind](spec, orb, cluster)


def _key() -> bytes:
    try:
        return derive_backup_key(load_master_key())
    except SecretsError as err:
        raise ApplicationError(str(err), type="SecretsError", non_retryable=True) from None


def find(store: BackupStore, backup_id: str) -> BackupInfo | None:
    try:
        return BackupInfo.model_validate_json(store.read_all(backup_id + META))
    except FileNotFoundError:
        return None


def listing(store: BackupStore) -> list[BackupInfo]:
    """Every complete backup, newest first (a snapshot without metadata was cut short)."""
    found = [info for name in store.names() if name.endswith(META)
             if (info := find(store, name.removesuffix(META))) is not None]
    return sorted(found, key=lambda b: (b.taken_at, b.id), reverse=True)


def save(store: BackupStore, info: BackupInfo, chunks: Iterable[bytes],
         progress: Callable[[int], None] = lambda _n: None) -> BackupInfo:
    """Seal `chunks` into the store as backup `info.id`; the size and sha256 are measured here.
    The metadata goes last, so a crash before it leaves no backup that lists."""
    sealer, digest, size = Sealer(_key(), info.id), hashlib.sha256(), 0
    with store.writer(info.id + SNAPSHOT) as out:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            out.write(sealer.push(chunk))
            progress(size)
        out.write(sealer.finish())
        out.commit()
    info = info.model_copy(update={"size": size, "sha256": digest.hexdigest()})
    with store.writer(info.id + META) as meta:
        meta.write(info.model_dump_json(indent=1).encode())
        meta.commit()
    return info


def opened(store: BackupStore, info: BackupInfo) -> Iterator[bytes]:
    """A backup's snapshot, unsealed chunk by chunk, checked against its sha256 at the end."""
    digest = hashlib.sha256()
    try:
        for chunk in unseal_stream(_key(), info.id, store.read(info.id + SNAPSHOT)):
            digest.update(chunk)
            yield chunk
    except (SealError, FileNotFoundError) as err:
        raise ApplicationError(f"backup {info.id} in {store.where()}: {err}", type="BackupCorrupt",
                               non_retryable=True) from None
    if digest.hexdigest() != info.sha256:
        raise ApplicationError(f"backup {info.id} in {store.where()}: sha256 differs from its metadata",
                               type="BackupCorrupt", non_retryable=True)


def prune(store: BackupStore, keep: int) -> list[str]:
    """Delete all but the newest `keep` backups (metadata first: a half-pruned one never lists)."""
    gone = [b.id for b in listing(store)[keep:]]
    for backup_id in gone:
        store.delete(backup_id + META)
        store.delete(backup_id + SNAPSHOT)
    return gone


@activity.defn
def list_backups(input: BackupListInput) -> BackupListResult:
    """A cluster's backups, newest first."""
    store = open_store(input.store, input.orb, input.cluster)
    try:
        return BackupListResult(backups=listing(store))
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise ApplicationError(f"backups of cluster {input.cluster} in {store.where()}: {err}",
                               type="BackupStoreError") from None


ACTIVITIES = [list_backups]
