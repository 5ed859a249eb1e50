"""Push hooks from git servers: a push pokes the orb of that repository at once, instead of at its
next poll.

`POST /hooks/<orb>` with GitHub's (`X-Hub-Signature-256`), Gitea's (`X-Gitea-Signature`) or
GitLab's (`X-Gitlab-Token`) proof, checked against the orb's `receiver.secret` (an encrypted
secret in its repository). A hook that proves nothing gets 401 and pokes nothing; a body over
MAX_BODY gets 413 unread. The body is never trusted beyond its branch: the poke makes orbiter
read git itself.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Coroutine
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from temporalio.client import Client

from orbiter.activities.secretstore import resolve_secret
from orbiter.models.gitops import OrbInfo, PokeInput
from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import SecretsError

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
T = TypeVar("T")


def verify(headers: Any, body: bytes, secret: bytes) -> bool:
    """Whether a hook carries a valid proof in any of the three styles (constant-time compares)."""
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    github = headers.get("X-Hub-Signature-256")
    if github is not None:
        return hmac.compare_digest(github.strip(), f"sha256={expected}")
    gitea = headers.get("X-Gitea-Signature") or headers.get("X-Gogs-Signature")
    if gitea is not None:
        return hmac.compare_digest(gitea.strip(), expected)
    gitlab = headers.get("X-Gitlab-Token")
    if gitlab is not None:
        return hmac.compare_digest(gitlab.encode(), secret)
    return False


def pushed_branch(body: bytes) -> str | None:
    """The branch a push event names ("refs/heads/main" in all three), None if it names none."""
    try:
        ref = json.loads(body).get("ref")
    except (ValueError, AttributeError):
        return None
    return ref.removeprefix("refs/heads/") if isinstance(ref, str) and ref.startswith("refs/heads/") else None


class HookReceiver(ThreadingHTTPServer):
    """Request threads ask Temporal through the event loop the client lives on."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], client: Client, loop: asyncio.AbstractEventLoop) -> None:
        self.client, self.loop = client, loop
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def find(self, orb: str) -> tuple[str, OrbInfo] | None:
        """The running GitOps workflow of `orb`: the one whose desired.yml names it."""
        async for w in self.client.list_workflows("WorkflowType = 'GitOpsWorkflow' AND ExecutionStatus = 'Running'"):
            try:
                info: OrbInfo = await self.client.get_workflow_handle(w.id).query("about", result_type=OrbInfo)
            except Exception:  # noqa: BLE001 - a workflow that cannot answer is not this orb's
                continue
            if info.orb == orb:
                return w.id, info
        return None

    async def poke(self, workflow_id: str) -> None:
        await self.client.get_workflow_handle(workflow_id).signal("poke", PokeInput(reason="push hook"))


class _Handler(BaseHTTPRequestHandler):
    server: HookReceiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("receiver: " + format, *args)

    def _answer(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"message": message}).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status >= 400:
            self.send_header("Connection", "close")  # an unread body must not be taken for the next request
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/healthz":
            self._answer(HTTPStatus.OK, "ok")
        else:
            self._answer(HTTPStatus.NOT_FOUND, "POST push hooks to /hooks/<orb>")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if len(parts) != 2 or parts[0] != "hooks" or not parts[1]:
            self._answer(HTTPStatus.NOT_FOUND, "POST push hooks to /hooks/<orb>")
            return
        orb = parts[1]
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._answer(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return
        if length > MAX_BODY:
            self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY} bytes")
            return
        body = self.rfile.read(length)
        found = self.server.call(self.server.find(orb))
        if found is None:
            self._answer(HTTPStatus.NOT_FOUND, f"no watched repository holds orb {orb}")
            return
        workflow_id, info = found
        if info.receiver_secret is None or info.commit is None:
            self._answer(HTTPStatus.FORBIDDEN, f"orb {orb} takes no push hooks: set spec.receiver.secret")
            return
        try:
            secret = resolve_secret(SecretsRef(repo=info.repo, commit=info.commit), info.receiver_secret).strip()
        except SecretsError as err:
            log.warning("receiver: orb %s: %s", orb, err)
            self._answer(HTTPStatus.FORBIDDEN, f"orb {orb}: its receiver secret cannot be read")
            return
        if not verify(self.headers, body, secret):
            log.warning("receiver: a hook for orb %s with a bad or missing signature was refused", orb)
            self._answer(HTTPStatus.UNAUTHORIZED, "signature does not match")
            return
        branch = pushed_branch(body)
        if branch is not None and branch != info.repo.branch:
            self._answer(HTTPStatus.OK, f"push to {branch} ignored: orb {orb} follows {info.repo.branch}")
            return
        self.server.call(self.server.poke(workflow_id))
        self._answer(HTTPStatus.ACCEPTED, f"poked {workflow_id}")


def serve_hooks(client: Client, loop: asyncio.AbstractEventLoop, host: str, port: int) -> HookReceiver:
    """Listen in a background thread; `shutdown()` stops it."""
    server = HookReceiver((host, port), client, loop)
    threading.Thread(target=server.serve_forever, name="orbiter-receiver", daemon=True).start()
    return server
