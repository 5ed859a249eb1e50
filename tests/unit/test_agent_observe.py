"""The observe script: parsing sample outputs, and running it for real on this host."""

import base64
import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest

from orbiter.agent.observe import BEGIN, END, ObserveError, observe_script, parse_observation
from orbiter.agent.plan import MODULES_CONF, SYSCTL_CONF, observed_paths, plan
from orbiter.models.nodespec import AptSource, FileSpec, NodeSpec, Package, UnitSpec


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SPEC = NodeSpec(
    hostname="etcd-1",
    apt_sources=[AptSource(name="local", line="deb [trusted=yes] http://10.77.0.1:8079/ ./")],
    packages=[Package(name="etcd-server", version="3.5.16-1"), Package(name="curl", version="1")],
    files=[FileSpec(path="/etc/default/etcd", content="x"), FileSpec(path="/etc/a b", content="")],
    units=[
        UnitSpec(name="etcd.service", content="[Unit]\n"),
        UnitSpec(name="systemd-sysctl.service", enabled=False),
        UnitSpec(name="chrony.service"),
    ],
    sysctls={"net.ipv4.ip_local_port_range": "32768 60999", "kernel.nope": "1"},
    kernel_modules=["br-netfilter", "overlay"],
)


def sample() -> str:
    source = "# Managed by orbiter\ndeb [trusted=yes] http://10.77.0.1:8079/ ./\n"
    lines = [
        "Linux etcd-1 6.1.0 motd noise",
        BEGIN,
        f"H\t{b64('etcd-1')}\t{b64('etcd-1')}",
        "P\t0\thi \t3.5.16-1",
        "P\t1\trc \t7.88.1-10",
        "F\t0\tabc123\t644 root root",
        "F\t1\t-\t",
        "F\t2\tdef456\t644 root root",
        "F\t3\t-\t",
        "F\t4\t-\t",
        "U\t0\tenabled\tactive",
        "U\t1\tstatic\tactive",
        "U\t2\tnot-found\tinactive",
        f"S\t0\t{b64(chr(9).join(['32768', '60999']) + chr(10))}",
        "S\t1\t-",
        "M\t0\t1",
        "M\t1\t0",
        "W\t1\t0",
        f"A\t{b64('orbiter-local.list')}\t{b64(source)}",
        f"A\t{b64('orbiter-old.list')}\t{b64('deb http://old/ ./' + chr(10))}",
        "unknown line with\ttabs is ignored",
        END,
        "trailing noise",
    ]
    return "\n".join(lines) + "\n"


def test_parse_sample() -> None:
    obs = parse_observation(SPEC, sample())
    assert obs.hostname == "etcd-1"
    assert obs.packages == {"etcd-server": "3.5.16-1"}  # curl is only config files: not installed
    assert obs.held == ["etcd-server"]
    paths = observed_paths(SPEC)
    assert paths == [
        "/etc/default/etcd",
        "/etc/a b",
        "/etc/systemd/system/etcd.service",
        SYSCTL_CONF,
        MODULES_CONF,
    ]
    assert obs.files == {
        "/etc/default/etcd": "abc123",
        "/etc/a b": None,
        "/etc/systemd/system/etcd.service": "def456",
        SYSCTL_CONF: None,
        MODULES_CONF: None,
    }
    assert obs.file_modes["/etc/default/etcd"] == "0644 root root"
    assert obs.units["etcd.service"].enabled and obs.units["etcd.service"].active
    # static units cannot be enabled or disabled: they match whatever the spec wants.
    assert obs.units["systemd-sysctl.service"].enabled is False
    assert not obs.units["chrony.service"].enabled and not obs.units["chrony.service"].active
    assert obs.sysctls == {"net.ipv4.ip_local_port_range": "32768 60999"}
    assert obs.kernel_modules == ["br-netfilter"]
    assert obs.swap_active is True
    assert obs.apt_sources == {
        "local": "deb [trusted=yes] http://10.77.0.1:8079/ ./",
        "old": "deb http://old/ ./",
    }


def test_parse_hostname_mismatch_and_odd_content() -> None:
    out = sample().replace(
        f"H\t{b64('etcd-1')}\t{b64('etcd-1')}", f"H\t{b64('etcd-1')}\t{b64('old' + chr(9) + 'x')}"
    )
    obs = parse_observation(SPEC, out)
    assert obs.hostname != "etcd-1" and "/etc/hostname" in obs.hostname


