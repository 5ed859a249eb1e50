"""What one worker carries: one orb of C clusters with M members each (C*M node agents).

    sudo .venv/bin/python bench/scale.py [--agents 100 300 1000] [--members 50] [--rounds 50]

The machines are network namespaces running only sshd (bench/netlab.py) on a bridge the bench
makes (172.30.0.0/16), reached by the static provider; the clusters are of `benchfile`, a kind
that lives outside orbiter (bench/scalekind, found through the `orbiter.kinds` entry point):
each member is one file, observed and kept by its node agent in one SSH round trip. So the
figures are orbiter's own cost per node agent: workflows, activities, SSH, write-back.

For each size, with a fresh Temporal dev server and one `orbiter worker` subprocess:
1. untimed: the orb without clusters and the bootstrap key in secrets.yml; orbiter writes its
   maintenance key back;
2. push -> every cluster Ready at the commit (the GitOps workflow's `sync` update, what `orbiter
   poke --wait` does), then -> every cluster Ready at it in current.yml; per cluster, the lag from
   its Ready report (the phase search attribute its workflow sets, then reports) to current.yml;
3. a no-op push (a comment) -> Ready at the new commit, and -> current.yml;
4. drift rounds: the node agents run one every driftInterval (--drift); the bench waits until
   every agent has done --rounds of them since the push, and records how long that took;
5. the worker's and the server's resident memory (now and peak) and CPU seconds per phase, and
   every workflow's history (events and bytes, this run and the runs before a continue-as-new).

Prints one table per size and the ratios of the largest size to the smallest; writes --out.
Removes everything it made (namespaces, bridge, sshd, server, worker) also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
KIND_DIR = BENCH / "scalekind"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

PROVIDER = "rack"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def kind_path(workdir: Path) -> str:
    """The benchfile kind as an installed distribution would be: its package and a dist-info with
    the entry point, on PYTHONPATH for this process and the worker (nothing goes into the venv)."""
    info = workdir / "kindpath" / "orbiter_benchkind-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: orbiter-benchkind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[orbiter.kinds]\nbenchfile = orbiter_benchkind:KIND\n")
    return os.pathsep.join(p for p in (str(KIND_DIR), str(info.parent), os.environ.get("PYTHONPATH")) if p)


def proc_usage(pid: int) -> dict[str, float]:
    """CPU seconds (user+system, its own threads) and resident memory now and at its peak (MiB)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {"cpu": (int(stat[11]) + int(stat[12])) / tick,
            "rss": int(status["VmRSS"].split()[0]) / 1024, "hwm": int(status["VmHWM"].split()[0]) / 1024,
            "threads": int(status["Threads"])}


