"""The strict desired.yml: the full example loads, and every bad input is one located line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbiter.cli.app import app
from orbiter.models.kinds import KINDS
from orbiter.models.kinds.etcd.spec import EtcdCluster
from orbiter.models.kinds.kubernetes.spec import KubernetesCluster
from orbiter.models.load import DesiredStateError, load_desired
from orbiter.models.providers.gce import GceProvider
from orbiter.models.providers.local import LocalProvider
from orbiter.models.providers.static import StaticProvider

ORBITER = Path(sys.executable).parent / "orbiter"

# The example of issue 2, with the pools it names filled in so every reference resolves.
FULL = """\
apiVersion: orbiter.dev/v1
kind: Orb
metadata:
  name: lab
spec:
  pollInterval: 30s
  providers:
    lab:
      kind: local
    dc1:
      kind: static
      remoteUser: root
      bootstrapKeySecret: dc1_bootstrapkey
      pools:
        cp:
          - {id: c1, ip: 192.0.2.11}
          - {id: c2, ip: 192.0.2.12}
          - {id: c3, ip: 192.0.2.13}
        workers:
          - {id: w1, ip: 192.0.2.21}
          - {id: w2, ip: 192.0.2.22}
    cloud:
      kind: gce
      project: my-project
      zone: europe-west6-a
      credentialsSecret: cloud_credentials
      pools:
        workers: {machineType: e2-standard-2, diskGB: 20, image: debian-12, preemptible: false}
  clusters:
    meta:
      kind: etcd
      version: "3.4.23"
      members: {provider: lab, pool: etcd, nodes: 3}
    prod:
      kind: kubernetes
      version: v1.31.2
      controlPlane: {provider: dc1, pool: cp, nodes: 3}
      controlPlaneEndpoint: {vip: 192.0.2.10}
      workers:
        default: {provider: dc1, pool: workers, nodes: 2}
      networking:
        {network: calico, podCidr: 10.244.0.0/16, serviceCidr: 10.96.0.0/12, dnsDomain: cluster.local}
      upgrade: {maxUnavailable: 1, drainTimeout: 5m}
      paused: false
      destroyed: false
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing needle, so the cases survive edits of FULL."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def edit(old: str, new: str) -> str:
    assert FULL.count(old) >= 1, old
    return FULL.replace(old, new, 1)


def test_full_example_of_issue_2_loads():
    orb = load_desired(FULL)
    assert orb.metadata.name == "lab"
    providers = orb.spec.providers
    assert isinstance(providers["lab"], LocalProvider)
    assert isinstance(providers["dc1"], StaticProvider)
    assert isinstance(providers["cloud"], GceProvider)
    assert providers["dc1"].bootstrap_key_secret == "dc1_bootstrapkey"
    assert [m.id for m in providers["dc1"].pools["cp"]] == ["c1", "c2", "c3"]
    assert providers["cloud"].pools["workers"].disk_gb == 20
    meta, prod = orb.spec.clusters["meta"], orb.spec.clusters["prod"]
    assert isinstance(meta, EtcdCluster) and meta.members.nodes == 3
    assert isinstance(prod, KubernetesCluster)
    assert prod.control_plane.nodes == 3 and prod.workers["default"].nodes == 2
    assert prod.control_plane_endpoint and prod.control_plane_endpoint.vip == "192.0.2.10"
    assert prod.upgrade.drain_timeout == "5m" and orb.spec.poll_interval == "30s"


def test_defaults_fill_what_is_left_out():
    text = edit("  pollInterval: 30s\n", "")
    orb = load_desired(text)
    assert orb.spec.poll_interval == "30s"
    assert orb.spec.providers["lab"].subnet == "10.77.0.0/24"


UNKNOWN_MACHINE = "{id: w1, ip: 192.0.2.21, ram: 4}"
TWO_SUBNETS = (
    "    lab:\n      kind: local\n      subnet: 10.77.0.0/24\n"
    "    lab2:\n      kind: local\n      subnet: 10.77.0.0/16\n"
)

