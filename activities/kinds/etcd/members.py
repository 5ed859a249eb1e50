"""etcd membership read and changed with etcdctl, over SSH on a member machine.

etcdctl runs on a member (it holds the member certificate and reaches every endpoint), so the
worker needs no route to the cluster's client port. Errors are one line naming the cluster and
machine; their type drives retries: Unreachable, SshError, EtcdctlError and EtcdUnhealthy are
retried, AuthFailed, HostKeyChanged, SecretsError, QuorumRefused and UnstartedMember need an
operator or a different plan.
"""

from __future__ import annotations

import json
import shlex
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.activities.progress import heartbeat, heartbeating
from orbiter.activities.remote import Remote
from orbiter.models.errors import one_line
from orbiter.models.kinds.etcd.messages import (
    PKI_DIR,
    EtcdMemberInfo,
    EtcdStatusInput,
    EtcdStatusResult,
    EtcdTarget,
    MemberAddInput,
    MemberAddResult,
    MemberRemoveInput,
    WaitListeningInput,
    WaitListeningResult,
)

POLL_SECONDS = 0.5
ETCDCTL_TIMEOUT = 60.0
_MARK = "@@orbiter-etcd "
RECONFIG_WAIT = 30.0
UNHEALTHY = "etcdserver: unhealthy cluster"
_ALARMS = {1: "NOSPACE", 2: "CORRUPT", "NOSPACE": "NOSPACE", "CORRUPT": "CORRUPT"}


def _etcdctl_error(stdout: str, stderr: str) -> str:
    """etcdctl's own `Error:` line, not the client's JSON retry logs above it."""
    errors = [line.strip() for line in stderr.splitlines() if line.startswith("Error:")]
    return one_line(errors[-1] if errors else stderr)


class _Etcdctl:
    """etcdctl on the first member machine that answers; keeps that session across calls."""

    def __init__(self, target: EtcdTarget) -> None:
        self.target = target
        self.remote = Remote(f"etcd cluster {target.cluster}", target.via, target.secrets, detail=_etcdctl_error)

    def where(self) -> str:
        return self.remote.where()

    def command(self, args: str) -> str:
        """The etcdctl command line (shell text) for `args`, with TLS flags when the cluster uses them."""
        parts = [
            "ETCDCTL_API=3",
            "etcdctl",
            "--endpoints=" + shlex.quote(",".join(self.target.endpoints)),
            "--dial-timeout=3s",
            "--command-timeout=10s",
            "-w",
            "json",
        ]
        if self.target.tls:
            parts += [f"--cacert={PKI_DIR}/ca.crt", f"--cert={PKI_DIR}/member.crt", f"--key={PKI_DIR}/member.key"]
        return " ".join(parts) + " " + args

    def run(self, script: str, ok_stderr: str | None = None) -> str:
        """Run a shell script on a member machine. A failure whose stderr holds `ok_stderr` counts
        as success (an idempotent step already done)."""
        ok = (lambda _status, _out, err: ok_stderr in err) if ok_stderr else None
        return self.remote.run(script, "etcdctl", "EtcdctlError", timeout=ETCDCTL_TIMEOUT, ok=ok)

    def json(self, args: str) -> Any:
        out = self.run(self.command(args))
        try:
            return json.loads(out)
        except ValueError:
            raise ApplicationError(f"{self.where()}: etcdctl {args.split()[0]} printed no JSON",
                                   type="EtcdctlError") from None


@contextmanager
def _etcdctl(target: EtcdTarget) -> Iterator[_Etcdctl]:
    ctl = _Etcdctl(target)
    try:
        yield ctl
    finally:
        ctl.remote.close()


def _hex(member_id: int | str) -> str:
    return f"{int(member_id):x}"


def _members(data: Any) -> list[EtcdMemberInfo]:
    return [
        EtcdMemberInfo(
            id=_hex(m["ID"]),
            name=m.get("name", ""),
            peer_urls=m.get("peerURLs") or [],
            client_urls=m.get("clientURLs") or [],
            started=bool(m.get("name")),
            learner=bool(m.get("isLearner")),
        )
        for m in (data or {}).get("members") or []
    ]


def _sections(stdout: str) -> dict[str, tuple[int, str]]:
    """Split the status script's output into {section: (exit status, text)}."""
    out: dict[str, tuple[int, str]] = {}
    name, lines = None, []
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            words = line[len(_MARK) :].split()
            if words[0] == "end" and name is not None:
                out[name] = (int(words[1]), "\n".join(lines))
                name = None
            else:
                name, lines = words[0], []
        elif name is not None:
            lines.append(line)
    return out


