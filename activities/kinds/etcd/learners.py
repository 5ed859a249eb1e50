"""A learner promoted to a voting member once it has caught up (etcd refuses before that)."""

from __future__ import annotations

import time

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.progress import heartbeat
from orbiter.models.kinds.etcd.messages import MemberPromoteInput

from .members import _etcdctl, _find, _members

NOT_READY = "can only promote a learner member which is in sync with leader"


@activity.defn
def etcd_member_promote(input: MemberPromoteInput) -> None:
    deadline = time.monotonic() + input.timeout_seconds
    with _etcdctl(input.target) as ctl:
        while True:
            member = _find(_members(ctl.json("member list")), input.name, input.peer_url)
            if member is None or not member.learner:
                return  # promoted already (a retry), or gone
            try:
                ctl.run(ctl.command(f"member promote {member.id}"))
                return
            except ApplicationError as err:
                if NOT_READY not in str(err) or time.monotonic() >= deadline:
                    raise
            heartbeat(f"{input.name} catching up with the leader")
            time.sleep(1.0)
