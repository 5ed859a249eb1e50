#!/usr/bin/env python3
"""Benchmark: from N fresh machines to a healthy N-member etcd cluster, orbiter vs its peers.

Run as root from the repo root::

    .venv/bin/python bench/etcd_bootstrap.py --nodes 3 9 --runs 5

What it does (see bench/README.md):

1. installs the peers (``ansible-core``, ``pyinfra``) into ``bench/.venv-peers``;
2. boots max(--nodes) fresh Debian machines with its own LocalMachines ("bench", its own
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
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import CpuSpan  # noqa: E402 - bench/cpu.py, next to this script

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PEERS_DIR = Path(os.environ.get("BENCH_PEERS_DIR", REPO_DIR.parent / "shared" / "bench-peers")).resolve()
PEERS_VENV = BENCH_DIR / ".venv-peers"
PEERS_PACKAGES = ["ansible-core", "pyinfra"]

PROVIDER_NAME = "bench"
DEFAULT_SUBNET = "10.79.0.0/24"
POOL = "etcd"
STATIC_PROVIDER = "benchstatic"  # orbiter's static provider over the bench machines
ORBITER_CLUSTER = "bench"
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
    orbiter: OrbiterBench | None = None  # Temporal server + worker, started on orbiter's first run

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
        self.lab: Lab | None = None
        self.done = False

    def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        # A second Ctrl-C must not leave machines behind half-way through.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.lab is not None and self.lab.orbiter is not None:
                log("cleanup: stopping orbiter's worker and Temporal server")
                try:
                    self.lab.orbiter.stop()
                except Exception as exc:  # noqa: BLE001 - keep cleaning up
                    log(f"cleanup: orbiter: {exc}")
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
        from orbiter.activities.providers.local import nspawn

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
    from orbiter.activities.providers.local import LocalMachines, state_dir
    from orbiter.activities.providers.local.aptrepo import AptRepo
    from orbiter.activities.providers.local.packages import resolve_host_versions
    from orbiter.activities.ssh import generate_ed25519

    # The base image is shared with orbiter and the tests; everything else is throwaway.
    os.environ.setdefault("ORBITER_IMAGE_CACHE", str(state_dir() / "images"))
    workdir = Path(tempfile.mkdtemp(prefix="orbiter-bench-"))
    cleanup.workdir = workdir
    provider = LocalMachines(PROVIDER_NAME, subnet, state=workdir / "state")
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
    cleanup.lab = lab
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


# CPU seconds by process group of the last timed tool run (bench/cpu.py), read by bench().
LAST_CPU: dict[str, float] = {}


def _run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = TOOL_TIMEOUT, timed: bool = False
) -> float:
    """Run a command, return its wall time; raise RunFailed with the output's tail on failure.
    timed: a tool's run, whose CPU use by process group goes to LAST_CPU."""
    span = CpuSpan()
    if timed:
        span.start()
    start = time.perf_counter()
    try:
        proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RunFailed(f"{' '.join(args)}: timed out after {timeout:g}s") from exc
    wall = time.perf_counter() - start
    if timed:
        LAST_CPU.clear()
        LAST_CPU.update(span.stop())
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
    return _run(["bash", str(PEERS_DIR / "limit.sh")], lab.env(n), PEERS_DIR, timed=True)


def _run_ansible(lab: Lab, n: int, cfg: str) -> float:
    env = lab.env(n)
    env["ANSIBLE_CONFIG"] = str(PEERS_DIR / "ansible" / cfg)
    env["ANSIBLE_LOCAL_TEMP"] = str(lab.workdir / "ansible-tmp")
    hosts = inventory_dir(lab, n) / "hosts.ini"
    playbook = [str(PEERS_VENV / "bin" / "ansible-playbook"), "-i", str(hosts), "etcd.yml"]
    return _run(playbook, env, PEERS_DIR / "ansible", timed=True)


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
    pyinfra = [str(PEERS_VENV / "bin" / "pyinfra"), "-y", "inventory.py", "etcd_deploy.py"]
    return _run(pyinfra, lab.env(n), work, timed=True)


# -- orbiter --------------------------------------------------------------------------------

ORBITER_TLS_NOTE = (
    "note: the peers bootstrap etcd over plain HTTP; orbiter uses TLS by default (tls: true: CA, "
    "peer/server/client certificates). `orbiter` pushes tls: false (like for like); `orbiter-tls` "
    "(--orbiter-tls) pushes tls: true."
)


