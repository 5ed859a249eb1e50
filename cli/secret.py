"""`orbiter secret`: the repo's encrypted secrets.yml, edited without ever showing a value.

Values go in through stdin (not argv, which lands in shell history and `ps`) and come out only
through `read`. Every write replaces secrets.yml atomically so a crash never leaves half a file.
"""

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orbiter.models.secrets import (
    SecretBox,
    SecretsError,
    SecretsFile,
    open_secrets,
    parse_secrets_file,
    read_secret,
)
from orbiter.worker.masterkey import load_master_key

from .common import Output, OutputOpt, RepoDirOpt, console, err_console, fail, print_json

app = typer.Typer(help="Encrypted secrets in the repo's secrets.yml", no_args_is_help=True)

SECRETS_FILE = "secrets.yml"
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

NameArg = Annotated[str, typer.Argument(help="secret name: letters, digits, _ . -")]


def _check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        fail(f"invalid secret name {name!r}: use only letters, digits, '_', '.' and '-'")
    return name


def _path(repo_dir: Path) -> Path:
    if not repo_dir.is_dir():
        fail(f"repo directory {repo_dir} does not exist")
    return repo_dir / SECRETS_FILE


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {path}: {err}")


def _master_key(path: Path | None = None) -> bytes:
    try:
        return load_master_key(path)
    except SecretsError as err:
        fail(str(err))


def _open(repo_dir: Path) -> tuple[Path, SecretBox, SecretsFile]:
    path = _path(repo_dir)
    master_key = _master_key()
    try:
        box, secrets = open_secrets(master_key, _read_text(path))
    except SecretsError as err:
        fail(str(err))
    return path, box, secrets


def _parse_existing(repo_dir: Path) -> tuple[Path, SecretsFile]:
    """The file without decrypting anything: names and removals need no master key."""
    path = _path(repo_dir)
    text = _read_text(path)
    if text is None:
        fail(f"{path} does not exist: add a secret with `orbiter secret add NAME`")
    try:
        secrets = parse_secrets_file(text)
    except SecretsError as err:
        fail(str(err))
    if secrets is None:
        fail(f"{path} is empty: add a secret with `orbiter secret add NAME`")
    return path, secrets


def _write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename: readers see the old or the new file."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        fail(f"cannot write {path}: {err}")


@app.command()
def add(name: NameArg, repo_dir: RepoDirOpt = Path(".")) -> None:
    """Add or replace a secret; the value is read from stdin, byte for byte."""
    _check_name(name)
    path, box, secrets = _open(repo_dir)
    stdin = typer.get_binary_stream("stdin")
    if stdin.isatty():
        err_console.print("reading the value from stdin; end with Ctrl-D")
    value = stdin.read()
    if not value:
        fail(f"no value for secret {name!r} on stdin: pipe it in (`orbiter secret add {name} < F`)")
    replaced = name in secrets.secrets
    secrets.secrets[name] = box.encrypt(name, value)
    _write_atomic(path, secrets.to_yaml())
    console.print(f"{'replaced' if replaced else 'added'} secret {name} in {path}", highlight=False)


@app.command()
def read(name: NameArg, repo_dir: RepoDirOpt = Path(".")) -> None:
    """Print a secret's value to stdout, exactly as stored (no newline added)."""
    _check_name(name)
    path = _path(repo_dir)
    master_key = _master_key()
    try:
        value = read_secret(master_key, _read_text(path), name)
    except SecretsError as err:
        fail(str(err))
    out = typer.get_binary_stream("stdout")
    out.write(value)
    out.flush()


@app.command("list")
def list_(repo_dir: RepoDirOpt = Path("."), output: OutputOpt = Output.table) -> None:
    """List secret names (never values); needs no master key."""
    path = _path(repo_dir)
    text = _read_text(path)
    try:
        secrets = parse_secrets_file(text)
    except SecretsError as err:
        fail(str(err))
    names = sorted(secrets.secrets) if secrets else []
    if output == Output.json:
        print_json(names)
        return
    table = Table("NAME")
    for n in names:
        table.add_row(n)
    console.print(table)


@app.command()
def rm(name: NameArg, repo_dir: RepoDirOpt = Path(".")) -> None:
    """Remove a secret; needs no master key."""
    _check_name(name)
    path, secrets = _parse_existing(repo_dir)
    if name not in secrets.secrets:
        fail(f"secret {name!r} is not in {path}")
    del secrets.secrets[name]
    _write_atomic(path, secrets.to_yaml())
    console.print(f"removed secret {name} from {path}", highlight=False)


@app.command("rotate-master")
def rotate_master(
    new_key_file: Annotated[
        Path, typer.Option("--new-key-file", help="file holding the new master key passphrase")
    ],
    repo_dir: RepoDirOpt = Path("."),
) -> None:
    """Re-encrypt every secret under a new master key (old key from ORBITER_MASTERKEY_FILE)."""
    _parse_existing(repo_dir)
    path, old_box, secrets = _open(repo_dir)
    new_key = _master_key(new_key_file)
    try:
        values = {n: old_box.decrypt(n, c) for n, c in secrets.secrets.items()}
    except SecretsError as err:
        fail(str(err))
    new_box = SecretBox.new(new_key)
    rotated = new_box.empty_file()
    rotated.secrets = {n: new_box.encrypt(n, v) for n, v in values.items()}
    _write_atomic(path, rotated.to_yaml())
    console.print(
        f"re-encrypted {len(values)} secret(s) in {path} under master key id {new_box.key_id};"
        f" point ORBITER_MASTERKEY_FILE at {new_key_file} and restart workers",
        highlight=False,
    )
