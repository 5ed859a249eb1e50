"""An etcd backup: a snapshot from a healthy follower, checked, sealed into the backup store.

The snapshot goes from the member's machine to the store inside this activity (streamed over the
SSH session, sealed on the way, heartbeating); only its metadata goes back to the workflow. A
retry finds a backup whose metadata is in the store and returns it: each id is written once.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities import backups
from orbiter.activities.progress import heartbeat
from orbiter.activities.ssh import SshError
from orbiter.activities.sshstream import stream_out
from orbiter.models.backups import BackupInfo
from orbiter.models.errors import one_line
from orbiter.models.kinds.etcd.messages import EtcdBackupInput, EtcdMemberInfo, EtcdTarget

from .members import _Etcdctl, _etcdctl, _observe

WORK_DIR = "/var/lib/orbiter/etcd-backup"


def snapshot_tool(version: str | None) -> str:
    """etcd 3.5 moved `snapshot status` and `restore` from etcdctl to etcdutl."""
    try:
        major, minor = (int(p) for p in (version or "3.4").split(".")[:2])
    except ValueError:
        major, minor = 3, 4
    return "etcdutl" if (major, minor) >= (3, 5) else "ETCDCTL_API=3 etcdctl"


def source_member(target: EtcdTarget, members: list[EtcdMemberInfo]) -> tuple[EtcdMemberInfo, EtcdTarget]:
    """A healthy follower (the leader only when no follower is healthy: a one-member cluster), and
    a target that runs etcdctl on its machine against its endpoint alone."""
    healthy = [m for m in members if m.healthy]
    for m in sorted(healthy, key=lambda m: (m.leader, m.name)):
        for machine in target.via:
            urls = [u for u in m.client_urls if u.split("://")[-1].rsplit(":", 1)[0] == machine.ip]
            if urls:
                return m, target.model_copy(update={"via": [machine], "endpoints": urls[:1]})
    raise ApplicationError(f"etcd cluster {target.cluster}: no healthy member to take a backup from",
                           type="EtcdUnhealthy")


def _snapshot(ctl: _Etcdctl, path: str, version: str | None) -> dict:
    q = shlex.quote
    ctl.run(f"set -e; mkdir -p {WORK_DIR}; chmod 700 {WORK_DIR}; rm -f {q(path)} {q(path)}.part; "
            + ctl.command(f"snapshot save {q(path)}") + " >/dev/null")
    out = ctl.run(f"stat -c %s {q(path)}; {snapshot_tool(version)} snapshot status {q(path)} -w json")
    try:
        size, facts = out.strip().splitlines()[0], json.loads(out.strip().splitlines()[-1])
        return {**facts, "fileSize": int(size)}
    except (ValueError, IndexError):
        raise ApplicationError(f"{ctl.where()}: snapshot status printed no JSON", type="EtcdctlError") from None


@activity.defn
def etcd_backup(input: EtcdBackupInput) -> BackupInfo:
    """Take, check, seal and store one snapshot; prune the store to `keep`."""
    store = backups.open_store(input.store, input.orb, input.target.cluster)
    done = backups.find(store, input.backup_id)
    if done is None:
        with _etcdctl(input.target) as ctl:
            status, _why = _observe(ctl)
        member, one = source_member(input.target, status.members)
        heartbeat(f"snapshot of {member.name}")
        path = f"{WORK_DIR}/{input.backup_id}.db"
        with _etcdctl(one) as ctl:
            facts = _snapshot(ctl, path, member.version)
            info = BackupInfo(id=input.backup_id, cluster=input.target.cluster, revision=int(facts["revision"]),
                              size=0, sha256="", taken_at=datetime.now(UTC).isoformat(timespec="seconds"),
                              reason=input.reason, member=member.name, keys=facts.get("totalKey"))
            try:
                chunks = stream_out(ctl.remote.connected(), f"cat {shlex.quote(path)}")
                done = backups.save(store, info, chunks, lambda n: heartbeat(f"{input.backup_id}: {n} bytes"))
            except SshError as err:
                raise ApplicationError(f"{ctl.where()}: copying the snapshot: {one_line(str(err))}",
                                       type="SshError") from None
            except OSError as err:
                raise ApplicationError(f"backup {input.backup_id} into {store.where()}: {one_line(str(err))}",
                                       type="BackupStoreError") from None
            if done.size != facts["fileSize"]:
                raise ApplicationError(f"{ctl.where()}: the snapshot copied ({done.size} bytes) is not the one"
                                       f" checked ({facts['fileSize']} bytes)", type="EtcdctlError")
            ctl.run(f"rm -f {shlex.quote(path)}")
    backups.prune(store, input.keep)
    return done
