"""Notifications and the push-hook receiver on a real Temporal server and real git repositories.

No machines: a rejected commit is an event of the orb itself, and a push hook only pokes the
GitOps workflow, which then reads git on its own.
"""

import asyncio
import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

from orbiter.models.gitops import OrbInfo
from orbiter.models.notify import sign
from orbiter.models.secrets import merge_sealed, seal
from orbiter.worker.receiver import MAX_BODY, serve_hooks
from orbiter.workflows.gitops import GitOpsWorkflow

from ..conftest import MASTER_KEY, GitRepo
from ..support.flows import current, takeoff, wait_for
from ..support.sink import http_sink

ORB = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: {orb}
spec:
  pollInterval: {poll}
  driftInterval: {drift}
  notify:
    - {{kind: webhook, urlSecret: hook_url, events: [Rejected]}}
    - {{kind: slack, urlSecret: slack_url}}
  receiver: {{secret: push_secret}}
  providers: {{}}
  clusters: {{}}
"""
HOOK_KEY = b"webhook signing key"
PUSH_SECRET = b"push hook secret"


def secrets(sink_url: str) -> str:
    values = {"hook_url": f"{sink_url}/orbiter".encode(), "hook_url_key": HOOK_KEY,
              "slack_url": f"{sink_url}/slack".encode(), "push_secret": PUSH_SECRET}
    return merge_sealed(MASTER_KEY, None, {k: seal(MASTER_KEY, k, v) for k, v in values.items()})


def orb(name: str, poll: str = "1h", drift: str = "10m") -> str:
    return ORB.format(orb=name, poll=poll, drift=drift)


async def test_a_rejected_commit_is_told_once_signed_and_after_the_sink_recovers(client, worker, repo: GitRepo):
    with http_sink() as sink:
        sink.answers = {"/orbiter": [500, 503]}  # the webhook's first two attempts fail
        good = repo.push({"desired.yml": orb("notified"), "secrets.yml": secrets(sink.url)}, "start")
        wid = await takeoff(client, _ref(repo))
        handle = client.get_workflow_handle(wid)
        await wait_for(lambda: (current(repo) or None) and current(repo).commit == good, what="current.yml written")
        bad = repo.push({"desired.yml": orb("notified").replace("pollInterval", "pollIntervall")}, "typo")
        await handle.signal(GitOpsWorkflow.poke)
        webhook = await wait_for(lambda: [r for r in sink.delivered() if r.path == "/orbiter"], timeout=60,
                                 what="the webhook delivered after two failures")
        slack = await wait_for(lambda: [r for r in sink.delivered() if r.path == "/slack"], what="slack message")
        await asyncio.sleep(2)  # a duplicate would arrive within the retry interval

    attempts = [r for r in sink.received if r.path == "/orbiter"]
    assert [r.status for r in attempts] == [500, 503, 200]
    assert len({r.headers["X-Orbiter-Delivery"] for r in attempts}) == 1, "retries carry the event's delivery id"
    assert len(sink.delivered()) == 2, [r.path for r in sink.received]  # one webhook, one Slack: no duplicate
    (message,) = webhook
    notice = message.json
    assert notice["event"] == "Rejected" and notice["orb"] == "notified" and notice["commit"] == bad
    assert "pollIntervall" in notice["message"] and good[:12] in notice["message"]
    stamp = message.headers["X-Orbiter-Timestamp"]
    assert message.headers["X-Orbiter-Signature"] == sign(HOOK_KEY, stamp, message.body)
    assert slack[0].json["text"].startswith("*notified* Rejected at " + bad[:12])
    assert "X-Orbiter-Signature" not in slack[0].headers  # Slack's URL is the credential


async def test_a_signed_push_hook_applies_a_commit_long_before_the_poll(client, worker, repo: GitRepo, tmp_path):
    first = repo.push({"desired.yml": orb("hooked"), "secrets.yml": secrets("http://127.0.0.1:9")}, "start")
    wid = await takeoff(client, _ref(repo))
    handle = client.get_workflow_handle(wid)
    await wait_for(lambda: (current(repo) or None) and current(repo).commit == first, what="current.yml written")
    info: OrbInfo = await handle.query(GitOpsWorkflow.about)
    assert info.receiver_secret == "push_secret"

    receiver = serve_hooks(client, asyncio.get_running_loop(), "127.0.0.1", 0)
    try:
        second = repo.push({"desired.yml": orb("hooked", drift="20m")}, "longer drift interval")
        body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
        url = f"{receiver.url}/hooks/hooked"

        bad = await _post(url, body, {"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Event": "push"})
        assert bad == 401
        missing = await _post(url, body, {"X-GitHub-Event": "push"})
        assert missing == 401
        big = await asyncio.to_thread(_announce_body, url, MAX_BODY + 1)
        assert big == 413
        other = await _post(f"{receiver.url}/hooks/nobody", body, _github(body))
        assert other == 404
        other_branch = json.dumps({"ref": "refs/heads/feature"}).encode()
        assert await _post(url, other_branch, _github(other_branch)) == 200
        await asyncio.sleep(1.5)
        assert (await handle.query(GitOpsWorkflow.status)).commit == first, "nothing was poked"

        assert await _post(url, body, _github(body)) == 202
        await wait_for(lambda: _commit(handle, second), timeout=15, what="the pushed commit applied")
        gitlab = await _post(url, body, {"X-Gitlab-Token": PUSH_SECRET.decode(), "X-Gitlab-Event": "Push Hook"})
        gitea = await _post(url, body, {"X-Gitea-Signature": hmac.new(PUSH_SECRET, body, hashlib.sha256).hexdigest()})
        assert (gitlab, gitea) == (202, 202)
    finally:
        receiver.shutdown()
        receiver.server_close()
    await wait_for(lambda: current(repo).commit == second, what="current.yml names the pushed commit")


def _ref(repo: GitRepo):
    from orbiter.models.refs import RepoRef

    return RepoRef(url=repo.url)


async def _commit(handle, commit: str) -> bool:
    return (await handle.query(GitOpsWorkflow.status)).commit == commit


def _github(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(PUSH_SECRET, body, hashlib.sha256).hexdigest(),
            "X-GitHub-Event": "push"}


def _announce_body(url: str, length: int) -> int:
    """A request that announces a body of `length` bytes: the answer comes before it is sent."""
    parsed = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.putrequest("POST", parsed.path)
        conn.putheader("Content-Length", str(length))
        conn.putheader("X-GitHub-Event", "push")
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    def post() -> int:
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers},
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status
        except urllib.error.HTTPError as err:
            return err.code

    return await asyncio.to_thread(post)
