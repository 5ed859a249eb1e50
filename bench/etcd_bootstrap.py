#!/usr/bin/env python3
"""Benchmark: from N fresh machines to a healthy N-member etcd cluster, orbiter vs its peers.

Run as root from the repo root::

    .venv/bin/python bench/etcd_bootstrap.py --nodes 3 9 --runs 5

What it does (see bench/README.md):

1. installs the peers (``ansible-core``, ``pyinfra``) into ``bench/.venv-peers``;
2. boots max(--nodes) fresh Debian machines with its own LocalProvider ("bench", its own
   subnet, the shared base image cache), installs etcd-server and etcd-client 3.4.23 on them
   from the provider's served apt repo and puts them in the peers' "fresh" state (reset.sh:
   etcd stopped, data dir empty, packaged /etc/default/etcd);
3. for every N and every run, times each tool from start to healthy cluster (the tools end
   with their own health wait), checks the cluster with the peers' verify.sh and puts the
   machines back to fresh with reset.sh (both untimed);
4. prints medians, min, max and the ratio to limit.sh next to the peers' published figures,
   and writes bench/results-<date>.json.

The peers' scripts are run in place from ../shared/bench-peers (nothing is copied into the
repo); pyinfra, which reads its deploy and template from the current directory, runs in a
temporary copy. Every machine, the bridge and the apt server are removed at the end, also on
errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PEERS_DIR = Path(os.environ.get("BENCH_PEERS_DIR", REPO_DIR.parent / "shared" / "bench-peers")).resolve()
PEERS_VENV = BENCH_DIR / ".venv-peers"
PEERS_PACKAGES = ["ansible-core", "pyinfra"]

PROVIDER_NAME = "bench"
DEFAULT_SUBNET = "10.79.0.0/24"
POOL = "etcd"
ETCD_VERSION = "3.4.23"
ETCD_PACKAGES = ("etcd-server", "etcd-client")
TOOL_TIMEOUT = 300.0

# Names used in the peers' README table -> our tool ids.
PEER_TABLE_NAMES = {
    "limit.sh": "limit.sh",
    "Ansible default": "ansible-default",
    "Ansible pipelining, forks 20": "ansible-tuned",
    "pyinfra 3.10": "pyinfra",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- the machines ---------------------------------------------------------------------------


@dataclass
class Node:
    """One benchmark machine: etcd member name and address."""

    name: str
    ip: str


@dataclass
class Lab:
    """Everything a run needs: the machines and the root key that logs into them."""

    nodes: list[Node]
    key_file: Path  # private key (OpenSSH), root on every machine
    private_key: str
    public_key: str
    workdir: Path  # scratch dir, removed at the end
    machines: list = field(default_factory=list)  # orbiter Machine objects, same order as nodes

    def env(self, n: int) -> dict[str, str]:
        """Environment of the peers' scripts for the first n machines."""
        env = dict(os.environ)
        env["PEERS_NODES"] = " ".join(f"{x.name}={x.ip}" for x in self.nodes[:n])
        env["PEERS_SSH_KEY"] = str(self.key_file)
        env["PATH"] = f"{PEERS_VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env


class Cleanup:
    """Tears the lab down exactly once: machines, bridge, apt server, scratch dir."""

    def __init__(self) -> None:
        self.provider = None
        self.workdir: Path | None = None
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        # A second Ctrl-C must not leave machines behind half-way through.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.provider is not None:
                log("cleanup: deleting machines, bridge and apt server")
                p = self.provider
                for row in p.list_status():
                    try:
                        p.delete(row["id"])
                    except Exception as exc:  # noqa: BLE001 - keep cleaning up
                        log(f"cleanup: machine {row['id']}: {exc}")
                try:
                    p.destroy_network()
                except Exception as exc:  # noqa: BLE001
                    log(f"cleanup: network: {exc}")
                self._sweep()
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _sweep(self) -> None:
        """Last resort: any nspawn or http.server still bound to our bridge."""
        from orbiter.activities.providers import nspawn

        p = self.provider
        marks = (f"--network-bridge={p.bridge}", f"--bind {p.host_ip} ")
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(m in cmd for m in marks) and ("systemd-nspawn" in cmd or "http.server" in cmd):
                with contextlib.suppress(Exception):
                    nspawn.stop_process_tree(int(proc.name), None, grace=5)
        subprocess.run(["ip", "link", "del", p.bridge], capture_output=True, check=False)


