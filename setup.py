"""The package layout, derived from the tree: each product directory is a subpackage of `orbiter`
(models/kinds/etcd -> orbiter.models.kinds.etcd), so a new kind or provider package needs no
entry here. Everything else about the package is in pyproject.toml."""

from pathlib import Path

from setuptools import setup

ROOTS = ("models", "workflows", "activities", "agent", "worker", "cli")
here = Path(__file__).parent
dirs = sorted({p.parent.relative_to(here) for root in ROOTS for p in (here / root).rglob("*.py")}
              | {Path("cli/templates")})
setup(
    packages=["orbiter." + ".".join(d.parts) for d in dirs],
    package_dir={"orbiter." + ".".join(d.parts): str(d) for d in dirs},
)
