"""server, worker, up: running orbiter's processes."""

import asyncio
import contextlib
import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import Client
from temporalio.service import RPCError

from orbiter.models.secrets import SecretsError
from orbiter.worker.client import ConnectError, connect, temporal_address
from orbiter.worker.codec_server import serve as serve_codec
from orbiter.worker.identity import MixedVersions
from orbiter.worker.logs import setup_logging
from orbiter.worker.main import run_worker
from orbiter.worker.masterkey import load_master_key
from orbiter.worker.selfupdate import SelfUpdateError, supervise
from orbiter.worker.server import ServerError, answers, default_db, start_server, stop_server
from orbiter.worker.settings import SettingError

from .common import console, fail
from .gitops import (
    BranchOpt,
    KnownHostsOpt,
    RepoKeyOpt,
    RepoOpt,
    live_progress,
    print_status,
    repo_ref,
    start_gitops,
    step_line,
)
from .receiver import DEFAULT_LISTEN, start_receiver

DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="SQLite file of the server's state [default: ~/.local/state/orbiter/temporal.db]"),
]
CODEC_PORT = 8234


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "127.0.0.1").replace("localhost", "127.0.0.1"), int(port)


def server(
    db: DbOpt = None,
    port: Annotated[int, typer.Option(help="gRPC port")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Web UI port")] = 8233,
    ip: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    codec_endpoint: Annotated[
        str | None,
        typer.Option(help="codec server URL the Web UI decrypts with; default: one on port 8234 started here"),
    ] = None,
    no_codec: Annotated[bool, typer.Option("--no-codec", help="do not start a codec server")] = False,
) -> None:
    """Run the embedded Temporal server (SQLite in --db) with orbiter's search attributes; Ctrl-C stops."""
    db = db or default_db()
    codec = None
    if not no_codec and codec_endpoint is None:
        try:
            codec = serve_codec(
                load_master_key(), port=CODEC_PORT, ui_origin=f"http://localhost:{ui_port},http://127.0.0.1:{ui_port}"
            )
            codec_endpoint = f"http://127.0.0.1:{CODEC_PORT}"
        except (SecretsError, OSError) as err:
            console.print(f"[yellow]no codec server ({err}); the Web UI shows encrypted payloads[/]", highlight=False)
    try:
        proc = start_server(db, port=port, ui_port=ui_port, ip=ip, codec_endpoint=codec_endpoint)
    except ServerError as err:
        fail(str(err))
    console.print(
        f"Temporal on {ip}:{port}, Web UI http://localhost:{ui_port}, state {db}; Ctrl-C stops", highlight=False
    )
    try:
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(proc)
        if codec:
            codec.shutdown()


def worker(self_update: Annotated[bool, typer.Option(
        "--self-update", help="run the worker as a child and move it to newer orbiter versions the orbs allow"
        " (spec.orbiter) from ORBITER_PACKAGE_INDEX")] = False) -> None:
    """Run a worker against TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE; start several to scale out."""

    setup_logging()

    async def main() -> None:
        client = await connect()
        if self_update:
            console.print(f"self-updating worker connected to {temporal_address()}; Ctrl-C stops", highlight=False)
            await supervise(client)
            return
        console.print(f"worker connected to {temporal_address()}; Ctrl-C stops", highlight=False)
        await run_worker(client, drain=timedelta(seconds=float(os.environ.get("ORBITER_WORKER_DRAIN", "0"))))

    try:
        asyncio.run(main())
    except (ConnectError, SecretsError, MixedVersions, SelfUpdateError, SettingError) as err:
        fail(str(err))
    except KeyboardInterrupt:
        pass


def up(
    repo: RepoOpt,
    branch: BranchOpt = "main",
    repo_key: RepoKeyOpt = None,
    known_hosts: KnownHostsOpt = None,
    db: DbOpt = None,
    ui_port: Annotated[int, typer.Option(help="Web UI port of the server `up` starts")] = 8233,
    receiver: Annotated[str, typer.Option("--receiver", help="HOST:PORT of the push-hook receiver"
                                          " (`orbiter receiver`); 'off' for none")] = DEFAULT_LISTEN,
) -> None:
    """One-command local mode: server (if none answers), a worker in this process, takeoff; Ctrl-C stops.

    A second `orbiter up` resumes where the first stopped: the server keeps its state in --db."""
    host, port = _host_port(temporal_address())
    proc = codec = None
    try:
        master_key = load_master_key()
    except SecretsError as err:
        fail(str(err))
    setup_logging()
    if not answers(host, port):
        try:
            codec = serve_codec(master_key, port=CODEC_PORT,
                                ui_origin=f"http://localhost:{ui_port},http://127.0.0.1:{ui_port}")
        except OSError as err:
            console.print(f"[yellow]no codec server on port {CODEC_PORT} ({err.strerror}); the Web UI shows"
                          " encrypted payloads[/]", highlight=False)
        try:
            proc = start_server(
                db or default_db(),
                port=port,
                ui_port=ui_port,
                ip=host,
                codec_endpoint=f"http://127.0.0.1:{CODEC_PORT}" if codec else None,
            )
        except ServerError as err:
            if codec:
                codec.shutdown()
            fail(str(err))
        console.print(f"started Temporal on {host}:{port} (state {db or default_db()})", highlight=False)
    ref = repo_ref(repo, branch, repo_key, known_hosts)

    async def main() -> None:
        # Ctrl-C and SIGTERM (also as a background job, where a shell ignores SIGINT) end the
        # follow loop; the worker then stops between tasks and the server after it.
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        client = await connect()
        hooks = None
        if receiver != "off":
            try:
                hooks = start_receiver(client, receiver)
            except OSError as err:
                console.print(f"[yellow]no push-hook receiver on {receiver} ({err.strerror}); orbiter polls[/]",
                              highlight=False)
        stop = asyncio.Event()
        worker_task = asyncio.create_task(run_worker(client, stop))
        try:
            wid = await _until_ready(lambda: start_gitops(client, ref))
            console.print(f"watching {ref.url} ({branch}); Web UI http://localhost:{ui_port} ; Ctrl-C stops",
                          highlight=False)
            follow = asyncio.create_task(_follow(client, wid))
            await stopping.wait()
            follow.cancel()
            console.print("stopping")
        finally:
            stop.set()
            await worker_task
            if hooks is not None:
                await asyncio.to_thread(hooks.shutdown)

    try:
        asyncio.run(main())
    except (ConnectError, SecretsError, MixedVersions, SettingError) as err:
        fail(str(err))
    finally:
        if proc:
            stop_server(proc)
        if codec:
            codec.shutdown()


async def _until_ready(call, timeout: float = 30.0):
    """A server that just started accepts connections before its shards are up; retry briefly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await call()
        except RPCError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _follow(client: Client, wid: str) -> None:
    """Print each change of phase or step, so long work shows progress."""
    from orbiter.workflows.gitops import GitOpsWorkflow

    seen: dict[str, tuple] = {}
    handle = client.get_workflow_handle(wid)
    while True:
        with contextlib.suppress(Exception):
            orb = await handle.query(GitOpsWorkflow.status)
            progress = await live_progress(client, orb)
            if orb.rejected and seen.get("!rejected") != (orb.rejected.commit,):
                seen["!rejected"] = (orb.rejected.commit,)
                console.print(f"[red]rejected[/] {orb.rejected.message}", highlight=False)
            for name, c in orb.clusters.items():
                key = (c.phase, step_line(c, progress.get(name)), sum(n.ready for n in c.nodes))
                if seen.get(name) != key:
                    seen[name] = key
                    console.print(f"{name}: {c.phase} {key[2]}/{len(c.nodes)} ready {key[1]}".rstrip(),
                                  highlight=False)
        await asyncio.sleep(1)


__all__ = ["print_status", "server", "up", "worker"]