def ensure_peers_venv() -> None:
    """bench/.venv-peers with ansible-core and pyinfra (idempotent)."""
    wanted = [PEERS_VENV / "bin" / "ansible-playbook", PEERS_VENV / "bin" / "pyinfra"]
    if all(p.exists() for p in wanted):
        return
    log(f"installing {' '.join(PEERS_PACKAGES)} into {PEERS_VENV}")
    if not (PEERS_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(PEERS_VENV / "bin" / "pip"), "install", "-q", *PEERS_PACKAGES], check=True)


def tool_versions() -> dict[str, str]:
    out = {}
    for tool, args in {"ansible-core": ["ansible-playbook", "--version"], "pyinfra": ["pyinfra", "--version"]}.items():
        proc = subprocess.run([str(PEERS_VENV / "bin" / args[0]), *args[1:]], capture_output=True, text=True)
        out[tool] = (proc.stdout.strip().splitlines() or ["?"])[0]
    return out


def ssh_all(lab: Lab, command: str, timeout: float = 600) -> None:
    """Run a command as root on every machine in parallel (paramiko); raise on any failure."""
    from orbiter.activities.ssh import connect

    def one(machine) -> None:  # noqa: ANN001 - orbiter Machine
        with connect(machine, lab.private_key, timeout=15) as s:
            s.run(command, check=True, timeout=timeout)

    with ThreadPoolExecutor(max_workers=len(lab.machines)) as ex:
        for fut in [ex.submit(one, m) for m in lab.machines]:
            fut.result()


def setup_lab(n_max: int, subnet: str, cleanup: Cleanup) -> Lab:
    """Boot n_max machines, install etcd from the provider's repo, bring them to fresh."""
    from orbiter.activities.aptrepo import AptRepo
    from orbiter.activities.machines import resolve_host_versions
    from orbiter.activities.providers.local import LocalProvider, state_dir
    from orbiter.activities.ssh import generate_ed25519

    # The base image is shared with orbiter and the tests; everything else is throwaway.
    os.environ.setdefault("ORBITER_IMAGE_CACHE", str(state_dir() / "images"))
    workdir = Path(tempfile.mkdtemp(prefix="orbiter-bench-"))
    cleanup.workdir = workdir
    provider = LocalProvider(PROVIDER_NAME, subnet, state=workdir / "state")
    cleanup.provider = provider

    private, public = generate_ed25519()
    key_file = workdir / "root_ed25519"
    key_file.write_text(private)
    key_file.chmod(0o600)

    ids = [f"bench{i}" for i in range(1, n_max + 1)]
    t0 = time.monotonic()
    log(f"booting {n_max} machines on {subnet} (provider {PROVIDER_NAME!r})")
    machines = provider.create(POOL, ids, public, "bench_maintenancekey")
    log(f"booted in {time.monotonic() - t0:.1f}s: " + ", ".join(f"{m.id}={m.ip}" for m in machines))

    versions = resolve_host_versions(dict.fromkeys(ETCD_PACKAGES, ETCD_VERSION))
    repo = AptRepo(provider)
    t0 = time.monotonic()
    repo.ensure_packages(sorted(versions.items()))
    repo.ensure_served()
    log(f"apt repo ready in {time.monotonic() - t0:.1f}s: {repo.source_line()}")

    lab = Lab(
        nodes=[Node(m.id, m.ip) for m in machines],
        key_file=key_file,
        private_key=private,
        public_key=public,
        workdir=workdir,
        machines=machines,
    )
    specs = " ".join(f"{n}={v}" for n, v in sorted(versions.items()))
    t0 = time.monotonic()
    ssh_all(
        lab,
        "set -e; apt-get update -q >/dev/null; "
        f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {specs} >/dev/null; "
        "etcd --version | head -1",
    )
    log(f"installed {specs} on {n_max} machines in {time.monotonic() - t0:.1f}s")
    reset(lab, n_max)
    return lab


