"""An etcd restore on one member's machine: the backup streamed in (unsealed on the way), checked,
`snapshot restore`d into a new data directory carrying a marker with the restore's id, and
swapped in for the old one. A retry (a worker killed in the middle) finds the marker and restores
nothing twice; a swap cut short is redone from the start.
"""

from __future__ import annotations

import shlex

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities import backups
from orbiter.activities.progress import heartbeat, heartbeating
from orbiter.activities.remote import Remote, remote
from orbiter.activities.ssh import SshError
from orbiter.activities.sshstream import stream_in
from orbiter.models.errors import one_line
from orbiter.models.kinds.etcd.messages import DATA_DIR, EtcdRestoreMemberInput, EtcdRestoreMemberResult, EtcdUnitInput

from .backup import snapshot_tool

WORK_DIR = "/var/lib/orbiter/etcd-restore"
MARKER = "orbiter-restore"  # in the data directory: the id of the restore that made it
LOG = f"{WORK_DIR}/restores.log"  # one line per data directory swapped in


def _progress(chunks, what: str):  # type: ignore[no-untyped-def]
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        heartbeat(f"{what}: {sent} bytes")
        yield chunk


@activity.defn
def etcd_restore_member(input: EtcdRestoreMemberInput) -> EtcdRestoreMemberResult:
    q = shlex.quote
    store = backups.open_store(input.store, input.orb, input.cluster)
    staged, fresh = f"{WORK_DIR}/{input.backup.id}.db", f"{DATA_DIR}.restore"
    label = f"etcd cluster {input.cluster}"
    with remote(label, [input.machine], input.secrets) as rem:
        done = rem.run(f"cat {DATA_DIR}/{MARKER} 2>/dev/null || true", "reading the restore marker", "SshError")
        if done.strip() == input.restore_id:
            return EtcdRestoreMemberResult(restored=False)
        rem.run(f"set -e; systemctl stop etcd; mkdir -p {WORK_DIR}; chmod 700 {WORK_DIR}; rm -f {q(staged)}.part",
                "stopping etcd", "SshError")
        try:
            chunks = _progress(backups.opened(store, input.backup), f"backup {input.backup.id} to {input.name}")
            result = stream_in(rem.connected(), f"cat > {q(staged)}.part && sha256sum {q(staged)}.part", chunks)
        except SshError as err:
            raise ApplicationError(f"{rem.where()}: sending backup {input.backup.id}: {one_line(str(err))}",
                                   type="SshError") from None
        if result.status != 0 or result.stdout.split()[:1] != [input.backup.sha256]:
            raise ApplicationError(f"{rem.where()}: backup {input.backup.id} arrived damaged:"
                                   f" {one_line(result.stderr) or 'sha256 differs'}", type="SshError")
        tool = snapshot_tool(input.version)
        with heartbeating(f"snapshot restore on {input.name}"):
            _swap(rem, staged, fresh, tool, input)
    return EtcdRestoreMemberResult(restored=True)


def _swap(rem: Remote, staged: str, fresh: str, tool: str, input: EtcdRestoreMemberInput) -> None:
    q = shlex.quote
    rem.run("; ".join([
            "set -e",
            f"mv {q(staged)}.part {q(staged)}",
            f"rm -rf {fresh}",
            f"{tool} snapshot restore {q(staged)} --name {q(input.name)} --data-dir {fresh}"
            f" --initial-cluster {q(input.initial_cluster)} --initial-cluster-token {q(input.token)}"
            f" --initial-advertise-peer-urls {q(input.peer_url)} >/dev/null 2>{WORK_DIR}/restore.err"
            f" || {{ cat {WORK_DIR}/restore.err >&2; exit 1; }}",
            f"echo {q(input.restore_id)} > {fresh}/{MARKER}",
            f"chown -R etcd:etcd {fresh}; chmod 700 {fresh}",
            # The swap: etcd is stopped again in case something started it meanwhile.
            f"systemctl stop etcd; rm -rf {DATA_DIR}.old; if [ -e {DATA_DIR} ]; then mv {DATA_DIR} {DATA_DIR}.old; fi",
            f"mv {fresh} {DATA_DIR}; rm -rf {DATA_DIR}.old {q(staged)}",
            f"echo \"$(date -u +%FT%TZ) {q(input.restore_id)}\" >> {LOG}",
    ]), f"{tool.split()[-1]} snapshot restore", "EtcdctlError", timeout=600)


@activity.defn
def etcd_unit(input: EtcdUnitInput) -> None:
    """Stop etcd, or start it without waiting (members restored together need each other to come
    up; the health gate afterwards waits for them)."""
    script = "systemctl daemon-reload; systemctl start --no-block etcd" if input.start else "systemctl stop etcd"
    for machine in input.machines:
        with remote(f"etcd cluster {input.cluster}", [machine], input.secrets) as rem:
            rem.run(script, "starting etcd" if input.start else "stopping etcd", "SshError")
