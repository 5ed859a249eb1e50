"""etcd's space: compaction, defragmentation and the NOSPACE alarm, with etcdctl on a member.

Each call is idempotent: compacting to a revision already compacted is done, defragmenting a
defragmented member costs a moment, disarming without an alarm changes nothing.
"""

from __future__ import annotations

from temporalio import activity

from orbiter.activities.progress import heartbeating
from orbiter.models.kinds.etcd.messages import EtcdSpaceInput, EtcdSpaceResult

from .members import _etcdctl

DEFRAG_TIMEOUT = "300s"  # a large database takes a while; the member answers nothing meanwhile


@activity.defn
def etcd_space(input: EtcdSpaceInput) -> EtcdSpaceResult:
    with _etcdctl(input.target) as ctl, heartbeating(f"{input.what} {', '.join(input.target.endpoints)}"):
        if input.what == "compact":
            revision = max(int((e.get("Status") or {}).get("header", {}).get("revision", 0))
                           for e in ctl.json("endpoint status"))
            ctl.run(ctl.command(f"compact {revision} --physical"), ok_stderr="required revision has been compacted")
            return EtcdSpaceResult(revision=revision)
        if input.what == "defrag":
            ctl.run(ctl.command(f"defrag --command-timeout={DEFRAG_TIMEOUT}"))
        else:
            ctl.run(ctl.command("alarm disarm"))
        return EtcdSpaceResult()
