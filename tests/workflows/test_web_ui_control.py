"""The Temporal Web UI as an operator's console for a real ClusterWorkflow: its current details say
the phase, the step and what it waits for (decrypted through orbiter's codec server), a query on
OrbiterPhase lists the clusters awaiting approval, and from "More Actions -> Send a Signal" an
operator retries a Blocked cluster and approves an awaiting plan.

Runs orbiter's own server (Temporal with its UI and the codec server), a worker, a watched repo and
Debian's chromium via playwright. No machines: the cluster is Blocked by a missing bootstrap key,
and what awaits approval is its destroy.
"""

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from playwright.async_api import Browser, Page
    from temporalio.client import Client

    from orbiter.models.refs import RepoRef
    from orbiter.worker.client import connect
    from orbiter.worker.codec_server import serve
    from orbiter.worker.server import start_server, stop_server
    from orbiter.workflows.cluster import ClusterWorkflow

from ..conftest import MASTER_KEY, GitRepo, RunningWorker, free_port
from ..support.flows import current, takeoff, wait_for
from .test_web_ui_codec import browser  # noqa: F401 - the fixture

pytestmark = pytest.mark.browser

DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata: {{name: {orb}}}
spec:
  pollInterval: 1h
  approval: {{for: [destroy]}}
  providers:
    dc1:
      kind: static
      pools: {{db: [{{id: m1, ip: 192.0.2.11}}]}}
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"
      members: {{provider: dc1, pool: db, nodes: 1}}
{extra}"""


@dataclass
class Console:
    client: Client
    ui: str


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    """orbiter's server as `orbiter up` starts it: Temporal, its UI pointed at the codec server."""
    ui_port = free_port()
    codec = serve(MASTER_KEY, port=0, ui_origin=f"http://127.0.0.1:{ui_port}")
    server = None
    try:
        port = free_port()
        server = start_server(tmp_path / "temporal.db", port=port, ui_port=ui_port, log=tmp_path / "server.log",
                              codec_endpoint=codec.url)
        client = await connect(f"127.0.0.1:{port}")
        worker = RunningWorker(client)
        await worker.start()
        try:
            yield Console(client, f"http://127.0.0.1:{ui_port}")
        finally:
            await worker.stop()
    finally:
        if server is not None:
            stop_server(server)
        codec.shutdown()
        codec.server_close()


async def page_with(browser: Browser, url: str, text: str, shot: Path) -> Page:  # noqa: F811
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    await page.goto(url)
    for _ in range(5):  # a loaded machine: the UI may render nothing or its error page; reload as a user would
        with contextlib.suppress(AssertionError):
            await expect_text(page, text, shot, tries=30)
            return page
        await page.reload()
    await expect_text(page, text, shot)
    return page


async def shown(page: Page) -> str:
    """The text of the page and its frames (the UI renders markdown details in a sandboxed frame)."""
    texts = []
    for frame in page.frames:
        with contextlib.suppress(Exception):  # a frame that navigates away meanwhile
            texts.append(await frame.evaluate("document.body ? document.body.innerText : ''"))
    return "\n".join(texts)


async def expect_text(page: Page, text: str, shot: Path, tries: int = 60) -> None:
    for _ in range(tries):
        if text in await shown(page):
            return
        await page.wait_for_timeout(500)
    await page.screenshot(path=str(shot), full_page=True)
    raise AssertionError(f"{text!r} not shown (screenshot {shot}): {(await shown(page))[-1500:]}")


async def open_details(page: Page, text: str, shot: Path, reload: bool = False) -> None:
    """User Metadata -> the workflow's current details, until they show `text`. On a loaded
    machine the UI may render the page without its panels for a while: reload, as a user would."""
    for attempt in range(4):
        if reload or attempt:
            await page.reload()
        with contextlib.suppress(Exception):  # the panel not there yet, or the text not in it
            await page.get_by_text("User Metadata").first.click(timeout=20_000)
            await expect_text(page, text, shot, tries=30)
            return
    await page.reload()
    await page.get_by_text("User Metadata").first.click()
    await expect_text(page, text, shot)