# id: (edited text, the line's marker in the edited text, field, message start)
CASES = {
    "unknown-top-level": (
        FULL + "extra: 1\n",
        "extra: 1",
        "extra",
        "unknown field (known: apiVersion, kind, metadata, spec)",
    ),
    "unknown-in-provider": (
        edit("      kind: local", "      kind: local\n      size: 3"),
        "size: 3",
        "providers.lab.size",
        "unknown field (known: kind, subnet, image)",
    ),
    "unknown-in-static-provider": (
        edit("      remoteUser: root", "      remoteUser: root\n      user: x"),
        "user: x",
        "providers.dc1.user",
        "unknown field (known: kind, remoteUser, bootstrapKeySecret, pools)",
    ),
    "unknown-in-cluster": (
        edit("      paused: false", "      paused: false\n      replicas: 3"),
        "replicas: 3",
        "clusters.prod.replicas",
        "unknown field (known: kind, ",
    ),
    "unknown-in-pool-machine": (
        edit("{id: w1, ip: 192.0.2.21}", UNKNOWN_MACHINE),
        UNKNOWN_MACHINE,
        "providers.dc1.pools.workers[0].ram",
        "unknown field (known: id, ip, hostname)",
    ),
    "unknown-in-gce-pool": (
        edit("preemptible: false}", "preemptible: false, cpu: 2}"),
        "cpu: 2",
        "providers.cloud.pools.workers.cpu",
        "unknown field (known: machineType,",
    ),
    "nodes-as-string": (
        edit("pool: workers, nodes: 2", 'pool: workers, nodes: "2"'),
        'nodes: "2"',
        "clusters.prod.workers.default.nodes",
        "must be a whole number (got str '2')",
    ),
    "unquoted-version": (
        edit('version: "3.4.23"', "version: 3.4"),
        "version: 3.4",
        "clusters.meta.version",
        "must be a string (got float 3.4); quote it",
    ),
    "bool-as-string": (
        edit("paused: false", 'paused: "false"'),
        'paused: "false"',
        "clusters.prod.paused",
        "must be true or false",
    ),
    "duration-without-unit": (
        edit("pollInterval: 30s", "pollInterval: 30"),
        "pollInterval: 30",
        "pollInterval",
        "30 has no unit: write a duration like 30s",
    ),
    "duration-quoted-without-unit": (
        edit("pollInterval: 30s", "pollInterval: '30'"),
        "pollInterval:",
        "pollInterval",
        "'30' is not a duration: write a number and a unit",
    ),
    "duration-zero": (
        edit("pollInterval: 30s", "pollInterval: 0s"),
        "pollInterval: 0s",
        "pollInterval",
        "'0s' must be longer than zero",
    ),
    "drain-timeout-without-unit": (
        edit("drainTimeout: 5m", "drainTimeout: 300"),
        "drainTimeout: 300",
        "clusters.prod.upgrade.drainTimeout",
        "300 has no unit",
    ),
    "yaml-tag": (
        edit("apiVersion: orbiter.dev/v1", "apiVersion: !custom 1"),
        "apiVersion:",
        "apiVersion",
        "YAML tag !custom is not allowed: write a plain value",
    ),
    "yaml-python-tag": (
        edit("  pollInterval: 30s", "  pollInterval: !!python/object/apply:os.system [touch /tmp/pwned]"),
        "pollInterval:",
        "pollInterval",
        "YAML tag !!python/object/apply:os.system is not allowed: write a plain value",
    ),
    "yaml-tag-on-a-mapping": (
        edit("      members: {provider: lab", "      members: !member {provider: lab"),
        "members: !member",
        "clusters.meta.members",
        "YAML tag !member is not allowed",
    ),
    "duplicate-key": (
        edit("      destroyed: false", "      destroyed: false\n      paused: true"),
        "paused: true",
        "clusters.prod.paused",
        "duplicate key (first on line ",
    ),
    "duplicate-machine-id": (
        edit("{id: w2, ip: 192.0.2.22}", "{id: w1, ip: 192.0.2.22}"),
        "{id: w1, ip: 192.0.2.22}",
        "providers.dc1.pools.workers[1].id",
        "duplicate machine id 'w1' in provider dc1",
    ),
    "duplicate-machine-id-across-pools": (
        edit("{id: w2, ip: 192.0.2.22}", "{id: c1, ip: 192.0.2.22}"),
        "{id: c1, ip: 192.0.2.22}",
        "providers.dc1.pools.workers[1].id",
        "duplicate machine id 'c1'",
    ),
    "duplicate-ip": (
        edit("{id: w2, ip: 192.0.2.22}", "{id: w2, ip: 192.0.2.21}"),
        "{id: w2, ip: 192.0.2.21}",
        "providers.dc1.pools.workers[1].ip",
        "IP 192.0.2.21 is already used by another machine",
    ),
    "unknown-provider": (
        edit("members: {provider: lab,", "members: {provider: lab2,"),
        "provider: lab2",
        "clusters.meta.members.provider",
        "unknown provider 'lab2' (known: cloud, dc1, lab)",
    ),
    "unknown-static-pool": (
        edit("pool: workers, nodes: 2", "pool: wrk, nodes: 2"),
        "pool: wrk",
        "clusters.prod.workers.default.pool",
        "provider 'dc1' has no pool 'wrk' (pools: cp, workers)",
    ),
    "unknown-gce-pool": (
        edit("default: {provider: dc1, pool: workers", "default: {provider: cloud, pool: big"),
        "pool: big",
        "clusters.prod.workers.default.pool",
        "provider 'cloud' has no pool 'big' (pools: workers)",
    ),
    "too-few-static-machines": (
        edit("pool: workers, nodes: 2", "pool: workers, nodes: 3"),
        "pool: workers, nodes: 3",
        "clusters.prod.workers.default.nodes",
        "wants 3 machines but pool 'workers' of provider 'dc1' lists 2",
    ),
    "control-plane-2": (
        edit("pool: cp, nodes: 3", "pool: cp, nodes: 2"),
        "pool: cp, nodes: 2",
        "clusters.prod.controlPlane.nodes",
        "must be 1, 3 or 5",
    ),
    "etcd-0": (
        edit("pool: etcd, nodes: 3", "pool: etcd, nodes: 0"),
        "pool: etcd, nodes: 0",
        "clusters.meta.members.nodes",
        "must be between 1 and 9",
    ),
    "etcd-10": (
        edit("pool: etcd, nodes: 3", "pool: etcd, nodes: 10"),
        "pool: etcd, nodes: 10",
        "clusters.meta.members.nodes",
        "must be between 1 and 9",
    ),
    "missing-endpoint": (
        edit("      controlPlaneEndpoint: {vip: 192.0.2.10}\n", ""),
        "    prod:",
        "clusters.prod.controlPlaneEndpoint",
        "required with 3 control planes",
    ),
    "unknown-cluster-kind": (
        edit("      kind: etcd", "      kind: nomad"),
        "kind: nomad",
        "clusters.meta.kind",
        f"unknown kind 'nomad' (kinds: {', '.join(KINDS)})",
    ),
    "unknown-provider-kind": (
        edit("      kind: gce", "      kind: aws"),
        "kind: aws",
        "providers.cloud.kind",
        "unknown kind 'aws' (kinds: local, static, gce)",
    ),
    "kind-missing": (
        edit("      kind: etcd\n", ""),
        "    meta:",
        "clusters.meta",
        "kind is missing",
    ),
    "two-clusters-one-pool": (
        edit(
            "controlPlane: {provider: dc1, pool: cp, nodes: 3}",
            "controlPlane: {provider: lab, pool: etcd, nodes: 3}",
        ),
        "controlPlane: {provider: lab",
        "clusters.prod.controlPlane.pool",
        "pool 'etcd' of provider 'lab' is already used by cluster meta",
    ),
    "overlapping-local-subnets": (
        edit("    lab:\n      kind: local\n", TWO_SUBNETS),
        "subnet: 10.77.0.0/16",
        "providers.lab2.subnet",
        "overlaps the subnet of provider lab",
    ),
    "bad-name": (
        edit("  name: lab", "  name: Lab_1"),
        "name: Lab_1",
        "metadata.name",
        "'Lab_1' is not a name",
    ),
    "wrong-api-version": (
        edit("apiVersion: orbiter.dev/v1", "apiVersion: v1"),
        "apiVersion: v1",
        "apiVersion",
        "must be 'orbiter.dev/v1' (got 'v1')",
    ),
    "missing-spec": (FULL.split("spec:")[0], "apiVersion", "spec", "required field is missing"),
    "missing-gce-project": (
        edit("      project: my-project\n", ""),
        "    cloud:",
        "providers.cloud.project",
        "required field is missing",
    ),
}

