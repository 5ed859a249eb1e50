"""`orbiter worker --self-update`: this process supervises a worker process and replaces it with a
newer orbiter when the orbs it serves allow one (`spec.orbiter: {version, updates: patch}`).

Each check (ORBITER_SELF_UPDATE_CHECK, default 1h) asks the package index (ORBITER_PACKAGE_INDEX:
a pip index URL, or a directory of wheels used as `--find-links`) which versions of orbiter it has
and picks the newest allowed one (models/selfupdate.py). That version goes into a virtualenv of its
own (orbiter itself from the index, its dependencies from pip's configured index), a worker is
started from it, and only once that worker polls the task queue (its identity names the version
and its pid) is the old worker drained (SIGINT: it finishes its running activities, up to
ORBITER_WORKER_DRAIN seconds) and stopped. Workflows move by themselves: they are unversioned, and
the new worker replays their histories (README "Upgrading orbiter").

A version that does not install, does not start, or does not poll within ORBITER_SELF_UPDATE_BOUND
(default 120s) is rolled back: its worker is stopped, the old one never stopped serving, the version
is recorded in <state>/self-update/failed.json so it is not tried again, and the orbs' status says
so (`orbiter status`: `self-update: ...`). The supervisor stays one process (systemd's main pid);
it is the code of the version first started, and small on purpose.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from orbiter.activities.repo import state_dir
from orbiter.models.duration import parse_duration
from orbiter.models.selfupdate import OrbiterPolicy, choose_version
from orbiter.models.updates import OrbiterUpdates, SelfUpdateReport

from .identity import orbiter_version, serving_workers

log = logging.getLogger("orbiter.selfupdate")
GITOPS_RUNNING = 'WorkflowType="GitOpsWorkflow" AND ExecutionStatus="Running"'


class SelfUpdateError(Exception):
    """A new version failed; one line, the reason it was rolled back."""


def _env_seconds(name: str, default: str) -> float:
    return parse_duration(os.environ.get(name, default)).total_seconds()


def _drain() -> float:
    """ORBITER_WORKER_DRAIN: seconds a stopping worker gives its running activities (as `orbiter worker`)."""
    return float(os.environ.get("ORBITER_WORKER_DRAIN", "120"))


def _index_args(index: str) -> list[str]:
    """pip options for ORBITER_PACKAGE_INDEX: a directory is a --find-links, anything else an index URL."""
    path = Path(index.removeprefix("file://"))
    return ["--find-links", str(path)] if path.is_dir() else ["--index-url", index]


def offered(index: str) -> list[str]:
    """The versions of orbiter the index has (only the index: never a same-named package elsewhere)."""
    only = _index_args(index) + (["--no-index"] if "--find-links" in _index_args(index) else [])
    # The text form: `--json` exists only in pip 24 and later, and the worker's venv has any pip.
    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "orbiter", *only],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        if "No matching distribution" in proc.stderr:
            return []
        raise SelfUpdateError(f"pip cannot list orbiter in {index}: {proc.stderr.strip().splitlines()[-1:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("Available versions:"):
            return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
    return []


class Supervisor:
    def __init__(self, client: Client, index: str) -> None:
        self.client, self.index = client, index
        self.version = orbiter_version()
        self.root = state_dir() / "self-update"
        self.child: subprocess.Popen[bytes] | None = None
        self.command = [str(Path(sys.executable).parent / "orbiter"), "worker"]

    # -- the worker process ------------------------------------------------------------------
    def start(self, command: list[str]) -> subprocess.Popen[bytes]:
        env = {**os.environ, "ORBITER_WORKER_DRAIN": str(_drain())}
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)

    @staticmethod
    def stop(child: subprocess.Popen[bytes], drain: float) -> None:
        """SIGINT: the worker finishes its running activities, then exits; SIGKILL after `drain`."""
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=drain + 30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    # -- what is allowed ---------------------------------------------------------------------
    async def policies(self) -> list[OrbiterUpdates | None]:
        out: list[OrbiterUpdates | None] = []
        async for wf in self.client.list_workflows(GITOPS_RUNNING):
            with contextlib.suppress(Exception):  # an orb that does not answer states nothing
                answer = await self.client.get_workflow_handle(wf.id).query("orbiter_policy",
                                                                            result_type=OrbiterPolicy)
                out.append(answer.spec)
        return out

    def failed(self) -> dict[str, str]:
        path = self.root / "failed.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def record_failure(self, version: str, reason: str) -> None:
        failed = self.failed() | {version: reason}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "failed.json.tmp"
        tmp.write_text(json.dumps(failed, indent=1))
        tmp.replace(self.root / "failed.json")

    async def report(self, line: str, ok: bool) -> None:
        (log.info if ok else log.error)("%s", line)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        async for wf in self.client.list_workflows(GITOPS_RUNNING):
            with contextlib.suppress(Exception):
                await self.client.get_workflow_handle(wf.id).signal(
                    "orbiter_update", SelfUpdateReport(line=line, at=at, ok=ok))

    # -- one update ----------------------------------------------------------------------------
    def install(self, version: str) -> Path:
        venv = self.root / f"venv-{version}"
        if (venv / "bin" / "orbiter").exists():
            return venv
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        steps = [
            [*pip, "--no-deps", *_index_args(self.index), f"orbiter=={version}"]
            + (["--no-index"] if "--find-links" in _index_args(self.index) else []),
            [*pip, f"orbiter=={version}"],  # its dependencies, from pip's configured index
        ]
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise SelfUpdateError(f"does not install: {tail}")
        return venv

    async def polls(self, child: subprocess.Popen[bytes], version: str, bound: float) -> None:
        mark = f"orbiter {version} "
        deadline = asyncio.get_running_loop().time() + bound
        while asyncio.get_running_loop().time() < deadline:
            if child.poll() is not None:
                raise SelfUpdateError(f"its worker exited with status {child.returncode} before polling")
            if any(w.startswith(mark) and w.endswith(f" pid {child.pid}") for w in await serving_workers(self.client)):
                return
            await asyncio.sleep(1)
        raise SelfUpdateError(f"its worker did not poll task queue orbiter within {bound:g}s")

    async def update(self, version: str) -> None:
        old, drain = self.version, _drain()
        new: subprocess.Popen[bytes] | None = None
        try:
            venv = await asyncio.to_thread(self.install, version)
            command = [str(venv / "bin" / "orbiter"), "worker"]
            new = self.start(command)
            await self.polls(new, version, _env_seconds("ORBITER_SELF_UPDATE_BOUND", "120s"))
        except (SelfUpdateError, subprocess.SubprocessError, OSError) as err:
            if new is not None:
                await asyncio.to_thread(self.stop, new, 5)
            self.record_failure(version, str(err))
            await self.report(f"orbiter {version} rolled back to {old}: {err}", ok=False)
            return
        previous, self.child, self.version, self.command = self.child, new, version, command
        if previous is not None:
            await asyncio.to_thread(self.stop, previous, drain)
        await self.report(f"orbiter {old} -> {version}: worker pid {new.pid} polls; the {old} worker drained"
                          " and stopped", ok=True)

    async def check(self) -> None:
        version = choose_version(self.version, await asyncio.to_thread(offered, self.index), await self.policies(),
                                 set(self.failed()))
        if version is not None:
            await self.update(version)

    async def run(self, stop: asyncio.Event) -> None:
        self.child = self.start(self.command)
        interval = _env_seconds("ORBITER_SELF_UPDATE_CHECK", "1h")
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
                    break
                if self.child is not None and self.child.poll() is not None:
                    log.error("the orbiter %s worker exited with status %s; starting it again", self.version,
                              self.child.returncode)
                    self.child = self.start(self.command)
                try:
                    await self.check()
                except Exception as err:  # noqa: BLE001 - the next check tries again; the worker keeps serving
                    log.warning("self-update check failed: %s", err)
        finally:
            if self.child is not None:
                await asyncio.to_thread(self.stop, self.child, _drain())


async def supervise(client: Client) -> None:
    index = os.environ.get("ORBITER_PACKAGE_INDEX")
    if not index:
        raise SelfUpdateError("--self-update needs ORBITER_PACKAGE_INDEX: a pip index URL or a directory of wheels")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Supervisor(client, index).run(stop)