async def send_signal(page: Page, name: str, data: dict | None, shot: Path) -> None:
    """More Actions -> Send a Signal -> pick the signal, type its JSON input, Submit."""
    await page.get_by_role("button", name="More Actions").first.click()
    await page.locator("[data-testid=signal-button]:visible").click()
    try:
        await page.locator("[data-testid=signal-select-button]:visible").click()
        await page.locator("[role=option]:visible", has_text=name).first.click()
        if data is not None:
            await page.locator("[aria-label=Data][contenteditable=true]:visible").click()
            await page.keyboard.insert_text(json.dumps(data))
        await page.locator("[data-testid=confirm-modal-button]:visible").click()
    except Exception:
        await page.screenshot(path=str(shot), full_page=True)
        raise


async def records(handle) -> list[tuple[str, str | None]]:
    status = await handle.query(ClusterWorkflow.status)
    return [(r.commit, r.result) for r in status.history]


async def test_retry_and_approval_from_the_web_ui(console: Console, browser: Browser,  # noqa: F811
                                                  repo: GitRepo, tmp_path: Path) -> None:
    orb = "ui" + uuid.uuid4().hex[:6]
    wid = f"cluster/{orb}/meta"
    first = repo.push({"desired.yml": DESIRED.format(orb=orb, extra="")}, "one member")
    gitops = await takeoff(console.client, RepoRef(url=repo.url))
    handle = console.client.get_workflow_handle(wid)
    try:
        await wait_for(lambda: (c := current(repo)) and c.clusters.get("meta") and
                       c.clusters["meta"].phase == "Blocked", timeout=60, what="Blocked")

        # Its current details say why, and how to retry.
        url = f"{console.ui}/namespaces/default/workflows/{quote(wid, safe='')}"
        page = await page_with(browser, url, wid, tmp_path / "workflow.png")
        await open_details(page, "To retry:", tmp_path / "details.png")
        text = await shown(page)
        assert f"meta: Blocked at commit {first[:12]}" in text and "dc1_bootstrapkey" in text

        # Retry from the browser: the reconcile runs again (and is Blocked again: the key is still missing).
        assert await records(handle) == [(first, "Blocked")]
        await send_signal(page, "retry", None, tmp_path / "retry.png")
        await wait_for(lambda: _len(records(handle), 2), timeout=30, what="a second reconcile")
        assert await records(handle) == [(first, "Blocked"), (first, "Blocked")]

        # Destroying it asks for approval; the UI lists it by OrbiterPhase and shows the plan.
        gone = repo.push({"desired.yml": DESIRED.format(orb=orb, extra="      destroyed: true\n")}, "destroy")
        await console.client.get_workflow_handle(gitops).signal("poke")
        awaiting = await wait_for(lambda: _awaiting(handle), timeout=60, what="AwaitingApproval")
        query = quote('OrbiterPhase="AwaitingApproval"')
        listed = await page_with(browser, f"{console.ui}/namespaces/default/workflows?query={query}", wid,
                                 tmp_path / "list.png")
        await listed.close()
        await open_details(page, f"approval of plan {awaiting}", tmp_path / "awaiting.png", reload=True)

        await send_signal(page, "approve", {"plan": awaiting, "by": "ui-operator"}, tmp_path / "approve.png")
        done = await wait_for(lambda: (c := current(repo)) and c.clusters["meta"].phase == "Destroyed" and
                              c.clusters["meta"], timeout=60, what="Destroyed")
        # (orbiter's own write-back may have landed on top of the push: the same desired.yml)
        assert repo.remote_file("desired.yml", done.commit) == repo.remote_file("desired.yml", gone)
        assert (done.approval.state, done.approval.by) == ("approved", "ui-operator")
    finally:
        for w in (wid, gitops):
            with contextlib.suppress(Exception):  # already ended
                await console.client.get_workflow_handle(w).terminate("test over")


async def _len(coro, n: int) -> bool:
    return len(await coro) >= n


async def _awaiting(handle) -> str | None:
    status = await handle.query(ClusterWorkflow.status)
    if status.phase == "AwaitingApproval" and status.approval is not None:
        return status.approval.plan
    return None

