"""The `orbiter` command: help everywhere, init and plan on a checkout, the GitOps controls
against a real Temporal server, and one-line errors (no traceback) when something is missing."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from orbiter.activities.repo import normalize_url
from orbiter.cli.app import app
from orbiter.models.current import ClusterStatus, NodeStatus, OrbStatus
from orbiter.models.ids import gitops_workflow_id
from orbiter.models.load import load_desired

from ..conftest import GitRepo, free_port
from .test_gitops import current, wait_for

ORBITER = str(Path(sys.executable).parent / "orbiter")
WIDE = {"COLUMNS": "250"}


def invoke(*args: str, **kwargs):
    env = {**WIDE, **kwargs.pop("env", {})}
    return CliRunner().invoke(app, list(args), env=env, prog_name="orbiter", **kwargs)


async def ainvoke(*args: str, **kwargs):
    """CliRunner runs asyncio.run, which needs a thread without a running loop."""
    return await asyncio.to_thread(invoke, *args, **kwargs)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORBITER, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **WIDE, **(env or {})},
    )


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


# --help on every command ---------------------------------------------------------------------


def _commands(command=None, path=()):
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, path + (name,))


COMMANDS = dict(_commands())


@pytest.mark.parametrize("path", list(COMMANDS), ids=lambda p: " ".join(p) or "orbiter")
def test_help_answers_and_names_every_option(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: orbiter" in result.stdout
    command = COMMANDS[path]
    for param in command.params:
        if param.param_type_name == "option":
            assert any(opt in result.stdout for opt in param.opts), (param.opts, result.stdout)
    for name in getattr(command, "commands", {}):
        assert name in result.stdout


def test_every_issue_command_exists():
    names = {" ".join(p) for p in COMMANDS}
    assert {
        "server",
        "worker",
        "up",
        "takeoff",
        "poke",
        "status",
        "pause",
        "resume",
        "retry",
        "init",
        "plan",
        "codec-server",
        "secret add",
        "secret read",
        "secret list",
        "secret rm",
        "secret rotate-master",
    } <= names


def test_read_commands_offer_json():
    for path in [("status",), ("plan",), ("secret", "list")]:
        opts = {o for p in COMMANDS[path].params for o in getattr(p, "opts", [])}
        assert "-o" in opts or "--output" in opts, path


# init and plan ------------------------------------------------------------------------------


def test_init_creates_a_repo_with_a_loading_desired_yml(tmp_path):
    target = tmp_path / "Shop_Orb"
    result = invoke("init", str(target))
    assert result.exit_code == 0, result.output
    # Named after its directory, so two repositories made with init are two orbs.
    assert load_desired((target / "desired.yml").read_text()).metadata.name == "shop-orb"
    named = invoke("init", "--name", "lab2", str(tmp_path / "other"))
    assert named.exit_code == 0
    assert load_desired((tmp_path / "other" / "desired.yml").read_text()).metadata.name == "lab2"
    assert invoke("init", "--name", "Bad Name", str(tmp_path / "third")).exit_code == 1
    note = (target / "SECRETS.md").read_text()
    assert "orbiter secret add" in note and "masterkey" in note
    assert (target / ".git").is_dir()
    # The new repo plans its cluster's bootstrap.
    plan = invoke("plan", "--repo-dir", str(target), "-o", "json")
    steps = json.loads(plan.stdout)["clusters"][0]["steps"]
    assert plan.exit_code == 2
    assert [s["name"] for s in steps] == ["packages", "bootstrap 3 members", "members", "observe"]
    assert steps[1]["machines"] == ["shop-orb-meta-etcd-0", "shop-orb-meta-etcd-1", "shop-orb-meta-etcd-2"]


def test_init_refuses_an_existing_desired_yml(tmp_path):
    (tmp_path / "desired.yml").write_text("mine\n")
    result = run("init", str(tmp_path))
    assert result.returncode == 1
    assert "exists already" in one_error_line(result.stderr)
    assert (tmp_path / "desired.yml").read_text() == "mine\n"


DESIRED = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: lab
spec:
  providers:
    dc1:
      kind: static
      pools:
        db:
          - {id: m1, ip: 192.0.2.11}
          - {id: m2, ip: 192.0.2.12}
          - {id: m3, ip: 192.0.2.13}
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"
      members: {provider: dc1, pool: db, nodes: 3}
"""