def host_busy() -> float:
    """CPU seconds the whole host spent busy so far (every process, the other developer's too)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def desired_yml(orb: str, lab, agents: int, clusters: int, members: int, drift: str, parallel: int,  # noqa: ANN001
                comment: str = "") -> str:
    machines = lab.machines[:agents]
    pools = ""
    for c in range(agents // members):  # a pool belongs to one cluster
        pools += f"        p{c:02d}:\n" + "".join(f"          - {{id: {m.id}, ip: {m.ip}}}\n"
                                              for m in machines[c * members:(c + 1) * members])
    text = f"""apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: 30s
  driftInterval: {drift}
  maxParallel: {parallel}
  providers:
    {PROVIDER}:
      kind: static
      remoteUser: root
      pools:
{pools}"""
    if clusters:
        text += "  clusters:\n"
        for c in range(clusters):
            text += (f"    c{c:02d}:\n      kind: benchfile\n"
                     f"      members: {{provider: {PROVIDER}, pool: p{c:02d}, nodes: {members}}}\n")
    if comment:
        text += f"# {comment}\n"
    return text


@dataclass
class Result:
    agents: int
    clusters: int
    members: int
    push_ready: float = 0.0
    push_current: float = 0.0
    noop_ready: float = 0.0
    noop_current: float = 0.0
    lag: list[float] = field(default_factory=list)  # per cluster: its Ready report -> current.yml
    drift_seconds: float = 0.0  # the push -> every agent has done `rounds` drift rounds
    rounds: int = 0
    usage: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> figures
    histories: dict[str, dict[str, float]] = field(default_factory=dict)  # workflow type -> figures
    write_backs: int = 0


class Orbiter:
    """A Temporal dev server and one worker subprocess, both the bench's own."""

    def __init__(self, workdir: Path, pythonpath: str, env: dict[str, str]) -> None:
        self.dir, self.pythonpath, self.env = workdir, pythonpath, env
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    async def start(self):  # noqa: ANN201 - a temporalio Client
        from orbiter.worker.client import connect
        from orbiter.worker.server import start_server
        from tests.conftest import free_port

        self.dir.mkdir(parents=True)
        port = free_port()
        self.server = start_server(self.dir / "temporal.db", port=port, ui_port=free_port(), headless=True,
                                   log=self.dir / "server.log")
        env = {**os.environ, **self.env, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
               "ORBITER_STATE_DIR": str(self.dir / "state"), "PYTHONPATH": self.pythonpath}
        with open(self.dir / "worker.log", "ab") as out:
            self.worker = subprocess.Popen([str(Path(sys.executable).parent / "orbiter"), "worker"], env=env,
                                           stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return await connect(f"127.0.0.1:{port}")

    def usage(self) -> dict[str, dict[str, float]]:
        self.check()
        assert self.worker is not None and self.server is not None
        return {"worker": proc_usage(self.worker.pid), "server": proc_usage(self.server.pid)}

    def check(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            tail = (self.dir / "worker.log").read_text()[-2000:]
            raise RuntimeError(f"the orbiter worker exited: {tail}")

    def stop(self) -> None:
        from orbiter.worker.server import stop_server

        if self.worker is not None and self.worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()
        self.worker = None
        if self.server is not None:
            stop_server(self.server)
            self.server = None


def delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {}
    for proc in ("worker", "server"):
        out[f"{proc}_cpu"] = after[proc]["cpu"] - before[proc]["cpu"]
        out[f"{proc}_rss"] = after[proc]["rss"]
        out[f"{proc}_hwm"] = after[proc]["hwm"]
        out[f"{proc}_threads"] = after[proc]["threads"]
    out["host_busy"] = after["host"]["busy"] - before["host"]["busy"]
    return out


async def run_size(args: argparse.Namespace, lab, workdir: Path, pythonpath: str, agents: int,  # noqa: ANN001
                   bootstrap_private: str, bootstrap_public: str) -> Result:
    from orbiter.cli.gitops import start_gitops
    from orbiter.models.duration import parse_duration
    from orbiter.models.gitops import SyncInput
    from orbiter.models.ids import gitops_workflow_id
    from orbiter.models.providers import default_secret_names
    from orbiter.models.refs import RepoRef
    from orbiter.models.secrets import SecretBox, parse_secrets_file
    from orbiter.workflows.gitops import GitOpsWorkflow
    from tests.conftest import GitRepo

    members = min(args.members, agents)
    clusters = agents // members
    res = Result(agents=clusters * members, clusters=clusters, members=members)
    for m in lab.machines[: res.agents]:
        lab.reset(m, bootstrap_public)
    here = workdir / f"n{agents}"
    orbiter = Orbiter(here / "orbiter", pythonpath, {"ORBITER_MASTERKEY_FILE": os.environ["ORBITER_MASTERKEY_FILE"],
                                                     **dict(kv.split("=", 1) for kv in args.worker_env)})
    try:
        client = await orbiter.start()
        repo = GitRepo(here)
        orb = f"scale{agents}"
        names = default_secret_names(PROVIDER)
        box = SecretBox.new(Path(os.environ["ORBITER_MASTERKEY_FILE"]).read_bytes())
        sealed = box.empty_file()
        sealed.secrets[names["bootstrap"]] = box.encrypt(names["bootstrap"], bootstrap_private.encode())
        def yml(n: int = clusters, comment: str = "") -> str:
            return desired_yml(orb, lab, res.agents, n, members, args.drift, args.max_parallel, comment)

        repo.push({"desired.yml": yml(0), "secrets.yml": sealed.to_yaml()}, "the orb, no cluster yet")
        wid = gitops_workflow_id(repo.url, "main")
        await start_gitops(client, RepoRef(url=repo.url))
        deadline = time.monotonic() + 120
        while names["maintenance"] not in ((parse_secrets_file(repo.remote_file("secrets.yml"))
                                            or box.empty_file()).secrets):
            orbiter.check()
            if time.monotonic() > deadline:
                raise RuntimeError("no maintenance key in secrets.yml within 120 s")
            await asyncio.sleep(0.2)
        handle = client.get_workflow_handle(wid)

        def snap() -> dict[str, dict[str, float]]:
            return {**orbiter.usage(), "host": {"busy": host_busy()}}

        async def applied(commit: str, t0: float) -> tuple[float, float, dict[str, float]]:
            """(push -> every cluster Ready at `commit`, -> the same in current.yml, per cluster the
            wall time its line first showed it there)."""
            result = await handle.execute_update(GitOpsWorkflow.sync, SyncInput(),
                                                 rpc_timeout=dt.timedelta(seconds=args.timeout))
            ready = time.perf_counter() - t0
            bad = [f"{n}: {c.phase} at {(c.commit or '')[:8]} {c.error or ''}"
                   for n, c in result.status.clusters.items()
                   if c.phase != "Ready" or c.commit != commit or sum(x.ready for x in c.nodes) != members]
            if bad or len(result.status.clusters) != clusters:
                raise RuntimeError(f"settled, but not all Ready at {commit[:8]}: {'; '.join(bad[:5])}"
                                   f" ({result.status.error or ''} {result.status.rejected or ''})")
            seen: dict[str, float] = {}
            while len(seen) < clusters:
                text = repo.remote_file("current.yml") or ""
                now = time.time()
                for n, (phase, at) in cluster_lines(text).items():
                    if n not in seen and phase == "Ready" and at == commit:
                        seen[n] = now
                if time.perf_counter() - t0 > args.timeout:
                    raise RuntimeError(f"current.yml not Ready at {commit[:8]} in {args.timeout} s")
                orbiter.check()
                await asyncio.sleep(0.2)
            return ready, time.perf_counter() - t0, seen

        # Timed: the clusters.
        before = snap()
        wall0, t0 = time.time(), time.perf_counter()
        commit = repo.push({"desired.yml": yml()}, f"{clusters} clusters of {members}")
        res.push_ready, res.push_current, seen = await applied(commit, t0)
        res.usage["push"] = delta(snap(), before)
        reported = await ready_reports(client, orb, clusters, wall0)
        res.lag = [seen[c] - reported[c] for c in sorted(seen) if c in reported]
        log(f"N={res.agents}: push -> Ready {res.push_ready:.1f} s, -> current.yml {res.push_current:.1f} s")

        # Timed: a no-op push.
        before = snap()
        t0 = time.perf_counter()
        commit = repo.push({"desired.yml": yml(comment="no-op")}, "no-op")
        res.noop_ready, res.noop_current, _ = await applied(commit, t0)
        res.usage["noop"] = delta(snap(), before)
        log(f"N={res.agents}: no-op -> Ready {res.noop_ready:.1f} s, -> current.yml {res.noop_current:.1f} s")

        # Drift rounds, counted from the node agents' histories (their converge_node activities).
        before = snap()
        res.rounds = args.rounds
        done = await wait_rounds(client, orb, res.agents, args.rounds + 1, wall0,
                                 parse_duration(args.drift).total_seconds(), orbiter, args.timeout * 10)
        res.drift_seconds = done - wall0
        res.usage["drift"] = delta(snap(), before)
        log(f"N={res.agents}: every agent {args.rounds} drift rounds {res.drift_seconds:.0f} s after the push")
        res.histories = await histories(client)
        res.write_backs = sum(1 for line in repo.log() if line.startswith("orbiter"))
        return res
    finally:
        orbiter.stop()


def cluster_lines(text: str) -> dict[str, tuple[str, str]]:
    """(phase, commit) of each cluster in current.yml, read off its lines: parsing the whole file
    of a thousand nodes several times a second would take the CPU the worker is measured on."""
    out: dict[str, tuple[str, str]] = {}
    name, inside = None, False
    for line in text.splitlines():
        if line == "clusters:":
            inside = True
        elif inside and line.startswith("  ") and not line.startswith("   ") and line.endswith(":"):
            name = line.strip()[:-1]
            out[name] = ("", "")
        elif inside and name and line.startswith("    phase: "):
            out[name] = (line.split(": ", 1)[1], out[name][1])
        elif inside and name and line.startswith("    commit: "):
            out[name] = (out[name][0], line.split(": ", 1)[1])
        elif line and not line.startswith(" "):
            inside = line == "clusters:"
    return out


async def ready_reports(client, orb: str, clusters: int, since: float) -> dict[str, float]:  # noqa: ANN001
    """Per cluster, when its workflow last set its phase (Ready) after `since`: the moment it
    reports to the GitOps workflow, read from its history (search attributes are not encrypted)."""
    from temporalio.api.enums.v1 import EventType as E

    from orbiter.models.ids import cluster_workflow_id

    out = {}
    for c in range(clusters):
        name = f"c{c:02d}"
        history = await client.get_workflow_handle(cluster_workflow_id(orb, name)).fetch_history()
        times = [ev.event_time.ToDatetime(tzinfo=dt.UTC).timestamp() for ev in history.events
                 if ev.event_type == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES]
        times = [t for t in times if t >= since]
        if times:
            out[name] = times[-1]
    return out


async def wait_rounds(client, orb: str, agents: int, rounds: int, since: float, drift: float,  # noqa: ANN001
                      orbiter: Orbiter, timeout: float) -> float:
    """Until every node agent has completed `rounds` converge_node activities (its first round and
    then drift rounds); the wall time when the last one got there. Reads each agent's history
    again only until it is done, a few at a time, so the bench does not load the server much."""
    from temporalio.api.enums.v1 import EventType as E

    pending = [wf.id async for wf in client.list_workflows("WorkflowType = 'NodeAgentWorkflow'")]
    if len(pending) != agents:
        raise RuntimeError(f"{len(pending)} node agents run, {agents} expected")
    last = since
    deadline = time.monotonic() + timeout
    await asyncio.sleep(max(0.0, since + (rounds - 1) * drift - time.time()))  # not before they can be done
    while pending:
        await asyncio.sleep(min(30.0, max(3.0, len(pending) / 50)))
        still = []
        for wid in pending:
            handle = client.get_workflow_handle(wid)
            # The length first (cheap); the history only once it can hold `rounds` rounds
            # (a round is 8 events at least: activity 3, timer 2, a workflow task 3).
            if (await handle.describe()).raw_description.workflow_execution_info.history_length < 8 * rounds:
                still.append(wid)
                continue
            history = await handle.fetch_history()
            ends = [ev.event_time.ToDatetime(tzinfo=dt.UTC).timestamp() for ev in history.events
                    if ev.event_type == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED]
            if len(ends) >= rounds:
                last = max(last, ends[rounds - 1])
            else:
                still.append(wid)
        log(f"  {agents - len(still)}/{agents} agents have done {rounds - 1} drift rounds")
        pending = still
        orbiter.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} agents short of {rounds} rounds after {timeout:g}s")
    return last


async def histories(client) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Per workflow type: the number of workflows, and of their current runs the median and max
    events and bytes (the serialized history), and how many runs continued as new."""
    per: dict[str, list[tuple[int, int]]] = {}
    chains: dict[str, int] = {}
    async for wf in client.list_workflows():
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        kind = wf.workflow_type
        if wf.status is not None and wf.status.name == "CONTINUED_AS_NEW":
            chains[kind] = chains.get(kind, 0) + 1
            continue
        per.setdefault(kind, []).append((len(history.events), sum(ev.ByteSize() for ev in history.events)))
    out = {}
    for kind, rows in per.items():
        events, size = [r[0] for r in rows], [r[1] for r in rows]
        out[kind] = {"workflows": len(rows), "events_median": statistics.median(events), "events_max": max(events),
                     "bytes_median": statistics.median(size), "bytes_max": max(size),
                     "continued_as_new": chains.get(kind, 0)}
    return out


def rounds_per_second(r: Result) -> float:
    """Node agent rounds the worker completed per second of the drift phase (from the push on)."""
    return r.agents * r.rounds / r.drift_seconds if r.drift_seconds else 0.0


def per_round(r: Result, proc: str) -> float:
    """CPU milliseconds of `proc` per node round in the drift phase (comparable across --rounds)."""
    return 1000 * r.usage["drift"][f"{proc}_cpu"] / (r.agents * r.rounds) if r.rounds else 0.0


def table(results: list[Result]) -> str:
    head = "| figure | " + " | ".join(f"{r.agents} ({r.clusters}x{r.members})" for r in results) + " |"
    rows = [head, "|---|" + "---|" * len(results)]

    def row(name: str, values: list[str]) -> None:
        rows.append(f"| {name} | " + " | ".join(values) + " |")

    row("push -> all Ready (s)", [f"{r.push_ready:.1f}" for r in results])
    row("push -> all Ready in current.yml (s)", [f"{r.push_current:.1f}" for r in results])
    row("Ready report -> current.yml, median / max (s)",
        [f"{statistics.median(r.lag):.2f} / {max(r.lag):.2f}" if r.lag else "-" for r in results])
    row("no-op push -> all Ready (s)", [f"{r.noop_ready:.1f}" for r in results])
    row("no-op push -> current.yml (s)", [f"{r.noop_current:.1f}" for r in results])
    row("push -> every agent did its drift rounds (s)", [f"{r.drift_seconds:.0f} ({r.rounds} rounds)" for r in results])
    row("node rounds per second (drift phase)", [f"{rounds_per_second(r):.1f}" for r in results])
    row("worker / server CPU ms per node round", [f"{per_round(r, 'worker'):.0f} / {per_round(r, 'server'):.0f}"
                                                  for r in results])
    for phase in ("push", "noop", "drift"):
        row(f"worker CPU s, {phase}", [f"{r.usage[phase]['worker_cpu']:.1f}" for r in results])
        row(f"server CPU s, {phase}", [f"{r.usage[phase]['server_cpu']:.1f}" for r in results])
        row(f"host busy CPU s, {phase}", [f"{r.usage[phase]['host_busy']:.1f}" for r in results])
    row("worker RSS end / peak (MiB)", [f"{r.usage['drift']['worker_rss']:.0f} / {r.usage['drift']['worker_hwm']:.0f}"
                                        for r in results])
    row("server RSS end / peak (MiB)", [f"{r.usage['drift']['server_rss']:.0f} / {r.usage['drift']['server_hwm']:.0f}"
                                        for r in results])
    row("worker threads", [f"{r.usage['drift']['worker_threads']:.0f}" for r in results])
    for kind in ("GitOpsWorkflow", "ClusterWorkflow", "NodeAgentWorkflow"):
        def h(r: Result, kind: str = kind) -> str:
            x = r.histories.get(kind)
            if not x:
                return "-"
            return (f"{x['events_median']:.0f} / {x['events_max']:.0f} ev, {x['bytes_median'] / 1024:.0f} /"
                    f" {x['bytes_max'] / 1024:.0f} KiB, {x['continued_as_new']} CAN")
        row(f"{kind} history, median / max", [h(r) for r in results])
    row("orbiter write-back commits", [str(r.write_backs) for r in results])
    return "\n".join(rows)


def ratios(results: list[Result]) -> str:
    a, b = results[0], results[-1]
    lines = [f"ratios {b.agents} vs {a.agents} agents (x{b.agents / a.agents:.0f}):"]
    pairs = [("push -> Ready", a.push_ready, b.push_ready), ("no-op -> Ready", a.noop_ready, b.noop_ready),
             ("worker CPU per node round", per_round(a, "worker"), per_round(b, "worker")),
             ("server CPU per node round", per_round(a, "server"), per_round(b, "server")),
             ("node rounds per second", rounds_per_second(a), rounds_per_second(b)),
             ("worker RSS", a.usage["drift"]["worker_rss"], b.usage["drift"]["worker_rss"]),
             ("server RSS", a.usage["drift"]["server_rss"], b.usage["drift"]["server_rss"]),
             ("worker threads", a.usage["drift"]["worker_threads"], b.usage["drift"]["worker_threads"])]
    for kind in ("ClusterWorkflow", "NodeAgentWorkflow", "GitOpsWorkflow"):
        if kind in a.histories and kind in b.histories:
            pairs.append((f"{kind} history bytes (max)", a.histories[kind]["bytes_max"],
                          b.histories[kind]["bytes_max"]))
    for name, x, y in pairs:
        lines.append(f"  {name}: {y / x:.2f}" if x else f"  {name}: -")
    return "\n".join(lines)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--agents", type=int, nargs="+", default=[100, 300, 1000], help="node agents per size (C*M)")
    ap.add_argument("--members", type=int, default=50, help="members per cluster, M (at most 100)")
    ap.add_argument("--rounds", type=int, default=50, help="drift rounds every agent does before histories are read")
    ap.add_argument("--drift", default="5s", help="the orb's driftInterval")
    ap.add_argument("--max-parallel", type=int, default=100, help="the orb's maxParallel")
    ap.add_argument("--subnet", default="172.30.0.0/16")
    ap.add_argument("--timeout", type=float, default=900, help="seconds a push may take to be Ready")
    ap.add_argument("--worker-env", nargs="*", default=[], metavar="K=V", help="settings for the worker process")
    ap.add_argument("--out", default="bench/scale-results.json")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="orbiter-scale-"))
    pythonpath = kind_path(workdir)
    sys.path[:0] = pythonpath.split(os.pathsep)
    key_file = workdir / "masterkey"
    key_file.write_bytes(secrets.token_hex(24).encode())
    key_file.chmod(0o600)
    os.environ["ORBITER_MASTERKEY_FILE"] = str(key_file)  # the client's payload codec needs it too
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / "bootstrap")], check=True)
    private, public = (workdir / "bootstrap").read_text(), (workdir / "bootstrap.pub").read_text()

    from netlab import NetLab

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(1))  # unwinds through the finally below
    lab = NetLab(workdir, max(args.agents), args.subnet)
    results: list[Result] = []
    ok = False
    try:
        t = time.monotonic()
        lab.open(public)
        log(f"{len(lab.machines)} machines (netns + sshd) up in {time.monotonic() - t:.0f} s")
        for n in sorted(args.agents):
            results.append(await run_size(args, lab, workdir, pythonpath, n, private, public))
            Path(args.out).write_text(json.dumps([r.__dict__ for r in results], indent=1))
        print()
        print(table(results))
        print()
        print(ratios(results))
        ok = True
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        lab.close()
        if ok:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
        else:
            log(f"logs kept in {workdir} (worker.log, server.log, sshd.log)")


if __name__ == "__main__":
    asyncio.run(main())
