"""Where secrets must never show up: the Temporal database and log, orbiter's state dir, git
history, logs. `find_leaks` is used through the `assert_no_leak` fixture in conftest."""

import subprocess
from collections.abc import Iterable
from pathlib import Path

SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def _files(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
    elif path.is_dir():
        yield from (p for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def find_leaks(markers: Iterable[str], paths: Iterable[Path] = (), repos: Iterable[Path] = (),
               texts: dict[str, str] | None = None) -> list[str]:
    """Every place (file, repo history, named text) that holds a marker in plain text."""
    needles = [m.encode() for m in markers]
    assert needles and all(len(n) >= 8 for n in needles), "markers must be long enough to be unique"
    found: list[str] = []
    for root in paths:
        for path in _files(root):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {n.decode()}" for n in needles if n in data]
    for repo in repos:
        log = subprocess.run(["git", "log", "-p", "--all", "--reflog", "--format=%H %an %s%n%b"], cwd=repo,
                             capture_output=True, check=True).stdout
        found += [f"git history of {repo}: {n.decode()}" for n in needles if n in log]
    for name, text in (texts or {}).items():
        found += [f"{name}: {n.decode()}" for n in needles if n in text.encode()]
    return found


def temporal_files(db: Path, log: Path | None) -> list[Path]:
    return [Path(f"{db}{suffix}") for suffix in SQLITE_SIDE_FILES] + ([log] if log else [])