def matching_current(nodes: int = 3, version: str = "3.4.23") -> str:
    machines = [("m1", "192.0.2.11"), ("m2", "192.0.2.12"), ("m3", "192.0.2.13")][:nodes]
    status = OrbStatus(
        orb="lab",
        commit="a" * 40,
        clusters={
            "meta": ClusterStatus(
                kind="etcd",
                phase="Ready",
                commit="a" * 40,
                nodes=[
                    NodeStatus(
                        machine=m,
                        ip=ip,
                        role="member",
                        version=version,
                        ready=True,
                        joined=True,
                        pool="db",
                        provider="dc1",
                    )
                    for m, ip in machines
                ],
            )
        },
    )
    return status.to_yaml()


def steps(stdout: str) -> list[tuple[str, bool]]:
    return [(s["name"], s["changes"]) for c in json.loads(stdout)["clusters"] for s in c["steps"]]


def test_plan_exits_0_when_current_matches(tmp_path):
    (tmp_path / "desired.yml").write_text(DESIRED)
    (tmp_path / "current.yml").write_text(matching_current())
    result = run("plan", "--repo-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "nothing to change" in result.stdout
    # The checks a no-op reconcile still makes, none of them a change.
    assert steps(invoke("plan", "--repo-dir", str(tmp_path), "-o", "json").stdout) == [
        ("packages", False), ("members", False), ("observe", False)]


def test_plan_exits_2_and_lists_the_steps_when_something_would_change(tmp_path):
    (tmp_path / "desired.yml").write_text(DESIRED.replace('"3.4.23"', '"3.4.24"'))
    (tmp_path / "current.yml").write_text(matching_current(nodes=1))
    result = run("plan", "--repo-dir", str(tmp_path), "-o", "json")
    assert result.returncode == 2, result.stderr
    assert steps(result.stdout) == [
        ("packages", False), ("add member m2", True), ("add member m3", True), ("roll m1", True),
        ("members", False), ("observe", False)]
    table = run("plan", "--repo-dir", str(tmp_path))
    assert table.returncode == 2 and "add member m3" in table.stdout and "roll m1" in table.stdout


def test_plan_without_current_yml_bootstraps(tmp_path):
    (tmp_path / "desired.yml").write_text(DESIRED)
    result = invoke("plan", "--repo-dir", str(tmp_path), "-o", "json")
    assert result.exit_code == 2
    plan = json.loads(result.stdout)["clusters"][0]
    assert plan["steps"][1] == {
        "step": "bootstrap", "name": "bootstrap 3 members", "changes": True, "machines": ["m1", "m2", "m3"],
        "group": None, "version": None, "gate": None, "disruptive": False,
        "description": "machines m1, m2, m3, certificates, every member started at once (state new), health gate",
    }


def test_plan_errors_are_one_line(tmp_path):
    missing = run("plan", "--repo-dir", str(tmp_path))
    assert missing.returncode == 1 and "desired.yml does not exist" in one_error_line(
        missing.stderr
    )
    (tmp_path / "desired.yml").write_text(DESIRED)
    (tmp_path / "current.yml").write_text("clusters: [1, 2]\n")
    broken = run("plan", "--repo-dir", str(tmp_path))
    assert broken.returncode == 1
    assert "current.yml is not a valid current.yml" in one_error_line(broken.stderr)


# Errors without a server or a key ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("poke", "--repo", "/nowhere"),
        ("pause", "x/meta"),
        ("takeoff", "--repo", "/nowhere"),
    ],
    ids=lambda a: a[0],
)
def test_temporal_down_is_one_line_naming_the_address(args):
    address = f"127.0.0.1:{free_port()}"
    result = run(*args, env={"TEMPORAL_ADDRESS": address})
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert f"cannot reach Temporal at {address}" in line


