"""The chaos soak's engine (issue 16), shared by bench/soak.py and tests/machines/test_soak.py.

A seeded series of pushes (scale up, scale down, flag rolls, no-ops) to two etcd clusters of one
orb on local machines, with several `orbiter worker` processes on an embedded Temporal server,
while a chaos loop injects at random: a worker SIGKILLed (and a new one started), the server
SIGKILLed and started again on its database, a machine's network cut for a while (its host-side
veth down), etcd restarted on a member. A client loop per cluster writes numbered keys through
the members the whole time and records what etcd acknowledged.

At the end it checks what users rely on: every cluster Ready at the last pushed commit with
exactly its members started and healthy, every acknowledged write present, no step repeated
(read from the histories: no `member add` / `member remove` of one member twice in a row), every
write-back commit the workflows made in the remote's history, every pushed commit an ancestor
of the remote's head.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from temporalio.client import Client

from orbiter.activities.providers.local import LocalMachines, nspawn
from orbiter.models.cluster import ControlInput
from orbiter.models.current import OrbStatus
from orbiter.models.gitops import WriteBackResult
from orbiter.models.kinds.etcd.messages import MemberAddInput, MemberRemoveInput, client_bundle_secret
from orbiter.models.providers import machine_name
from orbiter.models.refs import RepoRef
from orbiter.models.secrets import read_secret
from orbiter.worker.client import connect
from orbiter.worker.server import start_server, stop_server

from ..conftest import MASTER_KEY, GitRepo, free_port
from .etcd_flows import E2E_PROVIDER, e2e_machines, poke
from .flows import WorkerProcess, gitops_id, takeoff, worker_processes
from .histories import completed_results, scheduled_inputs

CHAOS = ("kill-worker", "restart-server", "cut-network", "restart-etcd")
ACTIONS = ("scale-up", "scale-down", "flag-roll", "no-op")
HEARTBEATS = (100, 110, 120, 130, 140, 150, 160, 170, 180, 190)  # ms; etcd's election timeout stays 1000

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: 1m
  driftInterval: 10m
  maxParallel: 5
  providers:
    {provider}:
      kind: local
      subnet: {subnet}
  clusters:
{clusters}# {note}
"""


@dataclass
class SoakConfig:
    sizes: dict[str, int]  # the clusters and their first sizes
    pushes: int = 4
    seed: int = 1
    subnet: str = "10.100.0.0/24"
    max_size: int = 3
    workers: int = 2
    chaos_every: tuple[float, float] = (8.0, 20.0)  # seconds between two injections, drawn uniformly
    cut_for: tuple[float, float] = (5.0, 15.0)  # how long a machine stays cut off
    duration: float | None = None  # seconds: keep pushing until then (at least `pushes` pushes)
    chaos_rounds: int = 1  # keep pushing until every kind of injection was made this many times
    push_timeout: float = 600.0
    write_every: float = 0.5
    overlap: float = 0.0  # the chance that a push follows the last one before it settled (it supersedes it)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SoakReport:
    seed: int
    pushes: list[tuple[float, str, str]] = field(default_factory=list)  # (t, action, commit)
    injected: list[tuple[float, str, str]] = field(default_factory=list)  # (t, kind, what)
    overlapped: set[str] = field(default_factory=set)  # pushes the next one followed before they settled
    operator: list[tuple[float, str]] = field(default_factory=list)  # retries an operator had to do
    writes: dict[str, Counter[str]] = field(default_factory=dict)  # cluster -> acked / failed
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def counts(self) -> Counter[str]:
        return Counter(kind for _, kind, _ in self.injected)

    def text(self) -> str:
        lines = [f"soak: seed {self.seed}, {len(self.pushes)} pushes in {self.seconds:.0f} s"]
        actions = Counter(a for _, a, _ in self.pushes)
        lines.append("pushes: " + ", ".join(f"{a} {actions[a]}" for a in ACTIONS))
        lines.append("injected: " + ", ".join(f"{k} {self.counts()[k]}" for k in CHAOS))
        timeline = [*self.injected, *((t, "push", f"{a} -> {c[:8]}" + (", the next pushed before it settled"
                                                                      if c in self.overlapped else ""))
                                      for t, a, c in self.pushes),
                    *((t, "operator", w) for t, w in self.operator)]
        lines += [f"  {t:7.1f}s  {kind:<15} {what}" for t, kind, what in sorted(timeline)]
        for cluster, counts in sorted(self.writes.items()):
            lines.append(f"writes to {cluster}: {counts['acked']} acknowledged, {counts['failed']} failed (retried)")
        lines.append("checks:")
        lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in self.checks]
        lines.append("result: " + ("all checks passed" if self.ok else "FAILED"))
        return "\n".join(lines)