def orbiter_desired_yml(
    lab: Lab, n: int, tls: bool = False, orb: str = "bench", cluster: bool = True, comment: str = ""
) -> str:
    """The desired.yml run_orbiter pushes: an n-member etcd on a static provider whose pool holds
    the bench machines (root login with the lab's key, stored as the secret
    `benchstatic_bootstrapkey`). cluster=False renders the orb without the cluster (the untimed
    set-up commit); `comment` is appended as a YAML comment (the no-op re-run)."""
    pool = "\n".join(f"          - {{id: {x.name}, ip: {x.ip}}}" for x in lab.nodes[:n])
    text = f"""apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: 30s
  providers:
    {STATIC_PROVIDER}:
      kind: static
      remoteUser: root
      pools:
        {POOL}:
{pool}
"""
    if cluster:
        text += f"""  clusters:
    {ORBITER_CLUSTER}:
      kind: etcd
      version: "{ETCD_VERSION}"
      members: {{provider: {STATIC_PROVIDER}, pool: {POOL}, nodes: {n}}}
      tls: {str(tls).lower()}
"""
    if comment:
        text += f"# {comment}\n"
    return text


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "operator",
        "GIT_AUTHOR_EMAIL": "op@example.org",
        "GIT_COMMITTER_NAME": "operator",
        "GIT_COMMITTER_EMAIL": "op@example.org",
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RunFailed(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


class BenchRepo:
    """A bare remote plus the operator's clone, as on a real git server (one per orbiter run)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True)
        self.remote = root / "remote.git"
        self.clone = root / "clone"
        _git(root, "init", "-q", "--bare", "-b", "main", str(self.remote))
        _git(root, "clone", "-q", str(self.remote), str(self.clone))
        _git(self.clone, "checkout", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return str(self.remote)

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, content in files.items():
            (self.clone / name).write_text(content)
        _git(self.clone, "add", *files)
        _git(self.clone, "commit", "-q", "-m", message)
        return _git(self.clone, "rev-parse", "HEAD")

    def pull(self) -> None:
        _git(self.clone, "pull", "-q", "--rebase", "origin", "main")

    def push(self) -> None:
        _git(self.clone, "push", "-q", "origin", "main")

    def remote_file(self, name: str) -> str | None:
        proc = subprocess.run(["git", "show", f"main:{name}"], cwd=self.remote, capture_output=True, text=True)
        return proc.stdout if proc.returncode == 0 else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Span:
    """One step of orbiter's run, in seconds after the push, read from a workflow history."""

    wid: str
    where: str  # gitops, cluster, nodes
    what: str
    start: float
    end: float
    queued: float = 0.0  # scheduled -> started (activities)


class OrbiterBench:
    """Once per benchmark: a Temporal dev server (throwaway db, free ports) and an orbiter worker
    subprocess (`orbiter worker`, as in production) with their own state dir and master key.
    Per run: a fresh git repo and orb name; timed from the push to the cluster Ready with n ready
    nodes, as `git push && orbiter poke --wait` sees it (the GitOps workflow's `sync` update), and
    to the same in current.yml in the remote; then the no-op re-run (a comment-only commit)."""

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "orbiter"
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.client = None
        self.master_key = b""
        self.count = 0
        self.records: list[dict] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        from orbiter.worker.client import connect
        from orbiter.worker.server import start_server

        self.root.mkdir(parents=True, exist_ok=True)
        self.master_key = secrets.token_hex(24).encode()
        key_file = self.root / "masterkey"
        key_file.write_bytes(self.master_key)
        key_file.chmod(0o600)
        # The client's payload codec encrypts with the master key too: this process needs it.
        os.environ["ORBITER_MASTERKEY_FILE"] = str(key_file)
        port, ui_port = _free_port(), _free_port()
        address = f"127.0.0.1:{port}"
        t0 = time.monotonic()
        self.server = start_server(
            self.root / "temporal.db", port=port, ui_port=ui_port, headless=True, log=self.root / "server.log"
        )
        env = dict(os.environ)
        env.update(
            TEMPORAL_ADDRESS=address,
            ORBITER_STATE_DIR=str(self.root / "state"),
            ORBITER_MASTERKEY_FILE=str(key_file),
        )
        orbiter_bin = Path(sys.executable).parent / "orbiter"
        if not orbiter_bin.exists():
            orbiter_bin = REPO_DIR / ".venv" / "bin" / "orbiter"
        with open(self.root / "worker.log", "ab") as out:
            self.worker = subprocess.Popen(
                [str(orbiter_bin), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="orbiter-client", daemon=True)
        self.thread.start()
        self.client = self.call(connect(address))
        log(f"orbiter: Temporal dev server on {address}, worker pid {self.worker.pid} ({time.monotonic() - t0:.1f}s)")

    def stop(self) -> None:
        from orbiter.worker.server import stop_server

        if self.worker is not None and self.worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, signal.SIGINT)
            try:
                self.worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()
        self.worker = None
        if self.server is not None:
            stop_server(self.server)
            self.server = None
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self.thread is not None:
                self.thread.join(timeout=5)
            self.loop = None

    def call(self, coro, timeout: float = 60):  # noqa: ANN001, ANN201 - any coroutine and its result
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _check_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            raise RunFailed(f"orbiter worker exited: {_tail(self.root / 'worker.log')}")

    # -- one run -----------------------------------------------------------------------------
    def run(self, lab: Lab, n: int, tls: bool) -> float:
        from orbiter.cli.gitops import start_gitops
        from orbiter.models.ids import cluster_workflow_id, gitops_workflow_id, node_workflow_id
        from orbiter.models.providers import default_secret_names
        from orbiter.models.refs import RepoRef
        from orbiter.models.secrets import SecretBox, parse_secrets_file, read_secret

        self.count += 1
        orb = f"b{n}{'t' if tls else 'p'}{self.count}"
        repo = BenchRepo(self.root / f"repo-{orb}")
        names = default_secret_names(STATIC_PROVIDER)
        box = SecretBox.new(self.master_key)
        secrets_file = box.empty_file()
        secrets_file.secrets[names["bootstrap"]] = box.encrypt(names["bootstrap"], lab.private_key.encode())
        repo.commit(
            {
                "desired.yml": orbiter_desired_yml(lab, n, tls, orb=orb, cluster=False),
                "secrets.yml": secrets_file.to_yaml(),
            },
            "the orb, no cluster yet",
        )
        repo.push()
        wids = {
            "gitops": gitops_workflow_id(repo.url, "main"),
            "cluster": cluster_workflow_id(orb, ORBITER_CLUSTER),
            "nodes": [node_workflow_id(orb, ORBITER_CLUSTER, x.name) for x in lab.nodes[:n]],
        }
        record: dict = {"n": n, "tls": tls, "orb": orb}
        maintenance: str | None = None
        try:
            # Untimed: orbiter takes the orb in and writes its maintenance key back (sealed ->
            # secrets.yml); installing it on the machines is first contact, inside the timed part.
            self.call(start_gitops(self.client, RepoRef(url=repo.url)))

            def keys_written() -> bool:
                parsed = parse_secrets_file(repo.remote_file("secrets.yml"))
                return parsed is not None and names["maintenance"] in parsed.secrets

            self._until(keys_written, "the maintenance key in secrets.yml", timeout=120)
            maintenance = read_secret(self.master_key, repo.remote_file("secrets.yml"), names["maintenance"]).decode()

            # Timed: push + poke -> Ready with n ready nodes.
            repo.pull()
            commit = repo.commit({"desired.yml": orbiter_desired_yml(lab, n, tls, orb=orb)}, f"{n}-member etcd")
            span = CpuSpan()
            span.start()
            wall0, t0 = time.time(), time.perf_counter()
            repo.push()
            status_s, current_s, status = self._wait_applied(wids["gitops"], repo, commit, n, t0)
            LAST_CPU.clear()
            LAST_CPU.update(span.stop())
            leaders = sum(1 for x in status.nodes if x.leader)
            if leaders != 1:
                raise RunFailed(f"orbiter: Ready with {leaders} leaders")
            record.update(status_s=status_s, current_s=current_s, wall0=wall0)

            # The no-op re-run: a commit that only adds a comment -> the new commit applied.
            repo.pull()
            commit = repo.commit(
                {"desired.yml": orbiter_desired_yml(lab, n, tls, orb=orb, comment=f"no-op re-run {orb}")}, "no-op"
            )
            noop0, t0 = time.time(), time.perf_counter()
            repo.push()
            noop_status_s, noop_current_s, _ = self._wait_applied(wids["gitops"], repo, commit, n, t0)
            record.update(noop_status_s=noop_status_s, noop_current_s=noop_current_s, noop_wall0=noop0)
            log(
                f"N={n} orbiter{'-tls' if tls else ''} {orb}: push -> status Ready {status_s:.2f}s, "
                f"-> current.yml {current_s:.2f}s; no-op {noop_status_s:.2f}s / {noop_current_s:.2f}s"
            )
        finally:
            # Untimed: stop the orb's workflows (the node agents would put reset.sh's changes
            # back), read their histories, give root's login back to the harness key.
            self._terminate([wids["gitops"], wids["cluster"], *wids["nodes"]])
            if "wall0" in record:
                with contextlib.suppress(Exception):
                    record["spans"] = self._spans(wids, record["wall0"], record.get("noop_wall0"))
            self.records.append(record)
            restore_root_key(lab, n, maintenance)
        return status_s

    def _until(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            self._check_worker()
            if time.monotonic() > deadline:
                raise RunFailed(f"orbiter: no {what} within {timeout:g}s")
            time.sleep(0.05)

    def _wait_applied(self, wid: str, repo: BenchRepo, commit: str, n: int, t0: float, timeout: float = TOOL_TIMEOUT):  # noqa: ANN202
        """(push -> the cluster Ready, push -> current.yml Ready, the cluster's status). The first is
        `orbiter poke --wait`: the GitOps workflow's `sync` update polls and returns once the
        cluster settled, so nothing polls orbiter meanwhile; current.yml is polled afterwards."""
        from orbiter.models.current import OrbStatus
        from orbiter.models.gitops import SyncInput
        from orbiter.workflows.gitops import GitOpsWorkflow

        handle = self.client.get_workflow_handle(wid)
        result = self.call(handle.execute_update(GitOpsWorkflow.sync, SyncInput()), timeout=timeout)
        at_status = time.perf_counter() - t0
        ready = result.status.clusters.get(ORBITER_CLUSTER)
        if not _applied(ready, commit, n):
            state = f"{ready.phase}, step {ready.step}, error {ready.error}" if ready else "no cluster"
            raise RunFailed(f"orbiter: settled at {commit[:8]} but not Ready ({state}; {result.status.error})")
        while True:
            written = OrbStatus.from_yaml(repo.remote_file("current.yml")).clusters.get(ORBITER_CLUSTER)
            if _applied(written, commit, n):
                return at_status, time.perf_counter() - t0, ready
            if time.perf_counter() - t0 > timeout:
                raise RunFailed(f"orbiter: current.yml not Ready at {commit[:8]} within {timeout:g}s")
            self._check_worker()
            time.sleep(0.05)

    def _terminate(self, wids: list[str]) -> None:
        for wid in wids:
            with contextlib.suppress(Exception):
                self.call(self.client.get_workflow_handle(wid).terminate(reason="benchmark run over"))

    # -- where the time goes -----------------------------------------------------------------
    def _spans(self, wids: dict, wall0: float, noop0: float | None) -> dict[str, list[dict]]:
        """Activities, signals and child starts of the orb's workflows, split into the bootstrap
        and the no-op re-run, in seconds after the respective push. Node agents are merged: one
        span per activity round from the first node's start to the last node's end."""
        raw: list[Span] = []
        raw += self.call(self._history(wids["gitops"], "gitops"))
        raw += self.call(self._history(wids["cluster"], "cluster"))
        for wid in wids["nodes"]:
            with contextlib.suppress(Exception):
                raw += self.call(self._history(wid, "nodes"))
        out: dict[str, list[dict]] = {}
        for phase, origin, until in (("bootstrap", wall0, noop0), ("noop", noop0, None)):
            if origin is None:
                continue
            picked = [s for s in raw if s.start >= origin and (until is None or s.start < until)]
            out[phase] = _merge_spans(picked, origin)
        return out

    async def _history(self, wid: str, where: str) -> list[Span]:
        from temporalio.api.enums.v1 import EventType as E

        history = await self.client.get_workflow_handle(wid).fetch_history()
        spans: list[Span] = []
        scheduled: dict[int, list] = {}
        for ev in history.events:
            t = ev.event_time.ToDatetime(tzinfo=dt.UTC).timestamp()
            kind = ev.event_type
            if kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                name = ev.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[ev.event_id] = [name, t, t]
            elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                a = ev.activity_task_started_event_attributes
                if a.scheduled_event_id in scheduled:
                    scheduled[a.scheduled_event_id][2] = t
            elif kind in (E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, E.EVENT_TYPE_ACTIVITY_TASK_FAILED):
                a = (
                    ev.activity_task_completed_event_attributes
                    if kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                    else ev.activity_task_failed_event_attributes
                )
                name, begin, started = scheduled.pop(a.scheduled_event_id, ["?", t, t])
                failed = " (failed)" if kind == E.EVENT_TYPE_ACTIVITY_TASK_FAILED else ""
                spans.append(Span(wid, where, name + failed, begin, t, started - begin))
            elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                name = ev.workflow_execution_signaled_event_attributes.signal_name
                if name in ("poke", "desired", "apply"):
                    spans.append(Span(wid, where, f"signal {name} received", t, t))
                elif name == "node_report":
                    spans.append(Span(wid, where, "node_report received", t, t))
            elif kind == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                spans.append(Span(wid, where, "start node agent", t, t))
            elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED and where == "nodes":
                spans.append(Span(wid, where, "node agent started", t, t))
            elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                spans.append(Span(wid, where, "workflow task", t, t))
        return spans


def _applied(status, commit: str, n: int) -> bool:  # noqa: ANN001 - ClusterStatus or None
    if status is None:
        return False
    if status.phase == "Blocked" and status.desired_commit == commit:
        raise RunFailed(f"orbiter: cluster Blocked: {status.error}")
    return (
        status.phase == "Ready"
        and status.commit == commit
        and len(status.nodes) == n
        and sum(1 for x in status.nodes if x.ready) == n
    )


def _merge_spans(spans: list[Span], origin: float) -> list[dict]:
    """Spans relative to the push. The k-th occurrence of a step in one workflow is `what #k`;
    the node agents' spans of the same label are merged: first start to last end, `count` nodes,
    `busy` the summed durations, `queued` the longest scheduled -> started wait."""
    seen: dict[tuple[str, str], int] = {}
    merged: dict[tuple[str, str], dict] = {}
    tasks: dict[str, int] = {}
    for s in sorted(spans, key=lambda x: x.start):
        if s.what == "workflow task":
            tasks[s.where] = tasks.get(s.where, 0) + 1
            continue
        what = s.what
        if what != "node_report received":
            k = seen[(s.wid, what)] = seen.get((s.wid, what), 0) + 1
            what = f"{what} #{k}" if k > 1 else what
        row = merged.setdefault(
            (s.where, what),
            {"where": s.where, "what": what, "start": s.start - origin, "end": s.end - origin, "count": 0,
             "busy": 0.0, "queued": 0.0},
        )
        row["start"] = min(row["start"], s.start - origin)
        row["end"] = max(row["end"], s.end - origin)
        row["count"] += 1
        row["busy"] += s.end - s.start
        row["queued"] = max(row["queued"], s.queued)
    rows = sorted(merged.values(), key=lambda r: r["start"])
    for r in rows:
        for k in ("start", "end", "busy", "queued"):
            r[k] = round(r[k], 3)
    rows.append({"where": "all", "what": "workflow tasks", "count": sum(tasks.values()), "per_workflow": tasks})
    return rows


def restore_root_key(lab: Lab, n: int, maintenance: str | None) -> None:
    """Untimed, after an orbiter run: orbiter's first contact replaced the harness key in root's
    authorized_keys by its maintenance key; put back exactly the harness key (as the provider
    wrote it), unhold the packages orbiter held and remove its TLS files and its claim (the next
    run is another orb), so every tool starts from the same fresh machine. Logs in with the
    maintenance key, or the harness key if orbiter never got that far."""
    from orbiter.activities.ssh import AuthFailed, connect

    script = (
        "set -e; umask 077; mkdir -p /root/.ssh; "
        f"printf '%s\\n' {shlex.quote(lab.public_key.strip())} > /root/.ssh/authorized_keys; "
        f"apt-mark unhold {' '.join(ETCD_PACKAGES)} >/dev/null; rm -rf /etc/etcd/pki /etc/orbiter/claim"
    )

    def one(machine) -> None:  # noqa: ANN001 - orbiter Machine
        err: Exception | None = None
        for key in (k for k in (maintenance, lab.private_key) if k):
            try:
                with connect(machine, key, timeout=15) as s:
                    s.run(script, check=True, timeout=60)
                return
            except AuthFailed as exc:
                err = exc
        raise RunFailed(f"{machine.id}: neither the maintenance key nor the harness key logs in: {err}")

    with ThreadPoolExecutor(max_workers=n) as ex:
        for fut in [ex.submit(one, m) for m in lab.machines[:n]]:
            fut.result()


def _orbiter(lab: Lab) -> OrbiterBench:
    if lab.orbiter is None:
        harness = OrbiterBench(lab.workdir)
        try:
            harness.start()
        except BaseException:
            harness.stop()
            raise
        lab.orbiter = harness
    return lab.orbiter


def _run_orbiter(lab: Lab, n: int, tls: bool) -> float:
    try:
        return _orbiter(lab).run(lab, n, tls=tls)
    except (RunFailed, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - a failed run, not a failed benchmark
        raise RunFailed(f"orbiter: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def run_orbiter(lab: Lab, n: int) -> float:
    """Push + poke -> the cluster Ready with n ready nodes (status query), tls: false like the peers."""
    return _run_orbiter(lab, n, tls=False)


def run_orbiter_tls(lab: Lab, n: int) -> float:
    """The same with tls: true (orbiter's default): CA and member certificates, HTTPS everywhere."""
    return _run_orbiter(lab, n, tls=True)


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def orbiter_report(lab: Lab) -> list[dict]:
    """Per (tls, N): medians of push -> status query Ready, push -> current.yml Ready, the no-op
    re-run both ways, and the median timeline of the steps (from the workflow histories)."""
    if lab.orbiter is None or not lab.orbiter.records:
        return []
    out = []
    groups: dict[tuple[bool, int], list[dict]] = {}
    for rec in lab.orbiter.records:
        groups.setdefault((rec["tls"], rec["n"]), []).append(rec)
    print()
    print("orbiter, seconds after the push (+ poke), median of the successful runs:")
    print(f"{'tls':>5} {'N':>2} {'-> status Ready':>16} {'-> current.yml':>15} {'no-op status':>13} "
          f"{'no-op current.yml':>18} {'ok':>4}")
    for (tls, n), recs in sorted(groups.items()):
        ok = [r for r in recs if "status_s" in r]
        row = {"tls": tls, "n": n, "runs": len(recs), "ok": len(ok)}
        for k in ("status_s", "current_s", "noop_status_s", "noop_current_s"):
            row[k] = _median([r[k] for r in ok if k in r])
            row[k + "_all"] = [round(r[k], 3) for r in ok if k in r]
        for phase in ("bootstrap", "noop"):
            row[f"timeline_{phase}"] = _median_timeline([r["spans"][phase] for r in ok if phase in r.get("spans", {})])
        out.append(row)

        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"

        print(f"{str(tls).lower():>5} {n:>2} {f(row['status_s']):>16} {f(row['current_s']):>15} "
              f"{f(row['noop_status_s']):>13} {f(row['noop_current_s']):>18} {len(ok)}/{len(recs)}")
    for row in out:
        for phase in ("bootstrap", "noop"):
            timeline = row[f"timeline_{phase}"]
            if not timeline:
                continue
            print()
            print(f"where orbiter's time goes: tls {str(row['tls']).lower()}, N={row['n']}, {phase} "
                  "(median over runs; s after the push; nodes: first start .. last end over the node agents)")
            print(f"  {'workflow':<8} {'step':<34} {'start':>7} {'end':>7} {'took':>7} {'queued':>7} {'count':>5}")
            for t in timeline:
                if "start" not in t:
                    print(f"  {t['where']:<8} {t['what']:<34} {'':>7} {'':>7} {'':>7} {'':>7} {t['count']:>5}")
                    continue
                took = t["end"] - t["start"]
                print(f"  {t['where']:<8} {t['what']:<34} {t['start']:>7.3f} {t['end']:>7.3f} {took:>7.3f} "
                      f"{t['queued']:>7.3f} {t['count']:>5}")
    return out


def _median_timeline(runs: list[list[dict]]) -> list[dict]:
    if not runs:
        return []
    keys: dict[tuple[str, str], list[dict]] = {}
    for timeline in runs:
        for t in timeline:
            keys.setdefault((t["where"], t["what"]), []).append(t)
    rows = []
    for (where, what), ts in keys.items():
        if "start" not in ts[0]:
            rows.append({"where": where, "what": what, "count": statistics.median(t["count"] for t in ts)})
            continue
        rows.append({
            "where": where,
            "what": what,
            "start": statistics.median(t["start"] for t in ts),
            "end": statistics.median(t["end"] for t in ts),
            "queued": statistics.median(t["queued"] for t in ts),
            "busy": statistics.median(t["busy"] for t in ts),
            "count": statistics.median(t["count"] for t in ts),
            "runs": len(ts),
        })
    return sorted(rows, key=lambda r: r.get("start", 1e9))


@dataclass
class Tool:
    id: str
    label: str
    run: Callable[[Lab, int], float]
    verify_sh: bool = True  # verify.sh speaks plain HTTP; orbiter-tls checks leader and members itself


TOOLS = [
    Tool("limit.sh", "limit.sh (parallel ssh)", run_limit),
    Tool("ansible-default", "Ansible default", run_ansible_default),
    Tool("ansible-tuned", "Ansible tuned (pipelining, forks 20)", run_ansible_tuned),
    Tool("pyinfra", "pyinfra", run_pyinfra),
    Tool("orbiter", "orbiter (tls: false)", run_orbiter),
]
ORBITER_TLS_TOOL = Tool("orbiter-tls", "orbiter (tls: true)", run_orbiter_tls, verify_sh=False)


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
        res = results[n] = {t.id: {"times": [], "failures": [], "skipped": None, "cpu": []} for t in tools}
        for r in range(1, runs + 1):
            # Interleaved rounds, so a slow spell on the host hits every tool alike.
            for t in tools:
                if res[t.id]["skipped"]:
                    continue
                LAST_CPU.clear()
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
                    if t.verify_sh:
                        verify(lab, n)
                except RunFailed as exc:
                    res[t.id]["failures"].append(f"verify: {exc}")
                    log(f"N={n} run {r} {t.id}: {wall:.2f}s but verify FAILED: {exc}")
                else:
                    res[t.id]["times"].append(wall)
                    res[t.id]["cpu"].append(dict(LAST_CPU))
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
                "cpu_s": _median_cpu(r.get("cpu", [])),
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
    if any(row["tool"].startswith("orbiter") for row in rows):
        print(ORBITER_TLS_NOTE)
    print_cpu(rows)
    return rows


CPU_COLUMNS = ["all", "etcd", "sshd (machines)", "systemd (machines)", "orbiter worker", "temporal server"]


def _median_cpu(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in runs for k in r}
    return {k: round(statistics.median(r.get(k, 0.0) for r in runs), 2) for k in sorted(keys)} if runs else {}


def print_cpu(rows: list[dict]) -> None:
    """CPU seconds the whole host spent during the timed part (median over runs), by process group."""
    if not any(row["cpu_s"] for row in rows):
        return
    print()
    print("CPU seconds on the host during the timed part (median; `all` = every core, every process;")
    print("the tool's own processes are in `tool`; `other` holds the rest, e.g. the bench's polling):")
    head = f"{'tool':<38} {'N':>2} " + " ".join(f"{c[:12]:>12}" for c in [*CPU_COLUMNS, "tool", "other"])
    print(head)
    for row in rows:
        cpu = row["cpu_s"]
        if not cpu:
            continue
        known = set(CPU_COLUMNS) | {"unaccounted"}
        tool = sum(v for k, v in cpu.items() if k not in known and k not in ("bench harness", "other"))
        other = cpu.get("other", 0.0) + cpu.get("bench harness", 0.0) + cpu.get("unaccounted", 0.0)
        cells = [cpu.get(c, 0.0) for c in CPU_COLUMNS] + [tool, other]
        print(f"{row['label']:<38} {row['n']:>2} " + " ".join(f"{x:>12.2f}" for x in cells))


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
    ap.add_argument("--orbiter-tls", action="store_true", help="also time orbiter with tls: true (tool orbiter-tls)")
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
    if args.orbiter_tls:
        tools.append(ORBITER_TLS_TOOL)
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
            orbiter_rows = orbiter_report(lab)
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
                        "orbiter": orbiter_rows,
                        "orbiter_runs": lab.orbiter.records if lab.orbiter else [],
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