# (text, line, message start) for errors of the whole document.
DOCUMENT_CASES = {
    "malformed-yaml": (
        edit("  pollInterval: 30s", "  pollInterval: [30s"),
        7,
        "not valid YAML: expected ',' or ']'",
    ),
    "malformed-yaml-indent": (
        edit("      remoteUser: root", "     remoteUser: root"),
        12,
        "not valid YAML:",
    ),
    "tab-indent": (edit("      remoteUser: root", "\tremoteUser: root"), 12, "not valid YAML:"),
    "empty": ("", 1, "the file is empty"),
    "only-comments": ("# nothing yet\n", 1, "the file is empty"),
    "list-document": (
        "- a\n- b\n",
        1,
        "must be a mapping with apiVersion, kind, metadata and spec",
    ),
    "scalar-document": ("hello\n", 1, "must be a mapping"),
}


def _error(text: str) -> DesiredStateError:
    with pytest.raises(DesiredStateError) as info:
        load_desired(text)
    return info.value


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_located_line(case):
    text, marker, field, message = CASES[case]
    err = _error(text)
    line = line_of(text, marker)
    assert (err.line, err.field) == (line, field), str(err)
    assert err.message.startswith(message), str(err)
    assert str(err).startswith(f"desired.yml:{line} {field}: {message}")
    assert "\n" not in str(err)


