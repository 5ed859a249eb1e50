"""The skeleton's promises, checked on the source: providers and kinds are additions found through
their registries, product modules import each other without circles, and every workflow patch
is listed with when it may go."""

import ast
from pathlib import Path

import pytest

from orbiter.models.kinds import KINDS
from orbiter.models.providers import MODELS as PROVIDER_MODELS
from orbiter.workflows.patches import PATCHES

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("models", "workflows", "activities", "agent", "worker", "cli")
# Generated or schema tables, allowed to be long.
LONG_ALLOWED = {"models/kinds/kubernetes/kubeadm_api.py"}
MAX_LINES = 400


def product_files() -> list[Path]:
    return sorted(p for d in PRODUCT for p in (ROOT / d).rglob("*.py"))


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "orbiter." + ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every orbiter module this file imports, at any depth of the file (function-level too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("orbiter.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("orbiter."):
                continue
            # `from pkg import mod` imports a module when mod is one.
            for alias in node.names:
                out.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target)
    return {m for m in out if m in MODULES}


MODULES = {module_name(p): p for p in product_files()}


def test_no_import_circle_among_product_modules():
    graph = {name: imports_of(path) for name, path in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_no_isinstance_on_provider_or_kind_classes_outside_their_homes():
    names = {m.__name__ for m in PROVIDER_MODELS} | {k.spec.__name__ for k in KINDS.values()} | {
        k.state.__name__ for k in KINDS.values()}
    homes = ("models/providers/", "models/kinds/", "activities/providers/", "activities/kinds/", "workflows/kinds/")
    found = []
    for path in product_files():
        rel = str(path.relative_to(ROOT))
        if rel.startswith(homes):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if named & names:
                    found.append(f"{rel}:{node.lineno}")
    assert found == []


def test_no_provider_or_kind_name_is_compared_outside_their_homes():
    """`kind == "local"` style checks are what capabilities replace."""
    literals = {m.model_fields["kind"].annotation.__args__[0] for m in PROVIDER_MODELS} | set(KINDS)
    homes = ("models/providers/", "models/kinds/", "activities/providers/", "activities/kinds/", "workflows/kinds/")
    found = []
    for path in product_files():
        rel = str(path.relative_to(ROOT))
        if rel.startswith(homes):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                consts = {c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)}
                if consts & literals:
                    found.append(f"{rel}:{node.lineno}")
    assert found == []


def patched_ids(root: Path = ROOT) -> dict[str, str]:
    """Every id passed to workflow.patched / deprecate_patch in the workflows, with where."""
    out = {}
    for path in sorted((root / "workflows").rglob("*.py")):
        tree = ast.parse(path.read_text())
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("patched", "deprecate_patch") and node.args):
                arg = node.args[0]
                value = arg.value if isinstance(arg, ast.Constant) else constants.get(getattr(arg, "id", ""), "?")
                out[value] = f"{path.relative_to(root)}:{node.lineno}"
    return out


def test_every_workflow_patch_is_listed_with_when_it_may_go():
    listed = {p.id for p in PATCHES}
    unlisted = {i: where for i, where in patched_ids().items() if i not in listed}
    assert unlisted == {}, "add these to workflows/patches.py PATCHES"
    for patch in PATCHES:
        assert patch.why and patch.added_in and patch.removable_after, patch


def test_the_guard_sees_a_patch(tmp_path):
    """The scan finds ids given as constants, so an empty list above is a real answer."""
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "w.py").write_text(
        'X = "some-change"\nasync def f():\n    if workflow.patched(X):\n        pass\n')
    assert patched_ids(tmp_path) == {"some-change": "workflows/w.py:3"}


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_product_modules_stay_small(path: Path):
    rel = str(path.relative_to(ROOT))
    if rel in LONG_ALLOWED:
        return
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{rel}: split it into modules named for what they hold"


def test_the_desired_yml_unions_and_the_worker_come_from_the_registries():
    from typing import get_args

    from orbiter.models.desired import OrbSpec
    from orbiter.worker.registry import kind_activities

    clusters = get_args(get_args(OrbSpec.model_fields["clusters"].annotation)[1])[0]
    assert set(get_args(clusters)) == {k.spec for k in KINDS.values()}
    providers = get_args(get_args(OrbSpec.model_fields["providers"].annotation)[1])[0]
    assert set(get_args(providers)) == set(PROVIDER_MODELS)
    names = {a.__name__ for a in kind_activities()}
    assert {"ensure_etcd_certs", "kubeadm_init", "network_facts"} <= names
