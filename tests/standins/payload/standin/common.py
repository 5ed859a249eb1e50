"""Orbiter test stand-in, not Kubernetes: what every stand-in program shares.

VERSION (the builder writes each package's version here), the paths and constants, output helpers,
the invocation record and the hold hook, and command-line parsing.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time

VERSION = "@VERSION@"  # replaced by the builder, e.g. 1.30.6
STANDIN = "orbiter test stand-in, not Kubernetes"
LOG_DIR = "/var/log/standin"
KUBE = "/etc/kubernetes"
PKI = KUBE + "/pki"
MANIFESTS = KUBE + "/manifests"
ADMIN_CONF = KUBE + "/admin.conf"
KUBELET_CONF = KUBE + "/kubelet.conf"
KUBELET_DIR = "/var/lib/kubelet"
API_DIR = "/var/lib/standin-apiserver"
API_CONFIG = "/etc/standin-apiserver/config.json"
API_UNIT = "standin-apiserver.service"
STATE = API_DIR + "/state.json"
STUCK = API_DIR + "/stuck-pods.json"
ETCD_UNHEALTHY = API_DIR + "/etcd-unhealthy"
ETCD_DATA = "/var/lib/etcd"
ETCD_METRICS_PORT = 2381  # kubeadm's --listen-metrics-urls=http://127.0.0.1:2381 (/health, the liveness probe)
HOLD = "/etc/standin/hold.json"
CERT_KEY_TTL = 2 * 3600
DEFAULT_GRACE = 40.0
KUBEADM_APIS = {"kubeadm.k8s.io/v1beta3": (22, 99), "kubeadm.k8s.io/v1beta4": (31, 99)}
KUBEADM_KINDS = {
    "InitConfiguration",
    "ClusterConfiguration",
    "JoinConfiguration",
    "ResetConfiguration",
    "UpgradeConfiguration",
}
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
STACK_HINT = "To see the stack trace of this error execute with --v=5 or higher"


class Fail(Exception):
    """Print the message to stderr and exit with the status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def now() -> float:
    return time.time()


def rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def minor(version: str) -> tuple[int, int, int]:
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        raise Fail(f'couldn\'t parse kubernetes version "{version}"')
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def write_file(path: str, content: str | bytes, mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".standin-tmp"
    with open(tmp, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


# -- recording ------------------------------------------------------------------------------

CONFIG_FLAGS = ("--config", "-f", "--filename")


def record(tool: str, argv: list[str]) -> str:
    """Append one JSON line for this invocation; return its id."""
    inv_id = secrets.token_hex(8)
    configs: dict[str, str] = {}
    for i, a in enumerate(argv):
        path = None
        for flag in CONFIG_FLAGS:
            if a == flag and i + 1 < len(argv):
                path = argv[i + 1]
            elif a.startswith(flag + "="):
                path = a.split("=", 1)[1]
        if path and "://" not in path and path != "-":
            try:
                configs[path] = read_text(path)
            except OSError as exc:
                configs[path] = f"<unreadable: {exc.strerror}>"
    line = {
        "id": inv_id,
        "tool": tool,
        "version": VERSION,
        "argv": [tool, *argv],
        "time": now(),
        "time_rfc3339": rfc3339(now()),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "configs": configs,
    }
    _append(LOG_DIR + "/invocations.jsonl", line)
    return inv_id


def record_exit(inv_id: str, status: int) -> None:
    _append(LOG_DIR + "/exits.jsonl", {"id": inv_id, "exit": status, "time": now()})


def _append(path: str, obj: dict) -> None:
    try:
        os.makedirs(LOG_DIR, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(obj, sort_keys=True) + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def hold(point: str) -> None:
    """Test hook (HOLD): pause at `point`, then print (which fails if the caller has gone)."""
    try:
        with open(HOLD) as f:
            seconds = float(json.load(f).get(point) or 0)
    except (OSError, ValueError, AttributeError):
        return
    if seconds > 0:
        _append(LOG_DIR + "/holds.jsonl", {"point": point, "seconds": seconds, "time": now(), "pid": os.getpid()})
        time.sleep(seconds)
        out(f"[{STANDIN}] held at {point} for {seconds:g}s")


# -- small helpers shared by the tools --------------------------------------------------------


def parse_args(argv: list[str], with_value: set[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Positional arguments and flags (flag -> list of values, "" for booleans)."""
    pos: list[str] = []
    flags: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and a != "-":
            if "=" in a:
                k, v = a.split("=", 1)
            elif a in with_value and i + 1 < len(argv):
                k, v = a, argv[i + 1]
                i += 1
            elif a.startswith("-o") and len(a) > 2 and not a.startswith("--"):
                k, v = "-o", a[2:]
            else:
                k, v = a, ""
            flags.setdefault(k, []).append(v)
        else:
            pos.append(a)
        i += 1
    return pos, flags


def flag(flags: dict[str, list[str]], *names: str, default: str | None = None) -> str | None:
    for n in names:
        if n in flags:
            return flags[n][-1]
    return default


def go_duration(text: str) -> float:
    if text in ("0", ""):
        return 0.0
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise Fail(f'invalid argument "{text}": time: invalid duration "{text}"')
    for num, unit in parts:
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def go_duration_str(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def hostname() -> str:
    return socket.gethostname().lower()


def local_ip() -> str:
    try:
        ips = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    except OSError:
        ips = []
    v4 = [i for i in ips if ":" not in i and not i.startswith("127.")]
    return v4[0] if v4 else "127.0.0.1"


def systemctl(*args: str) -> None:
    if shutil.which("systemctl"):
        subprocess.run(["systemctl", *args], capture_output=True, check=False)


def new_token() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return (
        "".join(secrets.choice(alphabet) for _ in range(6)) + "." + "".join(secrets.choice(alphabet) for _ in range(16))
    )
