"""What a worker crash costs, per activity type.

    sudo .venv/bin/python bench/crashcost.py [--subnet 10.76.0.0/24] [--out crashcost.json]

An etcd cluster on local machines goes through a day of changes (1 member, scale to 3, a flag
roll, scale to 2, destroy) with one `orbiter worker` subprocess on an embedded Temporal server.
A monitor describes the orb's running workflows every 0.1 s; the first time it sees an activity
type running that it has not measured yet, it SIGKILLs the worker, starts a new one at once and
times how long until that activity runs again (its next attempt starts on the new worker). The
table lists each type with that time; types that never ran long enough to be caught are listed
apart: the heartbeat rule (worker/heartbeats.py) covers them the same way.

The workflow side is not in the figures: after the activity completes, the next workflow task of
its workflow waits for the dead worker's sticky queue to time out (10 s) before the new worker
takes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from temporalio.client import Client  # noqa: E402

from orbiter.activities.providers.local import LocalMachines  # noqa: E402
from orbiter.models.current import OrbStatus  # noqa: E402
from orbiter.models.gitops import PokeInput  # noqa: E402
from orbiter.models.refs import RepoRef  # noqa: E402
from orbiter.worker.client import connect  # noqa: E402
from orbiter.worker.server import start_server, stop_server  # noqa: E402
from orbiter.workflows.gitops import GitOpsWorkflow  # noqa: E402
from tests.conftest import MASTER_KEY, GitRepo, free_port  # noqa: E402
from tests.support.etcd_flows import DESIRED, E2E_PROVIDER  # noqa: E402
from tests.support.flows import takeoff  # noqa: E402

STEPS = [  # (nodes, extra desired lines, what the commit does)
    (1, "", "one member"),
    (3, "", "scale to 3"),
    (3, "      flags: {heartbeatInterval: 150}\n", "a flag roll"),
    (2, "      flags: {heartbeatInterval: 150}\n", "scale to 2"),
    (2, "      flags: {heartbeatInterval: 150}\n      destroyed: true\n", "destroy"),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclass
class Measured:
    activity: str
    workflow: str
    seconds: float | None  # None: it finished before the kill landed


class Worker:
    def __init__(self, address: str, logdir: Path) -> None:
        self.address, self.logdir, self.proc, self.n = address, logdir, None, 0

    def start(self) -> None:
        self.n += 1
        out = open(self.logdir / f"worker{self.n}.log", "wb")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "orbiter"), "worker"],
                                     env={**os.environ, "TEMPORAL_ADDRESS": self.address}, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def running(client: Client) -> list[tuple[str, str, str, int]]:
    """(workflow id, activity id, type, attempt) of every activity running now (the server is the
    bench's own: every workflow on it is the orb's)."""
    out = []
    async for wf in client.list_workflows("ExecutionStatus = 'Running'"):
        try:
            desc = await client.get_workflow_handle(wf.id).describe()
        except Exception:  # noqa: BLE001 - it may have just ended
            continue
        for pending in desc.raw_description.pending_activities:
            if pending.state == 2:  # PENDING_ACTIVITY_STATE_STARTED
                out.append((wf.id, pending.activity_id, pending.activity_type.name, pending.attempt))
    return out


async def again(client: Client, wid: str, activity_id: str, attempt: int, timeout: float = 300) -> bool:
    """Until the activity's next attempt has started (True) or it is gone (False: it completed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        desc = await client.get_workflow_handle(wid).describe()
        match = [p for p in desc.raw_description.pending_activities if p.activity_id == activity_id]
        if not match:
            return False
        if match[0].attempt > attempt and match[0].state == 2:
            return True
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{wid} activity {activity_id} did not run again in {timeout}s")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subnet", default="10.76.0.0/24")
    ap.add_argument("--out", default="crashcost.json")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a stopped run still removes its machines
    root = Path(tempfile.mkdtemp(prefix="orbiter-crashcost-"))
    (root / "masterkey").write_bytes(MASTER_KEY)
    os.environ.update(ORBITER_STATE_DIR=str(root / "state"), ORBITER_MASTERKEY_FILE=str(root / "masterkey"))
    port = free_port()
    server = start_server(root / "state" / "temporal.db", port=port, ui_port=free_port(), headless=True,
                          log=root / "server.log")
    worker = Worker(f"127.0.0.1:{port}", root)
    machines = LocalMachines(E2E_PROVIDER, args.subnet)
    measured: dict[str, Measured] = {}
    seen: set[str] = set()
    try:
        client = await connect(f"127.0.0.1:{port}")
        worker.start()
        repo = GitRepo(root)
        orb = "cc" + uuid.uuid4().hex[:6]
        wid = None
        for nodes, extra, what in STEPS:
            commit = repo.push({"desired.yml": DESIRED.format(orb=orb, nodes=nodes, extra=extra, subnet=args.subnet,
                                                              drift="10m")}, what)
            if wid is None:
                wid = await takeoff(client, RepoRef(url=repo.url))
            else:
                await client.get_workflow_handle(wid).signal(GitOpsWorkflow.poke, PokeInput())
            log(f"pushed {what} ({commit[:8]})")
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                for wf, act, kind, attempt in await running(client):
                    seen.add(kind)
                    if kind in measured:
                        continue
                    worker.kill()
                    killed = time.monotonic()
                    worker.start()
                    ran_again = await again(client, wf, act, attempt)
                    cost = time.monotonic() - killed if ran_again else None
                    measured[kind] = Measured(kind, wf, cost)
                    log(f"{kind} in {wf}: " + (f"runs again {cost:.1f}s after the kill" if ran_again
                                               else "completed before the kill landed"))
                    if not ran_again:
                        del measured[kind]  # try again at its next run
                    break
                text = repo.remote_file("current.yml")
                orb_status = OrbStatus.from_yaml(text) if text else None
                if orb_status and orb_status.rejected and orb_status.rejected.commit == commit:
                    raise SystemExit(f"{what} was rejected: {orb_status.rejected.message}")
                status = orb_status.clusters.get("meta") if orb_status else None
                if status and status.commit == commit and status.phase in ("Ready", "Destroyed"):
                    break
                await asyncio.sleep(0.1)
            else:
                raise TimeoutError(f"{what} not applied in 900s")
            log(f"{what}: {status.phase if status else '?'}")
        rows = sorted(measured.values(), key=lambda m: -(m.seconds or 0))
        print("\n| activity type | runs again after a SIGKILL |\n|---|---|")
        for m in rows:
            print(f"| `{m.activity}` | {m.seconds:.1f} s |")
        missed = sorted(seen - set(measured))
        print(f"\nseen running but finished before a kill landed: {', '.join(missed) or 'none'}")
        Path(args.out).write_text(json.dumps({"measured": [m.__dict__ for m in rows], "missed": missed}, indent=1))
    finally:
        worker.kill()
        stop_server(server)
        for machine in machines.list_status():
            machines.delete(machine["id"])
        machines.destroy_network()


if __name__ == "__main__":
    asyncio.run(main())
