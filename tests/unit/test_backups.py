"""Backups without machines: sealing, the directory store, pruning, and where the runbook plans a
backup."""

import pytest

from orbiter.activities import backups
from orbiter.models import sealing
from orbiter.models.backups import BackupInfo, DirBackupStore
from orbiter.models.current import NodeStatus
from orbiter.models.kinds import View
from orbiter.models.load import DesiredStateError, load_desired
from orbiter.models.sealing import Sealer, SealError, unseal_stream
from orbiter.workflows.runbooks import RUNBOOKS

KEY = bytes(range(32))


def seal(data: bytes, name: str = "b1", pieces: int = 7) -> bytes:
    s = Sealer(KEY, name)
    step = max(1, len(data) // pieces)
    return b"".join(s.push(data[i:i + step]) for i in range(0, len(data), step)) + s.finish()


@pytest.mark.parametrize("size", [0, 1, sealing.CHUNK, sealing.CHUNK + 1, 3 * sealing.CHUNK + 5])
def test_a_sealed_stream_opens_to_what_went_in(size: int):
    data = bytes(i % 251 for i in range(size))
    sealed = seal(data)
    assert b"".join(unseal_stream(KEY, "b1", [sealed[i:i + 4096] for i in range(0, len(sealed), 4096)])) == data


def test_a_sealed_stream_refuses_a_change_a_cut_a_rename_and_another_key():
    data = bytes(range(256)) * (sealing.CHUNK // 128)  # two full chunks
    sealed = seal(data)
    flipped = bytearray(sealed)
    flipped[len(sealed) // 2] ^= 1
    cut = sealed[: len(sealing.MAGIC) + 4 + 12 + sealing.CHUNK + 16]  # the first chunk only
    for what, blob, name, key in [("changed", bytes(flipped), "b1", KEY), ("cut", cut, "b1", KEY),
                                  ("renamed", sealed, "b2", KEY), ("key", sealed, "b1", bytes(32))]:
        with pytest.raises(SealError):
            b"".join(unseal_stream(key, name, [blob]))
        assert what


def info(i: int) -> BackupInfo:
    return BackupInfo(id=f"meta-{i}", cluster="meta", revision=i, size=0, sha256="", taken_at=f"2026-01-0{i}T00:00:00",
                      reason="test")


def test_the_dir_store_lists_newest_first_prunes_and_hides_what_was_cut_short(tmp_path):
    store = backups.open_store(DirBackupStore(kind="dir", path=str(tmp_path)), "lab", "meta")
    for i in (1, 2, 3):
        saved = backups.save(store, info(i), [b"x" * i, b"y"])
        assert saved.size == i + 1
    with pytest.raises(RuntimeError), store.writer("meta-4" + backups.SNAPSHOT) as w:
        w.write(b"partial")
        raise RuntimeError("crash")
    assert [b.id for b in backups.listing(store)] == ["meta-3", "meta-2", "meta-1"]
    assert not any(".partial" in n for n in store.names())
    assert b"".join(backups.opened(store, backups.find(store, "meta-2"))) == b"xxy"
    assert backups.prune(store, 2) == ["meta-1"]
    assert store.names() == ["meta-2.json", "meta-2.snap", "meta-3.json", "meta-3.snap"]


DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata: {{name: lab}}
spec:
{store}  providers:
    lab: {{kind: local}}
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"
      members: {{provider: lab, pool: etcd, nodes: 3}}
      backup: {{every: 6h, keep: 3}}
{extra}"""


def test_backups_need_a_store():
    with pytest.raises(DesiredStateError, match="backupStore"):
        load_desired(DESIRED.format(store="", extra=""))


def plan(extra: str, applied_extra: str = "", alarms: list[str] = (), commands: list[str] = ()) -> list[str]:
    store = "  backupStore: {kind: dir, path: /var/lib/orbiter/backups}\n"
    spec = load_desired(DESIRED.format(store=store, extra=extra)).spec
    applied = load_desired(DESIRED.format(store=store, extra=applied_extra)).spec.clusters["meta"]
    nodes = [NodeStatus(machine=f"m{i}", ip=f"10.0.0.{i}", role="member", joined=True, version="3.4.23",
                        alarms=list(alarms) if i == 1 else []) for i in range(3)]
    view = View(orb="lab", cluster="meta", spec=spec.clusters["meta"], applied=applied, nodes=nodes,
                providers=spec.providers, commands=list(commands))
    return [p.name for p in RUNBOOKS["etcd"].plan(view)]


def test_a_backup_is_planned_before_the_first_disruptive_step_only():
    assert "backup" not in plan("")
    rolled = plan("      flags: {heartbeatInterval: 150}\n")
    assert rolled[rolled.index("backup") + 1] == "roll m0" and rolled.count("backup") == 1


def test_certificates_renew_before_must_be_shorter_than_their_validity():
    store = "  backupStore: {kind: dir, path: /var/lib/orbiter/backups}\n"
    with pytest.raises(DesiredStateError, match="renewBefore"):
        load_desired(DESIRED.format(store=store, extra="      certificates: {validity: 1h, renewBefore: 2h}\n"))
    load_desired(DESIRED.format(store=store, extra="      certificates: {validity: 2h, renewBefore: 1h}\n"))


def test_a_renewal_or_a_full_database_is_planned_only_when_asked_or_seen():
    assert "renew certificates" not in plan("") and "clear space" not in plan("")
    assert "clear space" in plan("", alarms=["NOSPACE"])
    assert "renew certificates" in plan("", commands=["renew certificates"])
    restored = plan("", commands=["restore meta-20260101T000000Z-1"])
    assert restored[restored.index("restore meta-20260101T000000Z-1") - 1] == "backup"
