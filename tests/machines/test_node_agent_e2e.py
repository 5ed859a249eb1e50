"""observe -> plan -> apply against a real local machine until the plan is empty, then drift."""

from __future__ import annotations

import pytest

from orbiter.activities.node import SECRET_CURRENT, SECRET_STALE
from orbiter.activities.ssh import SshSession, connect
from orbiter.agent.apply import apply_changes
from orbiter.agent.observe import observe_script, parse_observation
from orbiter.agent.plan import plan, secret_files, sha256
from orbiter.models.machines import Machine
from orbiter.models.nodespec import Change, FileSpec, NodeObserved, NodeSpec, Package, UnitSpec

pytestmark = pytest.mark.machines

CONFIG = "/etc/orbiter-e2e/config"
UNIT = """[Unit]
Description=orbiter e2e test service
[Service]
EnvironmentFile=/etc/orbiter-e2e/config
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""


def secret_value(name: str) -> bytes:
    return b"secret " + name.encode()


def observe(session: SshSession, spec: NodeSpec) -> tuple[NodeObserved, dict[str, str]]:
    """As the observe_node activity does: secret files become current/stale tokens."""
    r = session.run("sh -s", stdin=observe_script(spec).encode(), check=True)
    observed = parse_observation(spec, r.stdout)
    digests: dict[str, str] = {}
    for f in secret_files(spec):
        have = observed.files.get(f.path)
        if have is not None:
            fresh = have == sha256(secret_value(f.content_secret or ""))
            observed.files[f.path] = SECRET_CURRENT if fresh else SECRET_STALE
        digests[f.path] = SECRET_CURRENT
    return observed, digests


def converge(session: SshSession, machine: Machine, spec: NodeSpec) -> list[Change]:
    changes = plan(spec, *observe(session, spec))
    apply_changes(
        session,
        spec,
        changes,
        label=f"machine {machine.id}",
        secret_content=secret_value,
    )
    assert plan(spec, *observe(session, spec)) == [], "not converged after one apply"
    return changes


def main_pid(session: SshSession) -> str:
    return session.run("systemctl show -p MainPID --value orbiter-e2e.service").stdout.strip()


def test_converge_then_undo_drift(
    two_machines: list[Machine], maintenance_key: tuple[str, str]
) -> None:
    machine = two_machines[1]
    with connect(machine, maintenance_key[0]) as s:
        bash = s.run("dpkg-query -W -f='${Version}' bash", check=True).stdout
        hostname = s.run("uname -n", check=True).stdout.strip()
        spec = NodeSpec(
            hostname=hostname,
            packages=[Package(name="bash", version=bash, hold=True)],
            files=[
                FileSpec(path=CONFIG, content="A=1\n", mode="0640"),
                FileSpec(
                    path="/etc/orbiter-e2e/token", content="", mode="0600", content_secret="token"
                ),
            ],
            units=[UnitSpec(name="orbiter-e2e.service", content=UNIT, restart_on=[CONFIG])],
        )
        try:
            first = converge(s, machine, spec)
            kinds = {(c.kind, c.detail) for c in first}
            assert ("unit", "start") in kinds and ("package", "hold") in kinds
            assert s.run("cat /etc/orbiter-e2e/token").stdout == "secret token"
            pid = main_pid(s)
            assert pid not in ("", "0")

            # Drift by hand: the next round rewrites the file and restarts the unit.
            s.run(f"echo A=2 > {CONFIG}; chmod 0644 {CONFIG}", check=True)
            again = converge(s, machine, spec)
            assert [(c.kind, c.target) for c in again] == [
                ("file", CONFIG),
                ("restart", "orbiter-e2e.service"),
            ]
            assert main_pid(s) not in ("", "0", pid)

            # A new spec: stop and disable the unit, unhold the package.
            spec.units[0] = spec.units[0].model_copy(update={"enabled": False, "active": False})
            spec.packages[0] = spec.packages[0].model_copy(update={"hold": False})
            changes = converge(s, machine, spec)
            assert {(c.kind, c.detail) for c in changes} >= {
                ("unit", "stop"),
                ("unit", "disable"),
                ("package", "unhold"),
            }
        finally:
            s.run(
                "systemctl disable --now orbiter-e2e.service; apt-mark unhold bash;"
                " rm -rf /etc/orbiter-e2e /etc/systemd/system/orbiter-e2e.service;"
                " systemctl daemon-reload"
            )
