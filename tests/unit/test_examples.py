"""Every shipped desired.yml loads, and day one -> day two plans what the original README did."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orbiter.cli import common
from orbiter.cli.app import app
from orbiter.models.current import ClusterStatus, NodeStatus, OrbStatus
from orbiter.models.kinds.kubernetes.spec import KubernetesCluster
from orbiter.models.load import load_desired
from orbiter.models.providers.static import StaticProvider

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("**/*.yml")) + [
    ROOT / "cli" / "templates" / "desired.yml"
]


def test_there_is_an_example_per_provider_and_the_readme_days():
    names = {str(p.relative_to(ROOT)) for p in EXAMPLES}
    assert {
        "examples/local-etcd.yml",
        "examples/static-kubernetes.yml",
        "examples/gce-kubernetes.yml",
        "examples/dayone/desired.yml",
        "examples/daytwo/desired.yml",
        "cli/templates/desired.yml",
    } <= names
    kinds = {p.kind for f in EXAMPLES for p in load_desired(f.read_text()).spec.providers.values()}
    assert kinds == {"local", "static", "gce"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_loads(path: Path):
    orb = load_desired(path.read_text(), str(path))
    assert orb.spec.clusters, "an example without clusters shows nothing"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_plans_a_create_from_scratch(path: Path, tmp_path: Path):
    shutil.copy(path, tmp_path / "desired.yml")
    result = CliRunner().invoke(app, ["plan", "--repo-dir", str(tmp_path), "-o", "json"])
    assert result.exit_code == 2, result.output
    plans = json.loads(result.stdout)["clusters"]
    # A new cluster starts from its machines: a bootstrap (etcd) or a kubeadm init (kubernetes).
    for cluster in plans:
        names = [s["name"] for s in cluster["steps"]]
        assert names[0] == "packages" and any(n.startswith(("bootstrap ", "init ")) for n in names), names


def dayone_current() -> OrbStatus:
    """What orbiter would have written after day one: the cluster Ready on its machines."""
    orb = load_desired((ROOT / "examples" / "dayone" / "desired.yml").read_text())
    cluster = orb.spec.clusters["prod"]
    assert isinstance(cluster, KubernetesCluster)
    provider = orb.spec.providers[cluster.control_plane.provider]
    assert isinstance(provider, StaticProvider)
    nodes = []
    refs = [("control-plane", "controlPlane", cluster.control_plane)] + [
        ("worker", group, r) for group, r in cluster.workers.items()
    ]
    for role, group, ref in refs:
        for machine in provider.pools[ref.pool][: ref.nodes]:
            nodes.append(
                NodeStatus(
                    machine=machine.id,
                    ip=machine.ip,
                    role=role,
                    version=cluster.version,
                    ready=True,
                    joined=True,
                    group=group,
                    pool=ref.pool,
                    provider=ref.provider,
                )
            )
    return OrbStatus(
        orb=orb.metadata.name,
        commit="1" * 40,
        clusters={
            "prod": ClusterStatus(kind="kubernetes", phase="Ready", commit="1" * 40, nodes=nodes)
        },
    )


def test_dayone_current_plans_nothing_for_dayone(tmp_path: Path):
    shutil.copy(ROOT / "examples" / "dayone" / "desired.yml", tmp_path / "desired.yml")
    (tmp_path / "current.yml").write_text(dayone_current().to_yaml())
    result = CliRunner().invoke(app, ["plan", "--repo-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.stdout


def test_daytwo_plans_the_upgrade_the_new_control_planes_and_the_removed_worker_group(tmp_path: Path, monkeypatch):
    shutil.copy(ROOT / "examples" / "daytwo" / "desired.yml", tmp_path / "desired.yml")
    (tmp_path / "current.yml").write_text(dayone_current().to_yaml())
    result = CliRunner().invoke(app, ["plan", "--repo-dir", str(tmp_path), "-o", "json"])
    assert result.exit_code == 2, result.output
    steps = [s for s in json.loads(result.stdout)["clusters"][0]["steps"]]
    changes = [s["name"] for s in steps if s["changes"]]
    assert changes == [
        "upgrade first to v1.31.2",
        "upgrade fourth to v1.31.2",
        "machines second, third",
        "node software",
        "join control plane second",
        "join control plane third",
        "remove worker fifth",
    ], [s["name"] for s in steps]
    # The console keeps the width COLUMNS had when the CLI was first imported (by whichever test
    # came first in this process): set the width this table is read at.
    monkeypatch.setattr(common.console, "_width", 200)
    table = CliRunner().invoke(app, ["plan", "--repo-dir", str(tmp_path)])
    assert table.exit_code == 2
    for text in ("upgrade first to v1.31.2", "join control plane third", "remove worker fifth"):
        assert text in table.stdout


def test_dayone_and_daytwo_describe_the_same_orb_and_machines():
    one = load_desired((ROOT / "examples" / "dayone" / "desired.yml").read_text())
    two = load_desired((ROOT / "examples" / "daytwo" / "desired.yml").read_text())
    assert one.metadata == two.metadata and one.spec.providers == two.spec.providers
    prod1, prod2 = one.spec.clusters["prod"], two.spec.clusters["prod"]
    assert isinstance(prod1, KubernetesCluster) and isinstance(prod2, KubernetesCluster)
    assert (prod1.control_plane.nodes, prod2.control_plane.nodes) == (1, 3)
    assert prod1.version.rsplit(".", 1)[0] == prod2.version.rsplit(".", 1)[0]  # a patch upgrade
    assert set(prod1.workers) - set(prod2.workers) == {"extra"}