# -- one timed run --------------------------------------------------------------------------


class RunFailed(Exception):
    pass


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = TOOL_TIMEOUT) -> float:
    """Run a command, return its wall time; raise RunFailed with the output's tail on failure."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RunFailed(f"{' '.join(args)}: timed out after {timeout:g}s") from exc
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise RunFailed(f"{Path(args[0]).name if '/' in args[0] else args[0]} exited {proc.returncode}: {tail}")
    return wall


def reset(lab: Lab, n: int) -> None:
    """Untimed: the peers' reset.sh on every machine of the lab (not just the first n)."""
    del n  # a 3-member run leaves the other machines untouched, but reset them all anyway
    _run(["bash", str(PEERS_DIR / "reset.sh")], lab.env(len(lab.nodes)), PEERS_DIR, timeout=120)


def verify(lab: Lab, n: int) -> None:
    _run(["bash", str(PEERS_DIR / "verify.sh")], lab.env(n), PEERS_DIR, timeout=60)


def inventory_dir(lab: Lab, n: int) -> Path:
    """gen_inventory.py's hosts.ini and inventory.py for the first n machines (cached per n)."""
    out = lab.workdir / f"inventory-{n}"
    if not (out / "hosts.ini").exists():
        _run([sys.executable, str(PEERS_DIR / "gen_inventory.py"), str(out)], lab.env(n), PEERS_DIR, timeout=30)
    return out


def run_limit(lab: Lab, n: int) -> float:
    return _run(["bash", str(PEERS_DIR / "limit.sh")], lab.env(n), PEERS_DIR)


def _run_ansible(lab: Lab, n: int, cfg: str) -> float:
    env = lab.env(n)
    env["ANSIBLE_CONFIG"] = str(PEERS_DIR / "ansible" / cfg)
    env["ANSIBLE_LOCAL_TEMP"] = str(lab.workdir / "ansible-tmp")
    hosts = inventory_dir(lab, n) / "hosts.ini"
    playbook = [str(PEERS_VENV / "bin" / "ansible-playbook"), "-i", str(hosts), "etcd.yml"]
    return _run(playbook, env, PEERS_DIR / "ansible")


def run_ansible_default(lab: Lab, n: int) -> float:
    return _run_ansible(lab, n, "ansible.cfg")


def run_ansible_tuned(lab: Lab, n: int) -> float:
    return _run_ansible(lab, n, "ansible-tuned.cfg")


def run_pyinfra(lab: Lab, n: int) -> float:
    # pyinfra reads inventory.py, etcd_deploy.py and the template from its working directory:
    # a temporary copy of the peers' pyinfra/ next to the generated inventory.
    work = lab.workdir / f"pyinfra-{n}"
    if not work.exists():
        shutil.copytree(PEERS_DIR / "pyinfra", work)
        shutil.copy(inventory_dir(lab, n) / "inventory.py", work / "inventory.py")
        for p in work.iterdir():
            p.chmod(0o644)
    return _run([str(PEERS_VENV / "bin" / "pyinfra"), "-y", "inventory.py", "etcd_deploy.py"], lab.env(n), work)


# -- orbiter --------------------------------------------------------------------------------

ORBITER_TLS_NOTE = (
    "note: the peers bootstrap etcd over plain HTTP; orbiter uses TLS by default (tls: true: CA, "
    "peer/server/client certificates). Its figures are for the setting run_orbiter pushes."
)


def orbiter_desired_yml(lab: Lab, n: int, tls: bool = False) -> str:
    """The desired.yml run_orbiter is meant to push: an n-member etcd on a static provider
    whose pool holds the bench machines (root login with the lab's key, stored as the secret
    `benchstatic_maintenancekey`)."""
    pool = "\n".join(f"          - {{id: {x.name}, ip: {x.ip}}}" for x in lab.nodes[:n])
    return f"""apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: bench
spec:
  pollInterval: 30s
  providers:
    benchstatic:
      kind: static
      remoteUser: root
      pools:
        {POOL}:
{pool}
  clusters:
    bench:
      kind: etcd
      version: "{ETCD_VERSION}"
      members: {{provider: benchstatic, pool: {POOL}, nodes: {n}}}
      tls: {str(tls).lower()}
"""


