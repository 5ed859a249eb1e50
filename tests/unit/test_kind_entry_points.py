"""A kind from another distribution: declared under the `orbiter.kinds` entry point, it is found
next to the built-in kinds and desired.yml takes it; a wrong declaration is one clear error."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orbiter.models.kinds import ENTRY_POINT_GROUP, KINDS, KindEntryError, installed_kinds

KIND_MODULE = '''
from typing import Literal
from orbiter.models.kinds.base import Kind, KindSpec, KindState, Leftovers, MemberBase, PoolRef

class Spec(KindSpec):
    kind: Literal["{name}"]
    members: PoolRef
    def pools(self):
        return [(("members",), self.members)]
    def member_role(self, path):
        return "member", None

class State(KindState):
    kind: Literal["{name}"] = "{name}"

KIND = Kind(name="{name}", spec=Spec, state=State, member=MemberBase, leaves=Leftovers(),
            runbook="{module}:RUNBOOK", activities="{module}:ACTIVITIES")
ACTIVITIES = []
'''

DESIRED = """apiVersion: orbiter.dev/v1
kind: Orb
metadata: {name: lab}
spec:
  providers:
    rack: {kind: static, pools: {p: [{id: m1, ip: 10.0.0.1}]}}
  clusters:
    c1: {kind: extkind, members: {provider: rack, pool: p, nodes: 1}}
"""


def distribution(root: Path, module: str, entry: str, name: str) -> Path:
    """A module and the dist-info an installed distribution has, on a path of its own."""
    (root / f"{module}.py").write_text(textwrap.dedent(KIND_MODULE.format(name=name, module=module)))
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry} = {module}:KIND\n")
    return root


def test_an_installed_kind_is_found_and_desired_yml_takes_it(tmp_path: Path):
    path = distribution(tmp_path, "ext_kind_pkg", "extkind", "extkind")
    (tmp_path / "desired.yml").write_text(DESIRED)
    script = ("from orbiter.models.kinds import KINDS; from orbiter.models.load import load_desired;"
              f" orb = load_desired(open({str(tmp_path / 'desired.yml')!r}).read());"
              " print(sorted(KINDS), orb.spec.clusters['c1'].kind)")
    out = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": str(path), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['etcd', 'extkind', 'kubernetes', 'redis'] extkind"
    assert "extkind" not in KINDS  # this process never had it on its path


def test_a_kind_declared_under_another_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(distribution(tmp_path, "misnamed_kind_pkg", "other", "misnamed")))
    with pytest.raises(KindEntryError, match="declares kind 'misnamed': name the entry point misnamed"):
        installed_kinds(KINDS)


def test_a_kind_cannot_replace_a_built_in_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(distribution(tmp_path, "fake_etcd_pkg", "etcd", "etcd")))
    with pytest.raises(KindEntryError, match="kind etcd is already registered"):
        installed_kinds(KINDS)
