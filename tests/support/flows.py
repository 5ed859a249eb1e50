"""Helpers shared by end-to-end tests: a desired.yml that needs no machines, takeoff, waiting."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from orbiter.models.current import OrbStatus
from orbiter.models.gitops import GitOpsInput
from orbiter.models.ids import TASK_QUEUE, gitops_workflow_id
from orbiter.models.refs import RepoRef
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import GitRepo

# An etcd cluster on a static provider, paused: the loop runs end to end without machines.
DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: {poll}
  providers:
    dc1:
      kind: static
      pools:
        db:
          - {{id: m1, ip: 192.0.2.11}}
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"
      members: {{provider: dc1, pool: db, nodes: 1}}
      paused: true
"""


def desired(orb: str, poll: str = "1h") -> str:
    return DESIRED.format(orb=orb, poll=poll)


async def takeoff(client: Client, ref: RepoRef) -> str:
    wid = gitops_workflow_id(ref.url, ref.branch)
    await client.start_workflow(GitOpsWorkflow.run, GitOpsInput(repo=ref), id=wid, task_queue=TASK_QUEUE,
                                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    return wid


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll `predicate` (sync or async) until it returns something truthy; bounded, not timed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:.0f}s")
        await asyncio.sleep(interval)


def current(repo: GitRepo, ref: str = "main") -> OrbStatus | None:
    text = repo.remote_file("current.yml", ref)
    return OrbStatus.from_yaml(text) if text else None


def orbiter_bin() -> str:
    return str(Path(sys.executable).parent / "orbiter")


class WorkerProcess:
    """`orbiter worker` as a real subprocess, in its own process group so a kill takes all of it."""

    def __init__(self, log: Path, address: str) -> None:
        self.log, self.address = log, address
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "TEMPORAL_ADDRESS": self.address}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([orbiter_bin(), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def worker_processes(tmp_path: Path, address: str) -> Iterator[Callable[[], WorkerProcess]]:
    """`start()` starts one more `orbiter worker` subprocess; every one is killed at the end."""
    procs: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        proc = WorkerProcess(tmp_path / f"worker{len(procs) + 1}.log", address)
        proc.start()
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()


def gitops_id(repo: GitRepo) -> str:
    ref = RepoRef(url=repo.url)
    return gitops_workflow_id(ref.url, ref.branch)