def run_orbiter(lab: Lab, n: int) -> float:
    """Time orbiter from push to Ready for an n-member etcd on the first n machines.

    To fill in once orbiter's etcd kind lands: start (once, untimed) a Temporal dev server and
    a worker, a git repo with orbiter_desired_yml(lab, n) minus the cluster, the lab's private
    key as secret `benchstatic_maintenancekey`; then, timed: commit + push the desired.yml with
    the cluster and return the seconds until `orbiter status` says the cluster is Ready. The
    machines are fresh (reset.sh) on entry; after it verify.sh must pass (HTTP endpoints, so
    push tls: false for a like-for-like figure, and report tls: true separately).
    """
    del lab, n
    raise NotImplementedError("orbiter's etcd kind lands separately")


@dataclass
class Tool:
    id: str
    label: str
    run: Callable[[Lab, int], float]


TOOLS = [
    Tool("limit.sh", "limit.sh (parallel ssh)", run_limit),
    Tool("ansible-default", "Ansible default", run_ansible_default),
    Tool("ansible-tuned", "Ansible tuned (pipelining, forks 20)", run_ansible_tuned),
    Tool("pyinfra", "pyinfra", run_pyinfra),
    Tool("orbiter", "orbiter", run_orbiter),
]


# -- the benchmark and its report -----------------------------------------------------------


def peers_figures() -> dict[tuple[str, int], float]:
    """(tool id, N) -> wall s from the table in the peers' README."""
    out: dict[tuple[str, int], float] = {}
    try:
        text = (PEERS_DIR / "README.md").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in PEER_TABLE_NAMES and cells[1].isdigit():
            m = re.match(r"[\d.]+", cells[2])
            if m:
                out[(PEER_TABLE_NAMES[cells[0]], int(cells[1]))] = float(m.group())
    return out


def bench(lab: Lab, sizes: list[int], runs: int, tools: list[Tool]) -> dict[int, dict[str, dict]]:
    """results[N][tool id] = {"times": [...], "failures": [...], "skipped": reason or None}."""
    results: dict[int, dict[str, dict]] = {}
    for n in sizes:
        res = results[n] = {t.id: {"times": [], "failures": [], "skipped": None} for t in tools}
        for r in range(1, runs + 1):
            # Interleaved rounds, so a slow spell on the host hits every tool alike.
            for t in tools:
                if res[t.id]["skipped"]:
                    continue
                try:
                    wall = t.run(lab, n)
                except NotImplementedError as exc:
                    res[t.id]["skipped"] = str(exc)
                    log(f"N={n} {t.id}: skipped: {exc}")
                    if t.id == "orbiter":
                        log(ORBITER_TLS_NOTE)
                    continue
                except RunFailed as exc:
                    res[t.id]["failures"].append(str(exc))
                    log(f"N={n} run {r} {t.id}: FAILED: {exc}")
                    reset(lab, n)
                    continue
                try:
                    verify(lab, n)
                except RunFailed as exc:
                    res[t.id]["failures"].append(f"verify: {exc}")
                    log(f"N={n} run {r} {t.id}: {wall:.2f}s but verify FAILED: {exc}")
                else:
                    res[t.id]["times"].append(wall)
                    log(f"N={n} run {r}/{runs} {t.id}: {wall:.2f}s")
                reset(lab, n)
    return results