def desired(orb: str, subnet: str, sizes: dict[str, int], beats: dict[str, int | None], note: str) -> str:
    clusters = ""
    for name, nodes in sizes.items():
        clusters += (f"    {name}:\n      kind: etcd\n      version: \"3.4.23\"\n"
                     f"      members: {{provider: {E2E_PROVIDER}, pool: {name}, nodes: {nodes}}}\n")
        if beats.get(name):
            clusters += f"      flags: {{heartbeatInterval: {beats[name]}}}\n"
    return DESIRED.format(orb=orb, provider=E2E_PROVIDER, subnet=subnet, clusters=clusters, note=note)


class Soak:
    """One run: `await Soak(config, repo, workdir).run()` returns the report; cleans up all it starts."""

    def __init__(self, config: SoakConfig, repo: GitRepo, workdir: Path, log: Callable[[str], None] = print) -> None:
        self.cfg, self.repo, self.dir, self.say = config, repo, workdir, log
        self.rng = random.Random(config.seed)
        self.chaos_rng = random.Random(config.seed + 1)
        self.orb = "soak" + uuid.uuid4().hex[:4]
        self.sizes = dict(config.sizes)
        self.beats: dict[str, int | None] = dict.fromkeys(config.sizes)
        self.actions: list[str] = []
        self.report = SoakReport(seed=config.seed, writes={c: Counter() for c in config.sizes})
        self.acked: dict[str, dict[str, str]] = {c: {} for c in config.sizes}
        self.pushed: list[str] = []
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.db, self.server_log = workdir / "state" / "temporal.db", workdir / "server.log"
        self.server: subprocess.Popen[bytes] | None = None
        self.client: Client | None = None
        self.workers: list[WorkerProcess] = []
        self.machines: LocalMachines | None = None
        self.cut: set[str] = set()
        self.done = asyncio.Event()
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> SoakReport:
        self.server = start_server(self.db, port=self.port, ui_port=free_port(), headless=True, log=self.server_log)
        try:
            self.client = await connect(self.address)
            with e2e_machines(self.cfg.subnet) as machines, worker_processes(self.dir, self.address) as start:
                self.machines = machines
                self.start_worker = start
                try:
                    await self._soak()
                finally:
                    for machine in list(self.cut):
                        with contextlib.suppress(Exception):
                            machines.set_link(machine, True)
                    await self._stop_orb()
        finally:
            if self.server is not None:
                stop_server(self.server)
        self.report.seconds = self.now()
        return self.report

    async def _soak(self) -> None:
        self.workers = [self.start_worker() for _ in range(self.cfg.workers)]
        first = self._push("first")
        self.wid = await takeoff(self._client(), RepoRef(url=self.repo.url))
        await self._settle(first)
        self.say(f"[{self.now():6.1f}s] both clusters Ready at {first[:8]}; chaos and writes start")
        self.t0 = time.monotonic()
        writers = [asyncio.create_task(self._writer(c)) for c in self.cfg.sizes]
        chaos = asyncio.create_task(self._chaos())
        try:
            n = 0
            while (n < self.cfg.pushes or (self.cfg.duration and self.now() < self.cfg.duration)
                   or len(self.report.injected) < self.cfg.chaos_rounds * len(CHAOS)):
                action = self._next_action()
                self._edit(action)
                commit = self._push(action)
                n += 1
                await self._poke()
                if self.rng.random() < self.cfg.overlap:
                    await asyncio.sleep(self.rng.uniform(0.5, 5))  # the next push lands mid-change
                    self.report.overlapped.add(commit)
                    continue
                await self._settle(commit)
        finally:
            self.done.set()
            await chaos
            for machine in list(self.cut):
                with contextlib.suppress(Exception):
                    self._machines().set_link(machine, True)
                    self.cut.discard(machine)
        try:
            await self._settle(self.pushed[-1])  # a last injection may have come after the last push
            await asyncio.sleep(2 * self.cfg.write_every)
        finally:
            for task in writers:
                task.cancel()
            await asyncio.gather(*writers, return_exceptions=True)
        await self._check()

    def _next_action(self) -> str:
        """Rounds of every action once in a seeded random order; one that cannot be made now (every
        cluster at its largest or smallest) gives way to the next."""
        for _ in range(2 * len(ACTIONS)):
            if not self.actions:
                self.actions = self.rng.sample(ACTIONS, len(ACTIONS))
            action = self.actions.pop()
            if not (action == "scale-up" and all(s >= self.cfg.max_size for s in self.sizes.values())
                    or action == "scale-down" and all(s <= 1 for s in self.sizes.values())):
                return action
        return "no-op"

    def _edit(self, action: str) -> None:
        if action == "scale-up":
            name = self.rng.choice([c for c, s in self.sizes.items() if s < self.cfg.max_size])
            self.sizes[name] += 1
        elif action == "scale-down":
            name = self.rng.choice([c for c, s in self.sizes.items() if s > 1])
            self.sizes[name] -= 1
        elif action == "flag-roll":
            name = self.rng.choice(sorted(self.sizes))
            self.beats[name] = self.rng.choice([b for b in HEARTBEATS if b != self.beats[name]])

    def _push(self, action: str) -> str:
        note = f"soak push {len(self.pushed) + 1}: {action}"
        commit = self.repo.push({"desired.yml": desired(self.orb, self.cfg.subnet, self.sizes, self.beats, note)}, note)
        self.pushed.append(commit)
        if action != "first":
            self.report.pushes.append((self.now(), action, commit))
        self.say(f"[{self.now():6.1f}s] push {action} {commit[:8]} sizes {self.sizes} heartbeats {self.beats}")
        return commit

    def _client(self) -> Client:
        assert self.client is not None
        return self.client

    def _machines(self) -> LocalMachines:
        assert self.machines is not None
        return self.machines

    async def _retrying(self, what: str, call: Callable[[], Awaitable[object]], timeout: float = 120) -> None:
        """A call to the server, retried while a chaos restart keeps it away."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await call()
                return
            except Exception as err:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what}: {err}") from err
                await asyncio.sleep(1)

    async def _poke(self) -> None:
        await self._retrying("poke", lambda: poke(self._client(), self.wid))

    def _status(self) -> OrbStatus | None:
        text = self.repo.remote_file("current.yml")
        return OrbStatus.from_yaml(text) if text else None

    async def _settle(self, commit: str) -> None:
        """Every cluster Ready at `commit`. A cluster Blocked at it is retried as an operator would
        (`orbiter retry`) and the report lists it; a push that never settles fails the soak."""
        deadline = time.monotonic() + self.cfg.push_timeout
        retried: dict[str, float] = {}
        last: OrbStatus | None = None
        while time.monotonic() < deadline:
            last = self._status()
            clusters = last.clusters if last else {}
            if set(clusters) == set(self.sizes) and all(
                    c.phase == "Ready" and c.commit == commit for c in clusters.values()):
                return
            for name, c in clusters.items():
                if c.phase == "Blocked" and c.desired_commit == commit and time.monotonic() - retried.get(name, 0) > 30:
                    retried[name] = time.monotonic()
                    self.report.operator.append((self.now(), f"retry {name} (Blocked: {c.error})"))
                    self.say(f"[{self.now():6.1f}s] {name} Blocked: {c.error}; retrying")
                    handle = self._client().get_workflow_handle(f"cluster/{self.orb}/{name}")
                    await self._retrying("retry", lambda h=handle: h.execute_update(
                        "retry", ControlInput(reason="soak")))
            await asyncio.sleep(1)
        summary = {n: (c.phase, (c.commit or "")[:8], c.step, c.error)
                   for n, c in (last.clusters if last else {}).items()}
        raise AssertionError(f"clusters not Ready at {commit[:8]} within {self.cfg.push_timeout:.0f}s: {summary}")

    # -- chaos -------------------------------------------------------------------------------

    async def _chaos(self) -> None:
        """Injections at random times while pushes go on; each round injects every kind once, in a
        random order, so a short run still sees each."""
        order: list[str] = []
        while not self.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), self.chaos_rng.uniform(*self.cfg.chaos_every))
            if self.done.is_set():
                return
            if not order:
                order = self.chaos_rng.sample(CHAOS, len(CHAOS))
            kind = order.pop()
            try:
                what = await getattr(self, "_" + kind.replace("-", "_"))()
            except Exception as err:  # an injection that could not be made is reported, not fatal
                what = f"not injected: {err}"
            self.report.injected.append((self.now(), kind, what))
            self.say(f"[{self.now():6.1f}s] chaos {kind}: {what}")

    async def _kill_worker(self) -> str:
        victim = self.chaos_rng.choice([w for w in self.workers if w.alive()])
        pid = victim.proc.pid if victim.proc else None
        victim.kill()
        self.workers.remove(victim)
        fresh = self.start_worker()
        self.workers.append(fresh)
        return f"worker pid {pid} SIGKILLed, pid {fresh.proc.pid if fresh.proc else '?'} started"

    async def _restart_server(self) -> str:
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        self.server.wait()
        down = time.monotonic()
        self.server = start_server(self.db, port=self.port, ui_port=free_port(), headless=True, log=self.server_log)
        self.client = await connect(self.address)
        return f"SIGKILLed, serving again after {time.monotonic() - down:.1f}s"

    def _running(self) -> list[dict]:
        return [m for m in self._machines().list_status() if m["state"] == "running" and m["id"] not in self.cut]

    async def _cut_network(self) -> str:
        machine = self.chaos_rng.choice(self._running())["id"]
        hold = self.chaos_rng.uniform(*self.cfg.cut_for)
        self._machines().set_link(machine, False)
        self.cut.add(machine)
        try:
            await asyncio.sleep(hold)
        finally:
            with contextlib.suppress(Exception):  # it may have been deleted by a scale-down meanwhile
                self._machines().set_link(machine, True)
            self.cut.discard(machine)
        return f"{machine} cut off for {hold:.0f}s"

    async def _restart_etcd(self) -> str:
        status = self._status()
        members = {n.machine for c in (status.clusters.values() if status else []) for n in c.nodes if n.ready}
        machine = self.chaos_rng.choice([m for m in self._running() if m["id"] in members])["id"]
        pid = nspawn.read_pid(self._machines().path / "machines" / machine / "nspawn.pid")
        if pid is None:
            raise RuntimeError(f"{machine} has no nspawn pid")
        init = nspawn.container_init_pid(pid, timeout=5)
        out = await asyncio.to_thread(subprocess.run, ["nsenter", "-t", str(init), "-m", "-u", "-i", "-n", "-p",
                                                       "systemctl", "restart", "etcd"],
                                      capture_output=True, text=True, timeout=60)
        return f"systemctl restart etcd on {machine}: " + ("done" if out.returncode == 0 else out.stderr.strip())

    # -- the client loop ---------------------------------------------------------------------

    def _etcdctl_base(self, cluster: str) -> list[str]:
        """etcdctl with the cluster's client bundle and the endpoints current.yml lists now."""
        bundle = yaml.safe_load(read_secret(MASTER_KEY, self.repo.remote_file("secrets.yml"),
                                            client_bundle_secret(cluster)))
        files = {}
        for part in ("ca", "cert", "key"):
            path = self.dir / f"{cluster}-{part}.pem"
            if not path.exists():
                path.write_text(bundle[part])
                path.chmod(0o600)
            files[part] = str(path)
        status = self._status()
        endpoints = (status.clusters[cluster].endpoints if status and cluster in status.clusters else []) \
            or bundle["endpoints"]
        return ["etcdctl", f"--endpoints={','.join(endpoints)}", f"--cacert={files['ca']}", f"--cert={files['cert']}",
                f"--key={files['key']}", "--dial-timeout=2s", "--command-timeout=5s"]

    async def _etcdctl(self, cluster: str, *args: str) -> subprocess.CompletedProcess[str]:
        base = await asyncio.to_thread(self._etcdctl_base, cluster)
        return await asyncio.to_thread(subprocess.run, [*base, *args], capture_output=True, text=True, timeout=30,
                                       env={"ETCDCTL_API": "3"})

    async def _writer(self, cluster: str) -> None:
        """Numbered keys, one after the other; a key etcd did not acknowledge is written again."""
        n = 0
        counts = self.report.writes[cluster]
        while True:
            key, value = f"/soak/{cluster}/{n:06d}", f"{self.orb}-{n}"
            try:
                out = await self._etcdctl(cluster, "put", key, value)
                ok = out.returncode == 0
            except (subprocess.TimeoutExpired, OSError, KeyError):
                ok = False
            if ok:
                self.acked[cluster][key] = value
                counts["acked"] += 1
                n += 1
            else:
                counts["failed"] += 1
            await asyncio.sleep(self.cfg.write_every)

    # -- the checks --------------------------------------------------------------------------

    def _check_that(self, name: str, ok: bool, detail: str) -> None:
        self.report.checks.append(Check(name, ok, detail))

    async def _check(self) -> None:
        last = self.pushed[-1]
        status = self._status()
        clusters = status.clusters if status else {}
        for name, size in self.sizes.items():
            c = clusters.get(name)
            nodes = sorted(n.machine for n in c.nodes) if c else []
            self._check_that(f"{name} Ready at the last commit", bool(
                c and c.phase == "Ready" and c.commit == last and len(nodes) == size and all(n.ready for n in c.nodes)),
                f"{c.phase if c else 'absent'} at {(c.commit or '')[:8] if c else '-'} (last {last[:8]}), "
                f"{len(nodes)} of {size} nodes ready")
            listed = json.loads((await self._etcdctl(name, "member", "list", "-w", "json")).stdout or "{}")
            started = sorted(m.get("name", "") for m in listed.get("members", []))
            self._check_that(f"{name} members are the machines", started == nodes,
                             f"etcd lists {started}, current.yml {nodes}")
            health = await self._etcdctl(name, "endpoint", "health", "-w", "json")
            healthy = [h for h in json.loads(health.stdout or "[]") if h.get("health")]
            self._check_that(f"{name} healthy", len(healthy) == size, f"{len(healthy)} of {size} endpoints healthy")
            got = await self._etcdctl(name, "get", f"/soak/{name}/", "--prefix", "-w", "json")
            kvs = {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
                   for kv in json.loads(got.stdout or "{}").get("kvs", [])}
            lost = [k for k, v in self.acked[name].items() if kvs.get(k) != v]
            self._check_that(f"{name} acknowledged writes present", not lost and bool(self.acked[name]),
                             f"{len(self.acked[name]) - len(lost)} of {len(self.acked[name])} present"
                             + (f"; missing {lost[:5]}" if lost else ""))
            steps = await scheduled_inputs(self._client(), f"cluster/{self.orb}/{name}",
                                           {"etcd_member_add": MemberAddInput, "etcd_member_remove": MemberRemoveInput})
            repeated, previous = [], {}
            for activity, given in steps:
                if previous.get(given.name) == activity:
                    repeated.append(f"{activity} {given.name}")
                previous[given.name] = activity
            self._check_that(f"{name} no repeated step", not repeated,
                             f"{len(steps)} member adds/removes scheduled"
                             + (f"; twice in a row: {repeated}" if repeated else ""))
        written = [r.commit for r in await completed_results(self._client(), gitops_id(self.repo), "write_back",
                                                             WriteBackResult) if r.commit]
        lost_wb = [c for c in written if not self._ancestor(c)]
        self._check_that("no lost write-back", bool(written) and not lost_wb,
                         f"{len(written) - len(lost_wb)} of {len(written)} write-back commits in the remote's history")
        lost_user = [c for c in self.pushed if not self._ancestor(c)]
        self._check_that("no user commit lost", not lost_user,
                         f"{len(self.pushed) - len(lost_user)} of {len(self.pushed)} pushed commits"
                         " are ancestors of main")

    def _ancestor(self, commit: str) -> bool:
        return subprocess.run(["git", "merge-base", "--is-ancestor", commit, "main"], cwd=self.repo.remote,
                              capture_output=True).returncode == 0

    async def _stop_orb(self) -> None:
        ids = [gitops_id(self.repo), *(f"cluster/{self.orb}/{c}" for c in self.sizes),
               *(f"node/{self.orb}/{m['cluster']}/{m['id']}" for m in self._machines().list_status()),
               *(f"node/{self.orb}/{c}/{machine_name(self.orb, c, c, i)}" for c in self.sizes
                 for i in range(self.cfg.max_size + 2))]
        for wid in dict.fromkeys(ids):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client().get_workflow_handle(wid).terminate("soak over"), 10)