def _json_or_none(text: str) -> Any:
    """etcdctl prints JSON on its first line of stdout; partial failures go to stderr."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("{", "[")):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _observe(ctl: _Etcdctl) -> tuple[EtcdStatusResult, str]:
    """Members, per endpoint status and health in one round trip; also why it is not healthy."""
    script = ["set +e"]
    for section, args in (("members", "member list"), ("status", "endpoint status"), ("health", "endpoint health"),
                          ("alarms", "alarm list")):
        script += [f"echo '{_MARK}{section}'", ctl.command(args) + " 2>/dev/null", f"echo '{_MARK}end' $?"]
    sections = _sections(ctl.run("\n".join(script)))
    status, members_text = sections.get("members", (1, ""))
    data = _json_or_none(members_text)
    if status != 0 or data is None:
        return EtcdStatusResult(members=[], healthy=False), "member list failed (no quorum or no endpoint answers)"
    members = _members(data)
    by_id = {m.id: m for m in members}
    endpoint_member: dict[str, EtcdMemberInfo] = {}
    for m in members:
        for url in m.client_urls:
            endpoint_member[url] = m
    for entry in _json_or_none(sections.get("status", (1, ""))[1]) or []:
        st = entry.get("Status") or {}
        mid = _hex((st.get("header") or {}).get("member_id", 0))
        m = by_id.get(mid)
        if m is None:
            continue
        endpoint_member[entry.get("Endpoint", "")] = m
        m.leader = _hex(st.get("leader", 0)) == mid
        m.db_size = st.get("dbSize")
        m.db_size_in_use = st.get("dbSizeInUse")
        m.version = st.get("version")
    for alarm in (_json_or_none(sections.get("alarms", (1, ""))[1]) or {}).get("alarms") or []:
        m = by_id.get(_hex(alarm.get("memberID", 0)))
        name = _ALARMS.get(alarm.get("alarm"), str(alarm.get("alarm")))
        if m is not None and name not in m.alarms:
            m.alarms.append(name)
    health = {
        h.get("endpoint", ""): bool(h.get("health")) for h in _json_or_none(sections.get("health", (1, ""))[1]) or []
    }
    for endpoint in ctl.target.endpoints:
        m = endpoint_member.get(endpoint)
        if m is not None:
            ok = health.get(endpoint, False)
            m.healthy = ok if m.healthy is None else (m.healthy and ok)
    for m in members:
        if not m.started:
            m.healthy = False
    bad_endpoints = [e for e in ctl.target.endpoints if not health.get(e, False)]
    bad_members = [m.name or f"{m.id} (not started)" for m in members if m.healthy is False]
    healthy = not bad_endpoints and not bad_members
    why = "; ".join(
        part
        for part in (
            ("unhealthy members: " + ", ".join(bad_members)) if bad_members else "",
            ("unhealthy endpoints: " + ", ".join(bad_endpoints)) if bad_endpoints else "",
        )
        if part
    )
    return EtcdStatusResult(members=members, healthy=healthy), why


@activity.defn
def etcd_wait_listening(input: WaitListeningInput) -> WaitListeningResult:
    """Until a member's peer port accepts connections, at most `timeout_seconds`. Only an ordering
    hint for a bootstrap (a firewall between worker and member just costs the wait): never fails."""
    start = time.monotonic()
    while True:
        try:
            with socket.create_connection((input.ip, input.port), timeout=0.5):
                return WaitListeningResult(listening=True, waited_seconds=round(time.monotonic() - start, 3))
        except OSError:
            pass
        if time.monotonic() - start >= input.timeout_seconds:
            return WaitListeningResult(listening=False, waited_seconds=round(time.monotonic() - start, 3))
        time.sleep(0.02)


@activity.defn
def etcd_status(input: EtcdStatusInput) -> EtcdStatusResult:
    """The cluster as etcd sees it; with wait_healthy, poll until healthy at the expected size."""
    target = input.target
    deadline = time.monotonic() + input.timeout_seconds
    # Heartbeats from a side thread: one observation may wait on dial and command timeouts of
    # members that are down (seconds each), longer than a heartbeat timeout.
    with _etcdctl(target) as ctl, heartbeating("etcd status") as progress:
        while True:
            result, why = _observe(ctl)
            count_ok = input.expect_members is None or len(result.members) == input.expect_members
            if not input.wait_healthy or (result.healthy and count_ok):
                return result
            if not count_ok:
                why = f"{len(result.members)} members, want {input.expect_members}" + (f"; {why}" if why else "")
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"{ctl.where()}: not healthy after {input.timeout_seconds:g}s: {why}", type="EtcdUnhealthy"
                )
            progress(why or "waiting")
            time.sleep(POLL_SECONDS)


def _find(members: list[EtcdMemberInfo], name: str, peer_url: str) -> EtcdMemberInfo | None:
    for m in members:
        if peer_url in m.peer_urls or (name and m.name == name):
            return m
    return None


def initial_cluster(members: list[EtcdMemberInfo], new_name: str, new_peer_url: str) -> str:
    """The `initial-cluster` a joining member starts with: every member, the new one by its name."""
    parts = []
    for m in members:
        name = new_name if new_peer_url in m.peer_urls else m.name
        parts += [f"{name}={url}" for url in m.peer_urls]
    return ",".join(parts)


def _reconfigure(ctl: _Etcdctl, step: Callable[[list[EtcdMemberInfo]], bool], what: str) -> list[EtcdMemberInfo]:
    """List the members and let `step` act on them until it reports done.

    etcd refuses a membership change while any member has been connected for less than 5 s
    ("unhealthy cluster"), which is normal right after a start: wait that out here, with a fresh
    member list each round so a change that did land is never made twice."""
    deadline = time.monotonic() + RECONFIG_WAIT
    while True:
        members = _members(ctl.json("member list"))
        try:
            if step(members):
                return members
        except ApplicationError as err:
            if UNHEALTHY not in str(err):
                raise
            if time.monotonic() >= deadline:
                raise ApplicationError(
                    f"{ctl.where()}: etcd refused {what} for {RECONFIG_WAIT:g}s: {UNHEALTHY}", type="EtcdUnhealthy"
                ) from None
        heartbeat(f"waiting to {what}")
        time.sleep(1.0)


def _unstarted_error(ctl: _Etcdctl, m: EtcdMemberInfo, what: str) -> ApplicationError:
    return ApplicationError(
        f"{ctl.where()}: member {m.id} ({','.join(m.peer_urls)}) was added but never started: start or remove it"
        f" {what}",
        type="UnstartedMember",
        non_retryable=True,
    )


@activity.defn
def etcd_member_add(input: MemberAddInput) -> MemberAddResult:
    """Add a member unless its peer URL is already in the list (a retry after a crash adds nothing)."""
    q = shlex.quote

    def step(members: list[EtcdMemberInfo]) -> bool:
        if _find(members, "", input.peer_url) is not None:
            return True
        if (m := _find(members, input.name, "")) is not None:
            raise ApplicationError(
                f"{ctl.where()}: member {input.name} exists with peer URLs {','.join(m.peer_urls)},"
                f" not {input.peer_url}: remove it first",
                type="MemberConflict",
                non_retryable=True,
            )
        if others := [m for m in members if not m.started]:
            raise _unstarted_error(ctl, others[0], "before adding another")
        heartbeat(f"adding {input.name}")
        learner = " --learner" if input.learner else ""
        ctl.run(ctl.command(f"member add {q(input.name)} --peer-urls={q(input.peer_url)}{learner}"))
        return False  # the next round lists the members with the new one

    with _etcdctl(input.target) as ctl:
        members = _reconfigure(ctl, step, f"add {input.name}")
        if unnamed := [m for m in members if not m.name and input.peer_url not in m.peer_urls]:
            raise _unstarted_error(ctl, unnamed[0], "first")
        return MemberAddResult(initial_cluster=initial_cluster(members, input.name, input.peer_url))


@activity.defn
def etcd_member_remove(input: MemberRemoveInput) -> None:
    """Remove a member found by name or peer URL; absent is done. Never the last member."""

    def step(members: list[EtcdMemberInfo]) -> bool:
        member = _find(members, input.name, input.peer_url)
        if member is None:
            return True
        if len(members) <= 1:
            raise ApplicationError(
                f"{ctl.where()}: refusing to remove {input.name}, the last member",
                type="QuorumRefused",
                non_retryable=True,
            )
        heartbeat(f"removing {input.name}")
        ctl.run(ctl.command(f"member remove {member.id}"), ok_stderr="member not found")
        return False

    with _etcdctl(input.target) as ctl:
        _reconfigure(ctl, step, f"remove {input.name}")