def report(results: dict[int, dict[str, dict]], tools: list[Tool], runs: int) -> list[dict]:
    peers = peers_figures()
    rows = []
    for n, res in results.items():
        limit = res.get("limit.sh", {}).get("times") or []
        limit_med = statistics.median(limit) if limit else None
        for t in tools:
            r = res[t.id]
            times = r["times"]
            row = {
                "tool": t.id,
                "label": t.label,
                "n": n,
                "runs": runs,
                "ok": len(times),
                "times_s": [round(x, 3) for x in times],
                "median_s": round(statistics.median(times), 3) if times else None,
                "min_s": round(min(times), 3) if times else None,
                "max_s": round(max(times), 3) if times else None,
                "ratio_vs_limit": None,
                "peers_readme_wall_s": peers.get((t.id, n)),
                "failures": r["failures"],
                "skipped": r["skipped"],
            }
            if times and limit_med:
                row["ratio_vs_limit"] = round(statistics.median(times) / limit_med, 2)
            rows.append(row)

    def f(x: float | None, fmt: str = "{:.2f}") -> str:
        return "-" if x is None else fmt.format(x)

    head = (
        f"{'tool':<38} {'N':>2} {'median s':>9} {'min':>7} {'max':>7} {'x limit':>8} {'ok':>5}  "
        f"{'peers README s':>14}"
    )
    print()
    print(head)
    print("-" * len(head))
    for row in rows:
        ok = f"{row['ok']}/{row['runs']}"
        if row["skipped"]:
            ok = "skip"
        print(
            f"{row['label']:<38} {row['n']:>2} {f(row['median_s']):>9} {f(row['min_s']):>7} {f(row['max_s']):>7} "
            f"{f(row['ratio_vs_limit'], '{:.2f}x'):>8} {ok:>5}  {f(row['peers_readme_wall_s']):>14}"
        )
    print()
    print("x limit = our median / limit.sh's median at the same N; peers README s = wall s published in")
    print(f"{PEERS_DIR / 'README.md'} (2 cores, median of 5). Target (issue 4): orbiter faster than both")
    print("peers and within 1.5x of limit.sh.")
    for row in rows:
        if row["skipped"]:
            print(f"skipped {row['tool']} N={row['n']}: {row['skipped']}")
    if any(row["tool"] == "orbiter" for row in rows):
        print(ORBITER_TLS_NOTE)
    return rows


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP behave like Ctrl-C, so try/finally cleans up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[3, 9], help="cluster sizes (default: 3 9)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per tool and size; the median is reported")
    ap.add_argument("--subnet", default=DEFAULT_SUBNET, help=f"the bench provider's subnet (default {DEFAULT_SUBNET})")
    ap.add_argument("--tools", nargs="+", choices=[t.id for t in TOOLS], default=[t.id for t in TOOLS])
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default bench/results-<date>.json)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("etcd_bootstrap.py boots machines with systemd-nspawn: run it as root", file=sys.stderr)
        return 2
    if any(not 1 <= n <= 9 for n in args.nodes) or args.runs < 1:
        print("--nodes must be within 1..9 and --runs at least 1", file=sys.stderr)
        return 2
    if not (PEERS_DIR / "limit.sh").exists():
        print(f"the peers' scripts are not at {PEERS_DIR} (set BENCH_PEERS_DIR)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO_DIR))  # only if orbiter is not installed in this interpreter
    tools = [t for t in TOOLS if t.id in args.tools]
    sizes = sorted(set(args.nodes))

    ensure_peers_venv()
    versions = tool_versions()
    log("peers: " + "; ".join(f"{k}: {v}" for k, v in versions.items()))
    cleanup = Cleanup()
    started = dt.datetime.now(dt.UTC)
    try:
        with signals_raise():
            lab = setup_lab(max(sizes), args.subnet, cleanup)
            results = bench(lab, sizes, args.runs, tools)
            rows = report(results, tools, args.runs)
            out = args.out or BENCH_DIR / f"results-{started:%Y-%m-%d}.json"
            out.write_text(
                json.dumps(
                    {
                        "started": started.isoformat(timespec="seconds"),
                        "host_cpus": os.cpu_count(),
                        "etcd": ETCD_VERSION,
                        "peers": versions,
                        "runs": args.runs,
                        "results": rows,
                    },
                    indent=2,
                )
                + "\n"
            )
            log(f"results written to {out}")
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}), cleaning up")
        return 130
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
