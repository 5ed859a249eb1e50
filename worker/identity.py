"""Which orbiter a worker is: its version, a build id and a Temporal identity that carries both, so
`orbiter status` can say which versions serve an orb (the pollers of the task queue) while an
operator replaces workers.

The rule for mixed versions (README "Upgrading orbiter"): orbiter's workflows are unversioned, any
worker runs any workflow, and compatibility comes from workflows/patches.py and the replay tests;
so workers of one minor version (0.2.x) may serve a queue together, and a worker refuses to start
beside workers of another minor version.
"""

import hashlib
import os
import re
import socket
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from orbiter.models.ids import TASK_QUEUE

POLLER_FRESH = timedelta(seconds=90)  # a poller seen longer ago is a worker that stopped (long polls last 60s)
_NOT_PRODUCT = {"tests", "build", "dist", "bench", "docs", "node_modules"}
_IDENTITY = re.compile(r"^orbiter (\S+) \(build (\S+)\) on (\S+) pid (\d+)$")


class MixedVersions(Exception):
    """Workers of another minor version serve the task queue; one line."""


@cache
def orbiter_version() -> str:
    try:
        return version("orbiter")
    except PackageNotFoundError:
        return "0+unknown"


@cache
def build_id() -> str:
    """The version plus a hash of the installed package's files: two installs of one version that
    differ (a hot fix, an editable checkout with changes) have different build ids."""
    root = Path(__file__).resolve().parent.parent
    files = []
    for top, dirs, names in os.walk(root):
        # An editable checkout also holds tests, a virtualenv and build output: not the product.
        dirs[:] = [d for d in dirs if not d.startswith((".", "_")) and d not in _NOT_PRODUCT]
        files += [Path(top) / n for n in names if n.endswith((".py", ".sh", ".yml", ".html"))]
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{orbiter_version()}+{digest.hexdigest()[:12]}"


def identity() -> str:
    return f"orbiter {orbiter_version()} (build {build_id()}) on {socket.gethostname()} pid {os.getpid()}"


def minor(text: str) -> tuple[str, ...]:
    """("0", "2") of "0.2.1"; the version's parts before the patch."""
    return tuple(re.split(r"[.+]", text)[:2])


async def serving_workers(client: Client, fresh: timedelta = POLLER_FRESH, task_queue: str = TASK_QUEUE) -> list[str]:
    """The identities polling orbiter's task queue (workflow and activity pollers), recently seen."""
    seen: dict[str, None] = {}
    now = datetime.now(UTC)
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        answer = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind))
        for poller in answer.pollers:
            last = poller.last_access_time.ToDatetime(tzinfo=UTC) if poller.HasField("last_access_time") else now
            if now - last <= fresh:
                seen[poller.identity] = None
    return sorted(seen)


def other_minor(identities: list[str], mine: str | None = None) -> list[str]:
    """Identities of orbiter workers whose minor version is not this worker's."""
    mine = mine or orbiter_version()
    out = []
    for ident in identities:
        m = _IDENTITY.match(ident)
        if m and minor(m.group(1)) != minor(mine):
            out.append(ident)
    return out


async def refuse_mixed_minor(client: Client, task_queue: str = TASK_QUEUE) -> None:
    others = other_minor(await serving_workers(client, task_queue=task_queue))
    if others:
        raise MixedVersions(f"workers of another minor version serve task queue {task_queue} ({others[0]}"
                            f"{f' and {len(others) - 1} more' if len(others) > 1 else ''}): stop them before"
                            f" starting orbiter {orbiter_version()}, or upgrade them all together")
