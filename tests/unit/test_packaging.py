"""The package a newcomer's `make` installs: it builds without a wall of setuptools warnings, and
the wheel holds what the commands need at run time (the template `orbiter init` copies)."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_wheel_builds_without_warnings_and_carries_its_template(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # pip's own "WARNING:" lines come from the host's pip configuration, not from the package;
    # a build backend's warnings are Python warnings ("SetuptoolsDeprecationWarning: ...").
    warnings = re.findall(r"\w+Warning: .*", proc.stdout + proc.stderr)
    assert warnings == []
    wheel = next(tmp_path.glob("orbiter-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "orbiter/cli/templates/desired.yml" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]
