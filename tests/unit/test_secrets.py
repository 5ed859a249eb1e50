"""`orbiter secret` through the CLI: round trips, rotation and one-line errors that leak nothing."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orbiter.cli.secret import app
from orbiter.models.secrets import SecretsFile

VALUE = b"\x00\xffs3cr3t-VALUE\n\xc3\x28 trailing  "
MARKER = "s3cr3t-VALUE"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    return tmp_path / "repo"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "masterkey"
    path.write_text("correct horse battery staple\n")
    return path


def run(
    repo: Path, key_file: Path | None, *args: str, stdin: bytes | None = None
) -> tuple[int, bytes, str]:
    """Exit code, raw stdout and stderr of one CLI call."""
    env = {"ORBITER_MASTERKEY_FILE": str(key_file) if key_file else "/nonexistent/masterkey"}
    result = CliRunner().invoke(app, [*args, "--repo-dir", str(repo)], input=stdin, env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout_bytes, result.stderr


def assert_one_line_error(code: int, out: bytes, err: str, *fragments: str) -> None:
    assert code == 1
    assert "Traceback" not in err and MARKER not in err and MARKER.encode() not in out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_add_read_list_rm(repo: Path, key_file: Path) -> None:
    code, out, err = run(repo, key_file, "add", "db.password", stdin=VALUE)
    assert code == 0, err
    assert MARKER.encode() not in out and MARKER not in err
    assert run(repo, key_file, "add", "api_token-2", stdin=b"other")[0] == 0

    text = (repo / "secrets.yml").read_text()
    assert MARKER not in text
    parsed = SecretsFile.model_validate(yaml.safe_load(text))
    assert sorted(parsed.secrets) == ["api_token-2", "db.password"]

    code, out, _ = run(repo, key_file, "read", "db.password")
    assert code == 0 and out == VALUE

    code, out, _ = run(repo, key_file, "list", "-o", "json")
    assert code == 0 and json.loads(out) == ["api_token-2", "db.password"]
    code, out, _ = run(repo, key_file, "list")
    assert code == 0 and b"db.password" in out and MARKER.encode() not in out

    assert run(repo, key_file, "rm", "db.password")[0] == 0
    code, out, _ = run(repo, key_file, "list", "-o", "json")
    assert json.loads(out) == ["api_token-2"]
    assert_one_line_error(*run(repo, key_file, "read", "db.password"), "db.password", "not in")
    assert_one_line_error(*run(repo, key_file, "rm", "db.password"), "db.password")
    assert not [p for p in repo.iterdir() if p.name != "secrets.yml"], "temp files left behind"


def test_add_refuses_empty_value_and_bad_names(repo: Path, key_file: Path) -> None:
    assert_one_line_error(*run(repo, key_file, "add", "x", stdin=b""), "no value")
    assert not (repo / "secrets.yml").exists()
    for bad in ("a/b", "a b", "ü", "../x"):
        assert_one_line_error(*run(repo, key_file, "add", bad, stdin=b"v"), "invalid secret name")


def test_replace_keeps_one_entry(repo: Path, key_file: Path) -> None:
    run(repo, key_file, "add", "x", stdin=b"one")
    run(repo, key_file, "add", "x", stdin=b"two")
    assert run(repo, key_file, "read", "x")[1] == b"two"


def test_rotate_master(repo: Path, key_file: Path, tmp_path: Path) -> None:
    run(repo, key_file, "add", "a", stdin=VALUE)
    run(repo, key_file, "add", "b", stdin=b"bee")
    before = yaml.safe_load((repo / "secrets.yml").read_text())
    new_key = tmp_path / "newkey"
    new_key.write_text("a brand new passphrase")

    code, out, err = run(repo, key_file, "rotate-master", "--new-key-file", str(new_key))
    assert code == 0, err
    assert MARKER.encode() not in out
    after = yaml.safe_load((repo / "secrets.yml").read_text())
    assert after["kdf"]["salt"] != before["kdf"]["salt"]
    assert after["keyId"] != before["keyId"]

    assert run(repo, new_key, "read", "a")[1] == VALUE
    assert run(repo, new_key, "read", "b")[1] == b"bee"
    # key ids are of the salted derived key, so only the file's new id is predictable
    assert_one_line_error(*run(repo, key_file, "read", "a"), "key id", after["keyId"])


def test_wrong_master_key_names_key_ids(repo: Path, key_file: Path, tmp_path: Path) -> None:
    run(repo, key_file, "add", "a", stdin=VALUE)
    file_key_id = yaml.safe_load((repo / "secrets.yml").read_text())["keyId"]
    wrong = tmp_path / "wrong"
    wrong.write_text("not the key")
    assert_one_line_error(*run(repo, wrong, "read", "a"), "key id", file_key_id)
    assert_one_line_error(*run(repo, wrong, "add", "b", stdin=b"v"), "key id", file_key_id)


def test_missing_master_key_file_names_path(repo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-key"
    assert_one_line_error(*run(repo, missing, "add", "a", stdin=b"v"), str(missing))
    assert_one_line_error(*run(repo, missing, "read", "a"), str(missing))


def test_tampered_ciphertext_names_secret(repo: Path, key_file: Path) -> None:
    run(repo, key_file, "add", "victim", stdin=VALUE)
    path = repo / "secrets.yml"
    data = yaml.safe_load(path.read_text())
    ct = data["secrets"]["victim"]
    data["secrets"]["victim"] = ct[:20] + ("A" if ct[20] != "A" else "B") + ct[21:]
    path.write_text(yaml.safe_dump(data))
    assert_one_line_error(*run(repo, key_file, "read", "victim"), "'victim'", "authentication")


def test_swapped_ciphertexts_fail(repo: Path, key_file: Path) -> None:
    run(repo, key_file, "add", "one", stdin=b"first value")
    run(repo, key_file, "add", "two", stdin=b"second value")
    path = repo / "secrets.yml"
    data = yaml.safe_load(path.read_text())
    s = data["secrets"]
    s["one"], s["two"] = s["two"], s["one"]
    path.write_text(yaml.safe_dump(data))
    assert_one_line_error(*run(repo, key_file, "read", "one"), "'one'")
    assert_one_line_error(*run(repo, key_file, "read", "two"), "'two'")
    new_key = path.parent / "k2"
    new_key.write_text("k2")
    assert_one_line_error(
        *run(repo, key_file, "rotate-master", "--new-key-file", str(new_key)), "authentication"
    )
    assert yaml.safe_load(path.read_text()) == data, "failed rotation must not touch the file"


def test_corrupt_file_is_one_line(repo: Path, key_file: Path) -> None:
    (repo / "secrets.yml").write_text("kind: [unclosed\n")
    assert_one_line_error(*run(repo, key_file, "read", "a"), "secrets.yml")
    assert_one_line_error(*run(repo, key_file, "list"), "secrets.yml")