@pytest.mark.parametrize("case", DOCUMENT_CASES)
def test_bad_document_is_one_located_line(case):
    text, line, message = DOCUMENT_CASES[case]
    err = _error(text)
    assert err.line == line and err.field == "", str(err)
    assert str(err).startswith(f"desired.yml:{line}: {message}")
    assert "\n" not in str(err)


def test_control_plane_message_is_the_one_of_the_issue():
    text = edit("pool: cp, nodes: 3", "pool: cp, nodes: 2")
    line = line_of(text, "nodes: 2")
    assert str(_error(text)) == f"desired.yml:{line} clusters.prod.controlPlane.nodes: must be 1, 3 or 5"


def test_malformed_yaml_names_where_the_open_bracket_started():
    err = _error(edit("  pollInterval: 30s", "  pollInterval: [30s"))
    assert "on line 6" in err.message


def test_file_name_is_part_of_the_message():
    with pytest.raises(DesiredStateError, match=r"^repo/desired.yml:4 metadata.name:"):
        load_desired(edit("  name: lab", "  name: Lab"), "repo/desired.yml")


def test_several_errors_report_the_first_and_count_the_rest():
    text = edit("pool: workers, nodes: 2", 'pool: workers, nodes: "2"').replace(
        "paused: false", "paused: 1"
    )
    err = _error(text)
    assert err.message.endswith("(and 1 more)")


def test_a_single_control_plane_needs_no_endpoint():
    text = edit("      controlPlaneEndpoint: {vip: 192.0.2.10}\n", "").replace(
        "pool: cp, nodes: 3", "pool: cp, nodes: 1"
    )
    assert load_desired(text).spec.clusters["prod"].control_plane_endpoint is None


def test_vip_on_gce_is_refused():
    text = edit(
        "      pools:\n        workers: {machineType",
        "      pools:\n        cp: {}\n        workers: {machineType",
    )
    text = text.replace(
        "controlPlane: {provider: dc1, pool: cp", "controlPlane: {provider: cloud, pool: cp"
    )
    err = _error(text)
    assert err.field == "clusters.prod.controlPlaneEndpoint.vip"
    assert "cannot carry a keepalived VIP; use loadBalancer: true" in err.message


ALL_CASES = {k: v[0] for k, v in CASES.items()} | {k: v[0] for k, v in DOCUMENT_CASES.items()}


def _expected_line(directory: Path, text: str) -> str:
    return f"error: {directory}/desired.yml" + str(_error(text))[len("desired.yml") :]


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_orbiter_plan_rejects_with_one_line_and_exit_1(case, tmp_path):
    (tmp_path / "desired.yml").write_text(ALL_CASES[case])
    result = CliRunner().invoke(app, ["plan", "--repo-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [_expected_line(tmp_path, ALL_CASES[case])]


@pytest.mark.parametrize(
    "case", ["malformed-yaml", "unknown-in-pool-machine", "control-plane-2", "empty", "yaml-tag",
             "yaml-python-tag"]
)
def test_orbiter_plan_process_exits_1_without_traceback(case, tmp_path):
    (tmp_path / "desired.yml").write_text(ALL_CASES[case])
    out = subprocess.run(
        [str(ORBITER), "plan", "--repo-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "60"},
    )
    assert out.returncode == 1, out
    assert out.stdout == "" and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [_expected_line(tmp_path, ALL_CASES[case])]