@pytest.fixture
def busy_port():
    """A port something other than Temporal listens on (a plain TCP server that never answers gRPC)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_a_port_taken_by_another_program_is_one_line_naming_it(busy_port):
    result = run("status", env={"TEMPORAL_ADDRESS": f"127.0.0.1:{busy_port}"})
    assert result.returncode == 1
    assert f"127.0.0.1:{busy_port} answers, but not as a Temporal server" in one_error_line(result.stderr)


def test_a_web_ui_port_in_use_is_one_line_before_anything_starts(busy_port, tmp_path):
    result = run("server", "--db", str(tmp_path / "t.db"), "--port", str(free_port()), "--ui-port", str(busy_port),
                 "--no-codec")
    assert result.returncode == 1
    assert one_error_line(result.stderr) == (
        f"error: port {busy_port} (the Web UI) is in use: stop what listens there or choose another port with"
        " --ui-port"
    )


def test_missing_master_key_file_is_one_line_naming_the_path(tmp_path):
    path = tmp_path / "no" / "masterkey"
    result = run("status", env={"ORBITER_MASTERKEY_FILE": str(path)})
    assert result.returncode == 1
    assert str(path) in one_error_line(result.stderr)
    result = invoke("status", env={"ORBITER_MASTERKEY_FILE": str(path)})
    assert result.exit_code == 1 and str(path) in result.stderr


# Against the GitOps loop ---------------------------------------------------------------------

STATUS_KEYS = {"orb", "commit", "rejected", "clusters", "orbiter"}
CLUSTER_KEYS = {"name", "kind", "phase", "commit", "error", "step", "progress", "nodes", "desiredCommit", "approval",
                "override", "warnings", "backup", "restore", "updates"}
PAUSED = DESIRED.replace("nodes: 3}", "nodes: 1}\n      paused: true")


def _orb(request) -> str:
    return "c" + hex(abs(hash(request.node.name)))[2:10]


@pytest.mark.slow
async def test_takeoff_status_poke_and_rejected_commit(client, worker, repo: GitRepo, request, tmp_path):
    orb = _orb(request)
    good = repo.push({"desired.yml": PAUSED.replace("name: lab", f"name: {orb}")}, "day one")
    first = await ainvoke("takeoff", "--repo", repo.url)
    assert first.exit_code == 0, first.output
    assert (
        first.stdout.strip().splitlines() == [first.stdout.strip()] and "watching" in first.stdout
    )
    again = await ainvoke("takeoff", "--repo", repo.url)
    assert again.exit_code == 0 and again.stdout.startswith("already watching"), again.output
    await wait_for(lambda: (c := current(repo).clusters.get("meta")) and c.phase == "Paused")

    result = await ainvoke("status", "--repo", repo.url, "-o", "json")
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert set(status) == STATUS_KEYS
    assert status["orb"] == orb and status["commit"] == good and status["rejected"] is None
    assert [set(c) for c in status["clusters"]] == [CLUSTER_KEYS]
    meta = status["clusters"][0]
    assert (meta["name"], meta["phase"], meta["error"]) == ("meta", "Paused", None)
    paused_kind = meta["kind"]
    for node in meta["nodes"]:
        assert set(node) == {"machine", "ip", "role", "version", "ready", "dbSize", "dbSizeInUse", "alarms",
                             "certExpiry"}
    table = await ainvoke("status", "--repo", repo.url)
    assert table.exit_code == 0 and "meta" in table.stdout and "Paused" in table.stdout
    only = await ainvoke("status", "meta", "--repo", repo.url, "-o", "json")
    assert [c["name"] for c in json.loads(only.stdout)["clusters"]] == ["meta"]
    unknown = await ainvoke("status", "nope", "--repo", repo.url)
    assert unknown.exit_code == 1 and "no cluster 'nope'" in unknown.stderr
    # ORB/CLUSTER finds the orb's repository without --repo, however many the server watches.
    (tmp_path / "other").mkdir()
    other = GitRepo(tmp_path / "other")
    other.push({"desired.yml": PAUSED.replace("name: lab", f"name: {orb}x")}, "another orb, another repo")
    assert (await ainvoke("takeoff", "--repo", other.url)).exit_code == 0
    await wait_for(lambda: (c := current(other).clusters.get("meta")) and c.phase == "Paused")
    assert "write ORB/meta" in (await ainvoke("status", "meta")).stderr
    by_orb = await ainvoke("status", f"{orb}/meta", "-o", "json")
    assert by_orb.exit_code == 0, by_orb.output
    assert json.loads(by_orb.stdout)["orb"] == orb and [c["name"] for c in json.loads(by_orb.stdout)["clusters"]] == [
        "meta"]
    history = await ainvoke("history", f"{orb}/meta", "-o", "json")
    assert history.exit_code == 0 and {r["cluster"] for r in json.loads(history.stdout)} <= {"meta"}, history.output
    for wid in (f"cluster/{orb}x/meta", gitops_workflow_id(normalize_url(other.url), "main")):
        await client.get_workflow_handle(wid).terminate("test over")
    # `poke --wait` returns at once for a paused cluster: nothing will be applied; not a success.
    waited = await ainvoke("poke", "--wait", "--repo", repo.url, "--timeout", "60")
    assert waited.exit_code == 1 and "Paused" in waited.stdout, waited.output

    text = PAUSED.replace("name: lab", f"name: {orb}").replace("nodes: 1}", "nodes: 2}")
    bad = repo.push(
        {"desired.yml": text.replace("kind: static", "kind: static\n      colour: blue")}, "bad"
    )
    poked = await ainvoke("poke", "--repo", repo.url)
    assert poked.exit_code == 0 and poked.stdout.startswith("poked"), poked.output
    await wait_for(lambda: current(repo).rejected)
    status = json.loads((await ainvoke("status", "--repo", repo.url, "-o", "json")).stdout)
    assert status["commit"] == good
    assert status["rejected"] == {
        "commit": bad,
        "file": "desired.yml",
        "line": 9,
        "message": "desired.yml:9 providers.dc1.colour: unknown field"
        " (known: kind, remoteUser, bootstrapKeySecret, pools)",
    }
    table = await ainvoke("status", "--repo", repo.url)
    assert f"rejected {bad[:12]}" in table.stdout and "providers.dc1.colour" in table.stdout
    waited = await ainvoke("poke", "--wait", "--repo", repo.url, "--timeout", "60")
    assert waited.exit_code == 1 and f"rejected {bad[:12]}" in waited.stdout, waited.output
    await client.get_workflow_handle(f"cluster/{orb}/meta").terminate()
    assert paused_kind == "etcd"


@pytest.mark.slow
async def test_pause_resume_retry_answer_with_one_line(client, worker, repo: GitRepo, request):
    orb = _orb(request)
    repo.push({"desired.yml": PAUSED.replace("name: lab", f"name: {orb}")}, "day one")
    assert (await ainvoke("takeoff", "--repo", repo.url)).exit_code == 0
    await wait_for(lambda: (c := current(repo).clusters.get("meta")) and c.phase == "Paused")
    target = f"{orb}/meta"

    answers = {}
    for action in ("pause", "retry", "resume"):
        result = await ainvoke(action, target)
        assert result.exit_code == 0, result.output
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{target}: "), result.stdout
        answers[action] = lines[0]
    assert "paused" in answers["pause"] and "(phase Paused)" in answers["pause"]
    assert "nothing to retry: the cluster is Paused" in answers["retry"]
    assert "still paused: desired.yml says paused: true" in answers["resume"]

    # By name alone when only one orb has it; a missing cluster is one line, exit 1.
    missing = await ainvoke("retry", f"{orb}-none")
    assert missing.exit_code == 1 and f"no cluster named '{orb}-none'" in missing.stderr
    gone = await ainvoke("pause", f"{orb}/nope")
    assert gone.exit_code == 1 and f"cannot pause cluster/{orb}/nope" in gone.stderr
    await client.get_workflow_handle(f"cluster/{orb}/meta").terminate()


@pytest.mark.slow
async def test_poke_of_an_unwatched_repo_is_one_line(client, tmp_path):
    result = await ainvoke("poke", "--repo", str(tmp_path / "never.git"))
    assert result.exit_code == 1
    assert (
        "is the repository watched" in result.stderr
        and len(result.stderr.strip().splitlines()) == 1
    )


def test_status_json_shape_is_the_documented_one():
    """The stable interface without a server: what status_json makes of a full current.yml."""
    status = OrbStatus.model_validate(yaml.safe_load(matching_current()))
    data = status.status_json()
    assert set(data) == STATUS_KEYS and [set(c) for c in data["clusters"]] == [CLUSTER_KEYS]
    assert data["clusters"][0]["nodes"][0] == {
        "machine": "m1",
        "ip": "192.0.2.11",
        "role": "member",
        "version": "3.4.23",
        "ready": True,
        "dbSize": None,
        "dbSizeInUse": None,
        "alarms": [],
        "certExpiry": None,
        "upgradable": [],
        "rebootRequired": False,
    }
