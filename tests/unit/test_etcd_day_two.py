"""etcd day two without machines: sealing, the directory store, pruning, where the runbook plans a
backup, a restore, a renewal and clearing space, and which version changes it refuses."""

import pytest

from orbiter.activities import backups
from orbiter.models import sealing
from orbiter.models.backups import BackupInfo, DirBackupStore
from orbiter.models.current import NodeStatus
from orbiter.models.kinds import Refused, View
from orbiter.models.kinds.etcd import versions
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


def plan(extra: str, applied_extra: str = "", alarms: list[str] = (), commands: list[str] = (),
         running: str = "3.4.23", extra_version: str | None = None) -> list[str]:
    return [p.name for p in plan_items(extra, applied_extra, alarms, commands, running, extra_version)]


def plan_items(extra: str, applied_extra: str = "", alarms: list[str] = (), commands: list[str] = (),
               running: str = "3.4.23", extra_version: str | None = None) -> list:
    store = "  backupStore: {kind: dir, path: /var/lib/orbiter/backups}\n"
    text = DESIRED.format(store=store, extra=extra)
    if extra_version:
        text = text.replace('version: "3.4.23"', f'version: "{extra_version}"')
    spec = load_desired(text).spec
    applied = load_desired(DESIRED.format(store=store, extra=applied_extra).replace(
        'version: "3.4.23"', f'version: "{running}"')).spec.clusters["meta"]
    nodes = [NodeStatus(machine=f"m{i}", ip=f"10.0.0.{i}", role="member", joined=True, version=running,
                        alarms=list(alarms) if i == 1 else []) for i in range(3)]
    view = View(orb="lab", cluster="meta", spec=spec.clusters["meta"], applied=applied, nodes=nodes,
                providers=spec.providers, commands=list(commands))
    return RUNBOOKS["etcd"].plan(view)


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


def test_versions_move_up_one_minor_at_a_time_and_never_down_across_minors():
    assert "roll m0" not in plan("")
    to_35 = plan("", running="3.4.23", extra_version="3.5.1")
    assert to_35[to_35.index("roll m0") - 1] == "backup"
    with pytest.raises(Refused, match="cannot be downgraded from 3.5.1 to 3.4.23"):
        plan("", running="3.5.1")
    with pytest.raises(Refused, match="one minor version at a time"):
        plan("", running="3.4.23", extra_version="3.6.0")


def test_a_version_with_a_known_bug_is_warned_about():
    assert versions.warning("3.5.1") and "3.5.3" in versions.warning("3.5.1")
    assert versions.warning("3.5.3") is None and versions.warning("3.4.23") is None
    assert "warning: etcd 3.5.2 has a known bug" in " ".join(
        p.description for p in plan_items("", extra_version="3.5.2", running="3.5.2"))