def test_parse_rejects_truncated_and_malformed() -> None:
    with pytest.raises(ObserveError):
        parse_observation(SPEC, sample().replace(END, ""))
    with pytest.raises(ObserveError):
        parse_observation(SPEC, sample().replace("F\t1\t-\t", "F\t99\t-\t"))
    with pytest.raises(ObserveError):
        parse_observation(SPEC, sample().replace("S\t1\t-", "S\t1\t!!notbase64"))


def test_script_quotes_odd_names() -> None:
    spec = NodeSpec(hostname="h", files=[FileSpec(path="/tmp/x'; rm -rf /; '", content="")])
    script = observe_script(spec)
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assert "'/tmp/x'\"'\"'; rm -rf /; '\"'\"''" in script


def _dpkg_version(pkg: str) -> str | None:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


@pytest.mark.skipif(not Path("/usr/bin/dpkg-query").exists(), reason="needs a Debian host")
def test_script_runs_on_this_host(tmp_path: Path) -> None:
    present = tmp_path / "present file"
    present.write_text("hello\n")
    present.chmod(0o640)
    weird = tmp_path / "weird\tname"
    weird.write_text("")
    bash = _dpkg_version("bash")
    assert bash
    spec = NodeSpec(
        hostname=socket.gethostname(),
        packages=[Package(name="bash", version=bash), Package(name="no-such-pkg-xyz", version="1")],
        files=[
            FileSpec(
                path=str(present),
                content="hello\n",
                mode="0640",
                owner=_user(present),
                group=_group(present),
            ),
            FileSpec(path=str(tmp_path / "absent"), content="x"),
            FileSpec(
                path=str(weird),
                content="",
                owner=_user(weird),
                group=_group(weird),
                mode=f"{weird.stat().st_mode & 0o7777:04o}",
            ),
        ],
        units=[UnitSpec(name="ssh.service"), UnitSpec(name="no-such-unit-xyz.service")],
        sysctls={
            "kernel.ostype": "Linux",
            "net.ipv4.ip_local_port_range": "1 2",
            "no.such.key": "1",
        },
        kernel_modules=["no_such_module_xyz"],
    )
    r = subprocess.run(
        ["sh", "-c", observe_script(spec)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    obs = parse_observation(spec, r.stdout)
    assert obs.hostname == socket.gethostname()
    assert obs.packages == {"bash": bash}
    assert obs.files[str(present)] == hashlib.sha256(b"hello\n").hexdigest()
    assert obs.file_modes[str(present)] == f"0640 {_user(present)} {_group(present)}"
    assert obs.files[str(tmp_path / "absent")] is None
    assert obs.files[str(weird)] == hashlib.sha256(b"").hexdigest()
    assert set(obs.units) == {"ssh.service", "no-such-unit-xyz.service"}
    assert not obs.units["no-such-unit-xyz.service"].active
    assert obs.sysctls["kernel.ostype"] == "Linux"
    assert len(obs.sysctls["net.ipv4.ip_local_port_range"].split()) == 2
    assert "no.such.key" not in obs.sysctls
    assert obs.kernel_modules == []
    swaps = Path("/proc/swaps").read_text().splitlines()[1:]
    if swaps:
        assert obs.swap_active
    # The plan sees exactly the differences this host has against the spec.
    kinds = {(c.kind, c.target) for c in plan(spec, obs)}
    assert ("file", str(present)) not in kinds and ("file", str(weird)) not in kinds
    assert ("file", str(tmp_path / "absent")) in kinds
    assert ("package", "no-such-pkg-xyz") in kinds and ("package", "bash") not in kinds
    assert ("sysctl", "kernel.ostype") not in kinds and ("module", "no_such_module_xyz") in kinds


def _user(p: Path) -> str:
    import pwd

    return pwd.getpwuid(p.stat().st_uid).pw_name


def _group(p: Path) -> str:
    import grp

    return grp.getgrgid(p.stat().st_gid).gr_name


def test_environment_is_not_needed() -> None:
    """The script sets its own locale; an odd caller environment must not change the output."""
    spec = NodeSpec(hostname="x", files=[FileSpec(path="/etc/hostname", content="")])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "de_DE.UTF-8"}
    r = subprocess.run(
        ["sh", "-s"],
        input=observe_script(spec),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 0
    assert parse_observation(spec, r.stdout).files["/etc/hostname"] is not None
