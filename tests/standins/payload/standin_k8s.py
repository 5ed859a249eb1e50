#!/usr/bin/python3
"""ORBITER TEST STAND-IN for kubeadm, kubelet, kubectl and a kube-apiserver. NOT KUBERNETES.

One script, installed by the stand-in Debian packages under several names and dispatched on
the name it was run as: /usr/bin/kubeadm, /usr/bin/kubelet, /usr/bin/kubectl and
/usr/lib/orbiter-standin/standin-apiserver. Only the Python 3 standard library is used.

Every invocation is appended as one JSON line to /var/log/standin/invocations.jsonl (argv, time,
and the content of any --config / -f file), and its exit status to exits.jsonl beside it.

The stand-in API (standin-apiserver.service, HTTPS on :6443 with a certificate signed by the
cluster CA that `kubeadm init` makes) keeps the cluster state (nodes, bootstrap tokens, the
certificate key, versions, applied manifests) in /var/lib/standin-apiserver/state.json on the
first control plane. Control planes that join run the same unit as a follower that forwards
every request to the primary, so a VIP or load balancer in front of them works. Test hook:
/var/lib/standin-apiserver/stuck-pods.json on the primary ({"NODE": ["ns/pod", ...]}) names
pods whose pod disruption budget blocks a drain of NODE. Test hook: /etc/standin/hold.json on a
machine ({"POINT": seconds}) makes kubeadm pause at POINT, logged to holds.jsonl beside the
invocations, then print a line, so a caller gone meanwhile stops it there as a closed pipe stops
the real tool. Points: join-before-kubelet-conf (a control plane's certificates, manifests and
admin.conf written, the node registered, no kubelet.conf yet), join-after-kubelet-conf.

Stacked etcd: the API state keeps a stand-in etcd member list ("etcdMembers"). `kubeadm init` adds
the first member, `kubeadm join --control-plane` one more (the same name replaces its old entry),
and `kubeadm reset` on a control plane removes this machine's member first, as the real
remove-etcd-member phase does (never the only member; a failure only warns), printing "[reset]
Deleted contents of the etcd data directory: /var/lib/etcd". Every control plane's
standin-apiserver also serves etcd's metrics listener, plain HTTP on 127.0.0.1:2381: GET /health
answers {"health":"true","reason":""} while the member is in the list and the primary answers,
else HTTP 503 {"health":"false","reason":"..."}. Test hook: /var/lib/standin-apiserver/
etcd-unhealthy on a control plane makes its member unhealthy (the file's text is the reason). A
follower's /readyz fails (HTTP 500, "[-]etcd failed") while the primary does not answer. kubectl
honours --server, --tls-server-name, --insecure-skip-tls-verify and --request-timeout, and the
static pod markers carry the flags tools read (kube-apiserver --secure-port, etcd
--listen-metrics-urls).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.server
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

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


# -- a YAML subset (block mappings and sequences, scalars, empty flow collections) -----------


def _scalar(text: str):
    t = text.strip()
    if t == "" or t in ("~", "null", "Null", "NULL"):
        return None
    if t[0] in "\"'":
        q = t[0]
        end = t.rfind(q)
        body = t[1:end]
        if q == "'":
            return body.replace("''", "'")
        return json.loads('"' + body + '"')
    if t in ("true", "True", "TRUE"):
        return True
    if t in ("false", "False", "FALSE"):
        return False
    if t == "{}":
        return {}
    if t == "[]":
        return []
    if t.startswith("[") and t.endswith("]"):
        return [_scalar(x) for x in t[1:-1].split(",") if x.strip()]
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    if re.fullmatch(r"-?\d+\.\d+", t):
        return float(t)
    return t


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'" and (i == 0 or line[i - 1] in " :-[{,"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _split_key(text: str) -> tuple[str, str] | None:
    m = re.match(r"""^("(?:[^"\\]|\\.)*"|'[^']*'|[^:#'"][^:]*?)\s*:(?:\s+(.*)|$)""", text)
    if not m:
        return None
    key = m.group(1)
    return (str(_scalar(key)) if key[0] in "\"'" else key), (m.group(2) or "")


def yaml_load_all(text: str) -> list:
    """Documents of a YAML stream, for the block style that config generators write."""
    text = text.strip()
    if text.startswith("{") or text.startswith("["):
        return [json.loads(text)]
    docs, cur = [], []
    for raw in text.splitlines():
        if raw.strip() == "---" or raw.startswith("--- "):
            docs.append(cur)
            cur = []
        elif raw.strip() != "...":
            cur.append(raw)
    docs.append(cur)
    result = []
    for lines in docs:
        items = []
        i = 0
        while i < len(lines):
            raw = lines[i]
            s = _strip_comment(raw.replace("\t", "    "))
            if s.strip():
                block = re.match(r"^(\s*)(?:-\s+)?[^:]*:\s*([|>])[-+]?\s*$", s)
                items.append((len(s) - len(s.lstrip()), s.strip()))
                if block:  # literal/folded block scalar: gather its lines verbatim
                    base = len(s) - len(s.lstrip())
                    body = []
                    j = i + 1
                    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
                        body.append(lines[j])
                        j += 1
                    ind = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
                    joined = "\n".join(b[ind:] for b in body).rstrip("\n") + "\n"
                    if block.group(2) == ">":
                        joined = " ".join(x.strip() for x in joined.splitlines()) + "\n"
                    items[-1] = (items[-1][0], items[-1][1][: items[-1][1].rfind(block.group(2))] + json.dumps(joined))
                    i = j
                    continue
            i += 1
        if not items:
            continue
        value, _ = _parse_block(items, 0, items[0][0])
        result.append(value)
    return result


def _parse_block(items: list, pos: int, indent: int):
    if items[pos][1].startswith("- ") or items[pos][1] == "-":
        seq = []
        while pos < len(items) and items[pos][0] == indent and (items[pos][1].startswith("- ") or items[pos][1] == "-"):
            rest = items[pos][1][1:].strip()
            if not rest:
                pos += 1
                if pos < len(items) and items[pos][0] > indent:
                    v, pos = _parse_block(items, pos, items[pos][0])
                else:
                    v = None
                seq.append(v)
                continue
            inner = indent + (len(items[pos][1]) - len(rest))
            if _split_key(rest) and not rest.startswith(('"', "'")) or (rest[0] in "\"'" and _split_key(rest)):
                sub = [(inner, rest)]
                pos += 1
                while pos < len(items) and items[pos][0] >= inner:
                    sub.append(items[pos])
                    pos += 1
                v, _ = _parse_block(sub, 0, inner)
                seq.append(v)
            else:
                seq.append(_scalar(rest))
                pos += 1
        return seq, pos
    mapping: dict = {}
    while pos < len(items) and items[pos][0] == indent:
        kv = _split_key(items[pos][1])
        if kv is None:
            raise ValueError(f"cannot parse YAML line: {items[pos][1]!r}")
        key, rest = kv
        pos += 1
        if rest.strip():
            mapping[key] = _scalar(rest)
        elif pos < len(items) and (
            items[pos][0] > indent or (items[pos][0] == indent and items[pos][1].startswith("-"))
        ):
            mapping[key], pos = _parse_block(items, pos, items[pos][0])
        else:
            mapping[key] = None
    return mapping, pos


# -- DER, RSA and X.509, enough for a CA and serving certificates -----------------------------


def _len(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def der_int(i: int) -> bytes:
    return tlv(0x02, i.to_bytes(i.bit_length() // 8 + 1, "big"))


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    body = bytes([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, body)


NULL = b"\x05\x00"
SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p**0.5) + 1))]


def _probable_prime(n: int) -> bool:
    for p in SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(8):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def rsa_key(bits: int = 2048) -> dict:
    e = 65537
    while True:
        ps = []
        while len(ps) < 2:
            c = secrets.randbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if _probable_prime(c) and math.gcd(e, c - 1) == 1:
                ps.append(c)
        p, q = ps
        if p != q:
            break
    n = p * q
    d = pow(e, -1, (p - 1) * (q - 1))
    return {"n": n, "e": e, "d": d, "p": p, "q": q}


def key_pem(k: dict) -> str:
    der = seq(
        der_int(0),
        der_int(k["n"]),
        der_int(k["e"]),
        der_int(k["d"]),
        der_int(k["p"]),
        der_int(k["q"]),
        der_int(k["d"] % (k["p"] - 1)),
        der_int(k["d"] % (k["q"] - 1)),
        der_int(pow(k["q"], -1, k["p"])),
    )
    return pem("RSA PRIVATE KEY", der)


def pem(label: str, der: bytes) -> str:
    b = base64.b64encode(der).decode()
    return (
        f"-----BEGIN {label}-----\n"
        + "\n".join(b[i : i + 64] for i in range(0, len(b), 64))
        + f"\n-----END {label}-----\n"
    )


def unpem(text: str) -> bytes:
    body = re.search(r"-----BEGIN [A-Z ]+-----(.*?)-----END", text, re.S)
    if not body:
        raise Fail("not PEM data")
    return base64.b64decode("".join(body.group(1).split()))


def der_read(data: bytes, pos: int = 0) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at pos."""
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    return tag, pos, pos + n


def der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    kids = []
    while start < end:
        t, s, e = der_read(data, start)
        kids.append((start, s, e))
        start = e
    return kids


def key_from_pem(text: str) -> dict:
    der = unpem(text)
    _, s, e = der_read(der)
    vals = [int.from_bytes(der[cs:ce], "big") for _, cs, ce in der_children(der, s, e)]
    return {"n": vals[1], "e": vals[2], "d": vals[3], "p": vals[4], "q": vals[5]}


def spki(k: dict) -> bytes:
    return seq(seq(oid("1.2.840.113549.1.1.1"), NULL), tlv(0x03, b"\x00" + seq(der_int(k["n"]), der_int(k["e"]))))


def name(cn: str) -> bytes:
    return seq(tlv(0x31, seq(oid("2.5.4.3"), tlv(0x0C, cn.encode()))))


def _time(t: float) -> bytes:
    return tlv(0x17, time.strftime("%y%m%d%H%M%SZ", time.gmtime(t)).encode())


def ext(o: str, value: bytes, critical: bool = False) -> bytes:
    return seq(oid(o), tlv(0x01, b"\xff") if critical else b"", tlv(0x04, value))


def make_cert(
    subject: str, key: dict, issuer: str, issuer_key: dict, ca: bool, sans: list[str] = (), days: int = 3650
) -> str:
    pub = spki(key)
    ski = hashlib.sha1(seq(der_int(key["n"]), der_int(key["e"]))).digest()
    aki = hashlib.sha1(seq(der_int(issuer_key["n"]), der_int(issuer_key["e"]))).digest()
    exts = [
        ext("2.5.29.19", seq(tlv(0x01, b"\xff")) if ca else seq(), critical=True),
        ext("2.5.29.15", tlv(0x03, b"\x02\xa4") if ca else tlv(0x03, b"\x05\xa0"), critical=True),
        ext("2.5.29.14", tlv(0x04, ski)),
    ]
    if not ca:
        exts.append(ext("2.5.29.37", seq(oid("1.3.6.1.5.5.7.3.1"))))
        exts.append(ext("2.5.29.35", seq(tlv(0x80, aki))))
        names = b""
        for s in sans:
            try:
                names += tlv(0x87, ipaddress.ip_address(s).packed)
            except ValueError:
                names += tlv(0x82, s.encode())
        exts.append(ext("2.5.29.17", seq(names)))
    alg = seq(oid("1.2.840.113549.1.1.11"), NULL)
    start = now() - 300
    tbs = seq(
        tlv(0xA0, der_int(2)),
        der_int(secrets.randbits(63)),
        alg,
        name(issuer),
        seq(_time(start), _time(start + days * 86400)),
        name(subject),
        pub,
        tlv(0xA3, seq(*exts)),
    )
    digest = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(tbs).digest()
    k = (issuer_key["n"].bit_length() + 7) // 8
    em = b"\x00\x01" + b"\xff" * (k - len(digest) - 3) + b"\x00" + digest
    sig = pow(int.from_bytes(em, "big"), issuer_key["d"], issuer_key["n"]).to_bytes(k, "big")
    return pem("CERTIFICATE", seq(tbs, alg, tlv(0x03, b"\x00" + sig)))


def ca_cert_hash(cert_pem: str) -> str:
    """sha256 of the certificate's DER SubjectPublicKeyInfo, as kubeadm pins it."""
    der = unpem(cert_pem)
    _, s, e = der_read(der)
    tbs_start, ts, te = der_children(der, s, e)[0]
    kids = der_children(der, ts, te)
    if der[kids[0][0]] == 0xA0:
        kids = kids[1:]
    start, _, end = kids[5]
    return "sha256:" + hashlib.sha256(der[start:end]).hexdigest()


# -- kubeconfig files -------------------------------------------------------------------------


def kubeconfig(server: str, ca_pem: str, user: str, token: str) -> str:
    ca = base64.b64encode(ca_pem.encode()).decode()
    return (
        f"# {STANDIN}: kubeconfig written by the stand-in kubeadm\n"
        "apiVersion: v1\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {ca}\n    server: {server}\n  name: kubernetes\n"
        f"contexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\n"
        f"current-context: {user}@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n"
        f"- name: {user}\n  user:\n    token: {token}\n"
    )


def load_kubeconfig(path: str) -> dict:
    try:
        doc = yaml_load_all(read_text(path))[0]
    except FileNotFoundError:
        raise Fail(f"error: stat {path}: no such file or directory") from None
    ctx_name = doc.get("current-context")
    ctx = next((c["context"] for c in doc.get("contexts") or [] if c.get("name") == ctx_name), None) or {}
    cluster = next((c["cluster"] for c in doc.get("clusters") or [] if c.get("name") == ctx.get("cluster")), None)
    user = next((u for u in doc.get("users") or [] if u.get("name") == ctx.get("user")), None) or {}
    if not cluster:
        raise Fail("error: invalid configuration: no configuration has been provided")
    ca = base64.b64decode(cluster.get("certificate-authority-data") or "").decode()
    return {
        "server": cluster["server"],
        "ca": ca,
        "token": (user.get("user") or {}).get("token", ""),
        "user": user.get("name", ""),
    }


# -- HTTP client ------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("message", str(status)))
        self.status = status
        self.body = body


class _NamedContext(ssl.SSLContext):
    """Verifies the server certificate for `server_name`, not the host dialed (kubectl --tls-server-name)."""

    server_name: str | None = None

    def wrap_socket(self, sock, *args, server_hostname=None, **kwargs):
        return super().wrap_socket(sock, *args, server_hostname=self.server_name or server_hostname, **kwargs)


def api(
    server: str,
    method: str,
    path: str,
    body: dict | None = None,
    token: str = "",
    ca: str | None = None,
    timeout: float = 15,
    server_name: str | None = None,
) -> dict:
    if ca and server_name:
        ctx = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cadata=ca)
        ctx.server_name = server_name
    else:
        ctx = ssl.create_default_context(cadata=ca) if ca else ssl._create_unverified_context()  # noqa: S323
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.rstrip("/") + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"message": raw.decode(errors="replace")}
        raise ApiError(exc.code, parsed) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        host = server.split("://", 1)[-1]
        raise Fail(
            f"The connection to the server {host} was refused - did you specify the right host or port? ({reason})"
        ) from None
    try:
        return json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace")}


class Cluster:
    """A kubeconfig's view of the stand-in API, with kubectl's --server, --tls-server-name,
    --insecure-skip-tls-verify and --request-timeout overrides."""

    def __init__(self, path: str, flags: dict | None = None) -> None:
        self.conf = load_kubeconfig(path)
        flags = flags or {}
        self.conf["server"] = flag(flags, "--server", "-s") or self.conf["server"]
        self.server_name = flag(flags, "--tls-server-name")
        if flag(flags, "--insecure-skip-tls-verify") in ("", "true"):
            self.conf["ca"] = None
        self.timeout = go_duration(flag(flags, "--request-timeout", default="0") or "0") or None

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 15) -> dict:
        c = self.conf
        return api(c["server"], method, path, body, c["token"], c["ca"], self.timeout or timeout, self.server_name)


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


def preflight(errors: list[tuple[str, str]], ignore: list[str]) -> None:
    out("[preflight] Running pre-flight checks")
    ignored = {i.lower() for i in ignore}
    fatal = [(n, m) for n, m in errors if "all" not in ignored and n.lower() not in ignored]
    for n, m in errors:
        if (n, m) not in fatal:
            err(f"\t[WARNING {n}]: {m}")
    if fatal:
        lines = "\n".join(f"\t[ERROR {n}]: {m}" for n, m in fatal)
        raise Fail(
            "error execution phase preflight: [preflight] Some fatal errors occurred:\n" + lines + "\n"
            "[preflight] If you know what you are doing, you can make a check non-fatal with "
            "`--ignore-preflight-errors=...`\n" + STACK_HINT
        )


def common_preflight(skew_version: str | None) -> list[tuple[str, str]]:
    errors = []
    try:
        if read_text("/proc/sys/net/ipv4/ip_forward").strip() != "1":
            errors.append(
                ("FileContent--proc-sys-net-ipv4-ip_forward", "/proc/sys/net/ipv4/ip_forward contents are not set to 1")
            )
    except OSError:
        pass
    if os.path.exists(KUBELET_CONF):
        errors.append(("FileAvailable--etc-kubernetes-kubelet.conf", f"{KUBELET_CONF} already exists"))
    if os.path.exists(PKI + "/ca.crt"):
        errors.append(("FileAvailable--etc-kubernetes-pki-ca.crt", f"{PKI}/ca.crt already exists"))
    kubelet = kubelet_version()
    if skew_version and kubelet and minor(kubelet)[:2] > minor(skew_version)[:2]:
        errors.append(
            (
                "KubeletVersion",
                f"the kubelet version is higher than the control plane version. This is not a supported "
                f'version skew and may lead to a malfunctional cluster. Kubelet version: "{kubelet}" '
                f'Control plane version: "{skew_version.lstrip("v")}"',
            )
        )
    return errors


def kubelet_version() -> str | None:
    try:
        text = subprocess.run(["kubelet", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    m = re.search(r"v(\d+\.\d+\.\d+)", text)
    return m.group(1) if m else None


def read_configs(path: str, allowed: set[str]) -> dict[str, dict]:
    """kind -> document of a kubeadm config file, checked against this kubeadm's config APIs."""
    try:
        docs = yaml_load_all(read_text(path))
    except FileNotFoundError:
        raise Fail(f'unable to read config from "{path}" : open {path}: no such file or directory') from None
    except ValueError as exc:
        raise Fail(f"error converting YAML to JSON: {exc}") from None
    kinds: dict[str, dict] = {}
    ver = minor(VERSION)[1]
    for d in docs:
        if not isinstance(d, dict):
            continue
        kind, api_version = d.get("kind"), d.get("apiVersion", "")
        if not kind or not api_version:
            raise Fail("Object 'Kind' is missing in '" + json.dumps(d) + "'")
        if api_version.startswith("kubeadm.k8s.io/"):
            lo, hi = KUBEADM_APIS.get(api_version, (99, 0))
            if not (lo <= ver <= hi) or kind not in KUBEADM_KINDS:
                raise Fail(
                    f'no kind "{kind}" is registered for version "{api_version}" in scheme '
                    '"k8s.io/kubernetes/cmd/kubeadm/app/apis/kubeadm/scheme/scheme.go:31"'
                )
        kinds[kind] = d
    if not kinds.keys() & allowed:
        raise Fail(f"no {' or '.join(sorted(allowed))} found in {path}")
    return kinds


# -- kubeadm ----------------------------------------------------------------------------------

KUBEADM_VALUE_FLAGS = {
    "--config",
    "--kubeconfig",
    "--ttl",
    "-o",
    "--output",
    "--certificate-key",
    "--ignore-preflight-errors",
    "--kubernetes-version",
    "--control-plane-endpoint",
    "--pod-network-cidr",
    "--token",
    "--discovery-token-ca-cert-hash",
    "--description",
    "--apiserver-advertise-address",
    "--node-name",
    "--cri-socket",
    "--skip-phases",
    "--usages",
    "--groups",
    "--v",
    "-v",
    "--cert-dir",
}


def kubeadm(argv: list[str]) -> int:
    pos, flags = parse_args(argv, KUBEADM_VALUE_FLAGS)
    cmd = pos[:3]
    if not pos:
        out(f"kubeadm ({STANDIN}) {VERSION}: commands version, init, join, token, reset, upgrade, certs")
        return 0
    if pos[0] == "version":
        return kubeadm_version(flags)
    if pos[:3] == ["init", "phase", "upload-certs"]:
        return kubeadm_upload_certs(flags)
    if pos[0] == "init" and len(pos) == 1:
        return kubeadm_init(flags)
    if pos[0] == "join":
        return kubeadm_join(pos[1:], flags)
    if pos[0] == "token":
        return kubeadm_token(pos[1:], flags)
    if pos[0] == "reset":
        return kubeadm_reset(flags)
    if pos[0] == "upgrade" and len(pos) >= 2:
        return kubeadm_upgrade(pos[1:], flags)
    if pos[:2] == ["certs", "certificate-key"]:
        out(secrets.token_hex(32))
        return 0
    raise Fail(f"{STANDIN}: kubeadm {' '.join(cmd)} is not supported by the stand-in", 3)


def kubeadm_version(flags: dict) -> int:
    o = flag(flags, "-o", "--output", default="")
    info = {
        "major": "1",
        "minor": str(minor(VERSION)[1]),
        "gitVersion": "v" + VERSION,
        "gitCommit": "standin",
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "standin",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
    if o == "short":
        out("v" + VERSION)
    elif o == "json":
        out(json.dumps({"clientVersion": info}, indent=2))
    elif o == "yaml":
        out("clientVersion:\n" + "\n".join(f"  {k}: {v}" for k, v in info.items()))
    else:
        out(
            "kubeadm version: &version.Info{"
            + ", ".join(f'{k[0].upper() + k[1:]}:"{v}"' for k, v in info.items())
            + "}"
        )
    return 0


def _no_mix(flags: dict, allowed: set[str]) -> None:
    if "--config" in flags:
        extra = sorted(k.lstrip("-") for k in flags if k not in allowed | {"--config"})
        if extra:
            raise Fail(f"can not mix '--config' with arguments {extra}")


def kubeadm_init(flags: dict) -> int:
    _no_mix(
        flags,
        {
            "--upload-certs",
            "--ignore-preflight-errors",
            "--skip-phases",
            "--v",
            "-v",
            "--skip-token-print",
            "--dry-run",
        },
    )
    cfg = (
        read_configs(flags["--config"][-1], {"InitConfiguration", "ClusterConfiguration"})
        if "--config" in flags
        else {}
    )
    init = cfg.get("InitConfiguration", {})
    cluster = cfg.get("ClusterConfiguration", {})
    reg = init.get("nodeRegistration") or {}
    k8s = cluster.get("kubernetesVersion") or flag(flags, "--kubernetes-version") or "v" + VERSION
    if minor(k8s)[:2] > minor(VERSION)[:2]:
        raise Fail(
            f'the kubernetesVersion "{k8s}" is higher than the kubeadm version "v{VERSION}"; this kubeadm '
            f"can deploy control planes up to v{VERSION}"
        )
    if minor(k8s)[1] < minor(VERSION)[1] - 1:
        raise Fail(
            f"this version of kubeadm only supports deploying clusters with the control plane version "
            f">= 1.{minor(VERSION)[1] - 1}.0. Current version: {k8s}"
        )
    out(f"[init] Using Kubernetes version: {k8s}")
    ignore = (flag(flags, "--ignore-preflight-errors", default="") or "").split(",") + list(
        reg.get("ignorePreflightErrors") or []
    )
    errors = common_preflight(k8s)
    apiserver_manifest = MANIFESTS + "/kube-apiserver.yaml"
    if os.path.exists(apiserver_manifest):
        errors.insert(
            0, ("FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml", f"{apiserver_manifest} already exists")
        )
    if _port_in_use(6443):
        errors.insert(0, ("Port-6443", "Port 6443 is in use"))
    preflight(errors, ignore)
    endpoint = init.get("localAPIEndpoint") or {}
    ip = endpoint.get("advertiseAddress") or flag(flags, "--apiserver-advertise-address") or local_ip()
    port = int(endpoint.get("bindPort") or 6443)
    cpe = cluster.get("controlPlaneEndpoint") or flag(flags, "--control-plane-endpoint") or ""
    node = (reg.get("name") or flag(flags, "--node-name") or hostname()).lower()
    server = "https://" + (cpe if cpe else f"{ip}:{port}")
    if cpe and ":" not in cpe:
        server += ":6443"
    out('[certs] Using certificateDir folder "/etc/kubernetes/pki"')
    out('[certs] Generating "ca" certificate and key')
    ca_key = rsa_key()
    ca_pem = make_cert("kubernetes", ca_key, "kubernetes", ca_key, ca=True)
    write_file(PKI + "/ca.crt", ca_pem)
    write_file(PKI + "/ca.key", key_pem(ca_key), 0o600)
    sans = _sans(cluster, ip, cpe, node)
    out(
        f'[certs] Generating "apiserver" certificate and key\n[certs] apiserver serving cert is signed for DNS '
        f"names and IPs {sans}"
    )
    _serving_cert(ca_pem, ca_key, sans)
    _static_pods(port)
    out(f'[etcd] Creating static Pod manifest for local etcd in "{MANIFESTS}" (stand-in: a member in the API state)')
    networking = cluster.get("networking") or {}
    admin_token = secrets.token_hex(24)
    state = {
        "standin": STANDIN,
        "clusterName": cluster.get("clusterName") or "kubernetes",
        "kubernetesVersion": "v" + ".".join(map(str, minor(k8s))),
        "controlPlaneEndpoint": cpe,
        "networking": {
            "podSubnet": networking.get("podSubnet") or flag(flags, "--pod-network-cidr") or "",
            "serviceSubnet": networking.get("serviceSubnet") or "10.96.0.0/12",
            "dnsDomain": networking.get("dnsDomain") or "cluster.local",
        },
        "ca": {"cert": ca_pem, "key": key_pem(ca_key), "hash": ca_cert_hash(ca_pem)},
        "adminToken": admin_token,
        "tokens": {},
        "certificateKey": None,
        "nodes": {},
        "manifests": [],
        "upgrades": [],
        "events": [],
        "settings": {"nodeMonitorGracePeriodSeconds": DEFAULT_GRACE},
        "etcdMembers": [etcd_member(node, ip)],
        "primary": f"https://{ip}:{port}",
        "initConfiguration": init,
        "clusterConfiguration": cluster,
    }
    os.makedirs(API_DIR, exist_ok=True)
    write_file(STATE, json.dumps(state, indent=1), 0o600)
    write_file(API_CONFIG, json.dumps({"mode": "primary", "port": port, "node": node, "ip": ip}), 0o600)
    out('[control-plane] Creating static Pod manifest for "kube-apiserver" (stand-in: standin-apiserver.service)')
    systemctl("daemon-reload")
    systemctl("enable", API_UNIT)
    systemctl("restart", API_UNIT)
    local = f"https://127.0.0.1:{port}"
    _wait_ready(local, ca_pem)
    admin = kubeconfig(server, ca_pem, "kubernetes-admin", admin_token)
    write_file(ADMIN_CONF, admin, 0o600)
    write_file(KUBE + "/super-admin.conf", admin, 0o600)
    reg_result = api(
        local,
        "POST",
        "/standin/register",
        {
            "name": node,
            "ip": ip,
            "role": "control-plane",
            "kubeletVersion": kubelet_version() or VERSION,
            "controlPlaneVersion": state["kubernetesVersion"],
            "taints": reg.get("taints"),
            "apiServer": f"https://{ip}:{port}",
        },
        admin_token,
        ca_pem,
    )
    write_file(KUBELET_CONF, kubeconfig(server, ca_pem, f"system:node:{node}", reg_result["credential"]), 0o600)
    _kubelet_config(cfg)
    out("[kubelet-start] Starting the kubelet")
    systemctl("restart", "kubelet.service")
    out(
        "[mark-control-plane] Marking the node " + node + " as control-plane by adding the labels: "
        "[node-role.kubernetes.io/control-plane node.kubernetes.io/exclude-from-external-load-balancers]"
    )
    tokens = init.get("bootstrapTokens") or [{}]
    created = []
    for t in tokens:
        body = {
            "token": t.get("token") or flag(flags, "--token"),
            "ttl": t.get("ttl") or "24h0m0s",
            "description": t.get("description") or "",
            "usages": t.get("usages"),
            "groups": t.get("groups"),
        }
        created.append(api(local, "POST", "/standin/tokens", body, admin_token, ca_pem)["token"])
    key = None
    if "--upload-certs" in flags:
        key = init.get("certificateKey") or flag(flags, "--certificate-key") or secrets.token_hex(32)
        api(local, "POST", "/standin/upload-certs", {"key": key}, admin_token, ca_pem)
        out('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
        out("[upload-certs] Using certificate key:\n" + key)
    out(f"[bootstrap-token] Using token: {created[0]}")
    join = (
        f"kubeadm join {server.split('://', 1)[1]} --token {created[0]} \\\n\t--discovery-token-ca-cert-hash "
        f"{state['ca']['hash']} "
    )
    out(
        "\nYour Kubernetes control-plane has initialized successfully!\n\n"
        "To start using your cluster, you need to run the following as a regular user:\n\n"
        "  mkdir -p $HOME/.kube\n  sudo cp -i /etc/kubernetes/admin.conf $HOME/.kube/config\n"
        "  sudo chown $(id -u):$(id -g) $HOME/.kube/config\n\n"
        "Alternatively, if you are the root user, you can run:\n\n  export KUBECONFIG=/etc/kubernetes/admin.conf\n\n"
        "You should now deploy a pod network to the cluster.\n"
        'Run "kubectl apply -f [podnetwork].yaml" with one of the options listed at:\n'
        "  https://kubernetes.io/docs/concepts/cluster-administration/addons/\n"
    )
    if cpe and key:
        out(
            "You can now join any number of control-plane nodes running the following command on each as root:\n\n  "
            + join
            + f"\\\n\t--control-plane --certificate-key {key}\n"
        )
    out("Then you can join any number of worker nodes by running the following on each as root:\n\n" + join)
    return 0


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _static_pods(port: int) -> None:
    """Marker manifests, with the flags of the real ones that tools read (the API port, etcd's /health)."""
    flags = {
        "kube-apiserver": [f"--secure-port={port}", "--etcd-servers=https://127.0.0.1:2379"],
        "etcd": [f"--listen-metrics-urls=http://127.0.0.1:{ETCD_METRICS_PORT}", f"--data-dir={ETCD_DATA}"],
    }
    for m in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        command = "".join(f"    - {a}\n" for a in [m, *flags.get(m, [])])
        write_file(
            f"{MANIFESTS}/{m}.yaml",
            f"# {STANDIN}: marker for the static pod {m}\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {m}\n"
            f"  namespace: kube-system\nspec:\n  containers:\n  - name: {m}\n    command:\n{command}",
        )


def etcd_member(name: str, ip: str) -> dict:
    """A stand-in etcd member as `etcdctl member list` would show it."""
    return {
        "name": name,
        "id": int.from_bytes(hashlib.sha256(f"{name}/{ip}".encode()).digest()[:8], "big"),
        "peerURLs": [f"https://{ip}:2380"],
        "clientURLs": [f"https://{ip}:2379"],
    }


def _sans(cluster: dict, ip: str, cpe: str, node: str) -> list[str]:
    svc = ((cluster.get("networking") or {}).get("serviceSubnet") or "10.96.0.0/12").split(",")[0]
    sans = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "localhost",
        node,
        ip,
        "127.0.0.1",
        str(next(ipaddress.ip_network(svc, strict=False).hosts())),
    ]
    if cpe:
        sans.append(cpe.rsplit(":", 1)[0] if cpe.count(":") == 1 else cpe)
    sans += list((cluster.get("apiServer") or {}).get("certSANs") or [])
    return list(dict.fromkeys(sans))


def _serving_cert(ca_pem: str, ca_key: dict, sans: list[str]) -> None:
    key = rsa_key()
    write_file(
        PKI + "/apiserver.crt", make_cert("kube-apiserver", key, "kubernetes", ca_key, ca=False, sans=sans, days=365)
    )
    write_file(PKI + "/apiserver.key", key_pem(key), 0o600)


def _kubelet_config(cfg: dict) -> None:
    kc = cfg.get("KubeletConfiguration") or {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
    }
    write_file(KUBELET_DIR + "/config.yaml", f"# {STANDIN}\n" + json.dumps(kc, indent=1) + "\n")


def _wait_ready(server: str, ca: str, timeout: float = 60) -> None:
    deadline = now() + timeout
    last = ""
    while now() < deadline:
        try:
            if api(server, "GET", "/readyz", ca=ca, timeout=3).get("raw") == "ok":
                return
        except (Fail, ApiError) as exc:
            last = str(exc)
        time.sleep(0.3)
    raise Fail(f"[wait-control-plane] the stand-in API server did not become ready at {server}: {last}")


def kubeadm_upload_certs(flags: dict) -> int:
    if "--upload-certs" not in flags:
        out("[upload-certs] Skipping phase. Please see --upload-certs")
        return 0
    c = Cluster(flag(flags, "--kubeconfig", default=ADMIN_CONF))
    key = flag(flags, "--certificate-key") or secrets.token_hex(32)
    if "--config" in flags:
        key = (
            read_configs(flags["--config"][-1], {"InitConfiguration", "ClusterConfiguration"})
            .get("InitConfiguration", {})
            .get("certificateKey")
            or key
        )
    c.call("POST", "/standin/upload-certs", {"key": key})
    out('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
    out("[upload-certs] Using certificate key:\n" + key)
    return 0


def kubeadm_token(pos: list[str], flags: dict) -> int:
    if not pos:
        raise Fail("Error: requires a subcommand: create, delete, generate, list")
    sub = pos[0]
    if sub == "generate":
        out(_new_token())
        return 0
    c = Cluster(flag(flags, "--kubeconfig", default=ADMIN_CONF))
    if sub == "create":
        body = {
            "token": pos[1] if len(pos) > 1 else None,
            "ttl": flag(flags, "--ttl", default="24h0m0s"),
            "description": flag(flags, "--description", default=""),
            "usages": (flag(flags, "--usages") or "").split(",") if "--usages" in flags else None,
            "groups": (flag(flags, "--groups") or "").split(",") if "--groups" in flags else None,
        }
        go_duration(body["ttl"])
        tok = _api_or_fail(c, "POST", "/standin/tokens", body)["token"]
        if "--print-join-command" in flags:
            info = c.call("GET", "/standin/cluster-info")
            line = f"kubeadm join {info['endpoint']} --token {tok} --discovery-token-ca-cert-hash {info['caCertHash']} "
            if flag(flags, "--certificate-key"):
                line += f"--control-plane --certificate-key {flag(flags, '--certificate-key')} "
            out(line)
        else:
            out(tok)
        return 0
    if sub == "delete":
        if len(pos) < 2:
            raise Fail("missing subcommand; 'token delete' is missing token of form \"[a-z0-9]{6}\"")
        for t in pos[1:]:
            tid = t.split(".")[0]
            try:
                c.call("DELETE", "/standin/tokens/" + tid)
            except ApiError:
                raise Fail(
                    f'failed to delete bootstrap token "{tid}": secrets "bootstrap-token-{tid}" not found'
                ) from None
            out(f'bootstrap token "{tid}" deleted')
        return 0
    if sub == "list":
        toks = c.call("GET", "/standin/tokens")["items"]
        if flag(flags, "-o", "--output") == "json":
            for t in toks:
                out(
                    json.dumps(
                        {"kind": "BootstrapToken", "apiVersion": "output.kubeadm.k8s.io/v1alpha3", **t}, indent=4
                    )
                )
        else:
            out(
                "TOKEN                     TTL         EXPIRES                USAGES                   DESCRIPTION"
                "                                                EXTRA GROUPS"
            )
            for t in toks:
                out(
                    f"{t['token']:<25} {t.get('ttl', '<forever>'):<11} {t.get('expires', '<never>'):<22} "
                    f"{','.join(t['usages']):<24} {t.get('description') or '<none>':<58} {','.join(t['groups'])}"
                )
        return 0
    raise Fail(f'Error: unknown command "{sub}" for "kubeadm token"')


def _new_token() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return (
        "".join(secrets.choice(alphabet) for _ in range(6)) + "." + "".join(secrets.choice(alphabet) for _ in range(16))
    )


def _api_or_fail(c: Cluster, method: str, path: str, body: dict | None = None) -> dict:
    try:
        return c.call(method, path, body)
    except ApiError as exc:
        raise Fail(exc.body.get("message", str(exc))) from None


def kubeadm_join(pos: list[str], flags: dict) -> int:
    _no_mix(flags, {"--ignore-preflight-errors", "--skip-phases", "--v", "-v", "--dry-run"})
    if "--config" in flags:
        cfg = read_configs(flags["--config"][-1], {"JoinConfiguration"})
        join = cfg.get("JoinConfiguration")
        if not join:
            raise Fail(f"no JoinConfiguration found in {flags['--config'][-1]}")
    else:
        join = {
            "discovery": {
                "bootstrapToken": {
                    "apiServerEndpoint": pos[0] if pos else "",
                    "token": flag(flags, "--token", default=""),
                    "caCertHashes": flags.get("--discovery-token-ca-cert-hash", []),
                    "unsafeSkipCAVerification": "--discovery-token-unsafe-skip-ca-verification" in flags,
                }
            },
            "nodeRegistration": {"name": flag(flags, "--node-name")},
        }
        if "--control-plane" in flags:
            join["controlPlane"] = {
                "certificateKey": flag(flags, "--certificate-key"),
                "localAPIEndpoint": {"advertiseAddress": flag(flags, "--apiserver-advertise-address")},
            }
        cfg = {}
    reg = join.get("nodeRegistration") or {}
    bt = (join.get("discovery") or {}).get("bootstrapToken") or {}
    if not bt:
        raise Fail(f"{STANDIN}: only discovery.bootstrapToken is supported by the stand-in", 3)
    token = bt.get("token") or (join.get("discovery") or {}).get("tlsBootstrapToken") or ""
    hashes = list(bt.get("caCertHashes") or [])
    if not hashes and not bt.get("unsafeSkipCAVerification"):
        raise Fail(
            'discovery.bootstrapToken: Invalid value: "": using token-based discovery without caCertHashes '
            "can be unsafe. Set unsafeSkipCAVerification as true in your kubeadm config file or pass "
            "--discovery-token-unsafe-skip-ca-verification flag to continue"
        )
    m = TOKEN_RE.match(token or "")
    if not m:
        raise Fail(f'discovery.bootstrapToken.token: Invalid value: "{token}": the bootstrap token is invalid')
    cp = join.get("controlPlane")
    ignore = (flag(flags, "--ignore-preflight-errors", default="") or "").split(",") + list(
        reg.get("ignorePreflightErrors") or []
    )
    errors = common_preflight(None)
    if cp is not None and _port_in_use(6443):
        errors.append(("Port-6443", "Port 6443 is in use"))
    preflight(errors, ignore)
    endpoint = bt.get("apiServerEndpoint") or ""
    server = "https://" + endpoint
    out(f'[discovery] Trying to connect to API Server "{endpoint}"')
    try:
        info = api(server, "GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info")
    except ApiError as exc:
        raise Fail(
            f"error execution phase preflight: couldn't validate the identity of the API Server: {exc}"
        ) from None
    kc_text = info["data"]["kubeconfig"]
    jws = info["data"].get("jws-kubeconfig-" + m.group(1))
    if not jws or not _jws_ok(jws, kc_text, m.group(1), m.group(2)):
        raise Fail(
            "error execution phase preflight: couldn't validate the identity of the API Server: could not find "
            f'a JWS signature in the cluster-info ConfigMap for token ID "{m.group(1)}"\n{STACK_HINT}'
        )
    ca = base64.b64decode(re.search(r"certificate-authority-data:\s*(\S+)", kc_text).group(1)).decode()
    actual = ca_cert_hash(ca)
    if hashes and actual not in [h if h.startswith("sha256:") else "sha256:" + h for h in hashes]:
        raise Fail(
            "error execution phase preflight: couldn't validate the identity of the API Server: cluster CA "
            f'found in cluster-info ConfigMap is invalid: none of the public keys "{actual}" are pinned\n' + STACK_HINT
        )
    out(f'[discovery] Successfully established connection with API Server "{endpoint}"')
    node = (reg.get("name") or hostname()).lower()
    ip = ((cp or {}).get("localAPIEndpoint") or {}).get("advertiseAddress") or local_ip()
    body = {
        "name": node,
        "ip": ip,
        "role": "control-plane" if cp is not None else "worker",
        "kubeletVersion": kubelet_version() or VERSION,
        "taints": reg.get("taints"),
        "certificateKey": (cp or {}).get("certificateKey"),
    }
    try:
        result = api(server, "POST", "/standin/join", body, token, ca, timeout=30)
    except ApiError as exc:
        raise Fail(exc.body.get("message", str(exc)) + "\n" + STACK_HINT) from None
    if cp is not None:
        write_file(PKI + "/ca.crt", ca)
        write_file(PKI + "/ca.key", result["caKey"], 0o600)
        port = int(((cp.get("localAPIEndpoint") or {}).get("bindPort")) or 6443)
        cluster = result.get("clusterConfiguration") or {}
        _serving_cert(
            ca, key_from_pem(result["caKey"]), _sans(cluster, ip, result.get("controlPlaneEndpoint", ""), node)
        )
        _static_pods(port)
        os.makedirs(API_DIR, exist_ok=True)
        out("[etcd] Announced new etcd member joining to the existing etcd cluster")
        out('[etcd] Creating static Pod manifest for "etcd"')
        write_file(
            API_CONFIG,
            json.dumps({"mode": "follower", "port": port, "primary": result["primary"], "node": node, "ip": ip}),
            0o600,
        )
        systemctl("daemon-reload")
        systemctl("enable", API_UNIT)
        systemctl("restart", API_UNIT)
        _wait_ready(f"https://127.0.0.1:{port}", ca)
        write_file(ADMIN_CONF, kubeconfig(server, ca, "kubernetes-admin", result["adminToken"]), 0o600)
    else:
        write_file(PKI + "/ca.crt", ca)
    hold("join-before-kubelet-conf")
    write_file(KUBELET_CONF, kubeconfig(server, ca, f"system:node:{node}", result["credential"]), 0o600)
    _kubelet_config(cfg)
    hold("join-after-kubelet-conf")
    out("[kubelet-start] Starting the kubelet")
    systemctl("restart", "kubelet.service")
    if cp is not None:
        out(
            "\nThis node has joined the cluster and a new control plane instance was created:\n\n"
            "* Certificate signing request was sent to apiserver and approval was received.\n"
            "* The Kubelet was informed of the new secure connection details.\n"
            "* Control plane label and taint were applied to the new node.\n"
            "* The Kubernetes control plane instances scaled up.\n* A new etcd member was added to the local/stacked "
            "etcd cluster.\n"
        )
    else:
        out(
            "\nThis node has joined the cluster:\n* Certificate signing request was sent to apiserver and a response "
            "was received.\n* The Kubelet was informed of the new secure connection details.\n\n"
            "Run 'kubectl get nodes' on the control-plane to see this node join the cluster.\n"
        )
    return 0


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def jws_sign(payload: str, tid: str, secret: str) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "kid": tid}).encode())
    sig = hmac.new(secret.encode(), (header + "." + _b64url(payload.encode())).encode(), hashlib.sha256).digest()
    return header + ".." + _b64url(sig)


def _jws_ok(jws: str, payload: str, tid: str, secret: str) -> bool:
    return hmac.compare_digest(jws, jws_sign(payload, tid, secret))


def kubeadm_reset(flags: dict) -> int:
    if "-f" not in flags and "--force" not in flags:
        sys.stdout.write("[reset] Are you sure you want to proceed? [y/N]: ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() != "y":
            raise Fail("won't proceed; the user didn't answer (Y|y) in order to continue")
    out("[preflight] Running pre-flight checks")
    if os.path.exists(KUBELET_CONF):
        try:
            conf = load_kubeconfig(KUBELET_CONF)
            node = conf["user"].removeprefix("system:node:")
            api(conf["server"], "POST", "/standin/reset", {"name": node}, conf["token"], conf["ca"], timeout=10)
        except (Fail, ApiError, KeyError) as exc:
            err(f"W0000 00:00:00.000000 reset.go] [reset] Unable to reach the stand-in API to record the reset: {exc}")
    if os.path.exists(MANIFESTS + "/etcd.yaml"):
        _remove_etcd_member()
    else:
        out("[reset] No etcd config found. Assuming external etcd")
        out("[reset] Please, manually reset etcd to prevent further issues")
    out("[reset] Stopping the kubelet service")
    systemctl("stop", "kubelet.service")
    if os.path.exists(API_CONFIG):
        systemctl("disable", "--now", API_UNIT)
    out("[reset] Deleting contents of directories: [/etc/kubernetes/manifests /var/lib/kubelet /etc/kubernetes/pki]")
    for d in (MANIFESTS, PKI, API_DIR, os.path.dirname(API_CONFIG)):
        shutil.rmtree(d, ignore_errors=True)
    for f in (ADMIN_CONF, KUBELET_CONF, KUBE + "/super-admin.conf", KUBELET_DIR + "/config.yaml"):
        if os.path.exists(f):
            os.unlink(f)
    out(
        "[reset] Deleting files: [/etc/kubernetes/admin.conf /etc/kubernetes/super-admin.conf "
        "/etc/kubernetes/kubelet.conf]"
    )
    out("\nThe reset process does not clean CNI configuration. To do so, you must remove /etc/cni/net.d\n")
    return 0


def _local_member() -> tuple[str, str]:
    """This control plane's node name and address, as its init/join recorded them."""
    try:
        with open(API_CONFIG) as f:
            conf = json.load(f)
    except (OSError, ValueError):
        conf = {}
    name = conf.get("node")
    if not name and os.path.exists(KUBELET_CONF):
        try:
            name = load_kubeconfig(KUBELET_CONF)["user"].removeprefix("system:node:")
        except (Fail, KeyError, OSError):
            name = None
    return (name or hostname()), conf.get("ip") or local_ip()


def _remove_etcd_member() -> None:
    """kubeadm reset's remove-etcd-member phase: take this control plane's member out of the etcd
    cluster (not the only member), then empty the etcd data directory; a failure only warns."""
    name, ip = _local_member()
    path = ADMIN_CONF if os.path.exists(ADMIN_CONF) else KUBELET_CONF
    try:
        conf = load_kubeconfig(path)
        body = {"name": name, "peerURL": f"https://{ip}:2380"}
        api(conf["server"], "POST", "/standin/etcd/remove", body, conf["token"], conf["ca"], timeout=10)
    except (Fail, ApiError, KeyError, OSError) as exc:
        err(
            f"W0000 00:00:00.000000 removeetcdmember.go] [reset] Failed to remove etcd member: {exc}, please "
            "manually remove this etcd member using etcdctl"
        )
        return
    if os.path.isdir(ETCD_DATA):
        for entry in os.listdir(ETCD_DATA):
            target = os.path.join(ETCD_DATA, entry)
            shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else os.unlink(target)
    out(f"[reset] Deleted contents of the etcd data directory: {ETCD_DATA}")


def kubeadm_upgrade(pos: list[str], flags: dict) -> int:
    sub = pos[0]
    if sub == "node":
        return _upgrade_node(flags)
    c = Cluster(flag(flags, "--kubeconfig", default=ADMIN_CONF))
    info = _api_or_fail(c, "GET", "/standin/cluster-info")
    cluster_version = info["kubernetesVersion"]
    if sub == "plan":
        out(
            "[preflight] Running pre-flight checks.\n[upgrade/config] Reading configuration from the cluster...\n"
            "[upgrade] Running cluster health checks\n[upgrade] Fetching available versions to upgrade to"
        )
        out(f"[upgrade/versions] Cluster version: {cluster_version}\n[upgrade/versions] kubeadm version: v{VERSION}")
        target = "v" + VERSION
        if minor(target) > minor(cluster_version) and minor(target)[1] - minor(cluster_version)[1] <= 1:
            out(
                f"[upgrade/versions] Target version: {target}\n\nUpgrade to the latest stable version:\n\n"
                f"COMPONENT                 NODE      CURRENT   TARGET\nkube-apiserver            -         "
                f"{cluster_version}   {target}\n\nYou can now apply the upgrade by executing the following command:"
                f"\n\n\tkubeadm upgrade apply {target}\n"
            )
        else:
            out("\nAwesome, you're up-to-date! Enjoy!")
        return 0
    if sub == "apply":
        if len(pos) < 2:
            raise Fail("missing version argument")
        target = pos[1] if pos[1].startswith("v") else "v" + pos[1]
        if not os.path.exists(MANIFESTS + "/kube-apiserver.yaml"):
            raise Fail(
                f"[upgrade/health] FATAL: this is not a control-plane node: {MANIFESTS}/kube-apiserver.yaml is missing"
            )
        out(f'[upgrade/version] You have chosen to change the cluster version to "{target}"')
        out(f"[upgrade/versions] Cluster version: {cluster_version}\n[upgrade/versions] kubeadm version: v{VERSION}")
        problems = _version_policy(cluster_version, target)
        if problems:
            raise Fail(
                "[upgrade/version] FATAL: the --version argument is invalid due to these fatal errors:\n\n"
                + "\n".join(f"\t- {p}" for p in problems)
                + "\n\nPlease fix the misalignments highlighted "
                "above and try upgrading again\n" + STACK_HINT
            )
        not_ready = [
            n["metadata"]["name"]
            for n in c.call("GET", "/api/v1/nodes")["items"]
            if "node-role.kubernetes.io/control-plane" in n["metadata"]["labels"] and not _ready(n)
        ]
        if not_ready:
            raise Fail(f"[upgrade/health] FATAL: there are NotReady control-planes in the cluster: {not_ready}")
        if "-y" not in flags and "--yes" not in flags and "-f" not in flags and "--force" not in flags:
            sys.stdout.write("[upgrade/confirm] Are you sure you want to proceed with the upgrade? [y/N]: ")
            sys.stdout.flush()
            if sys.stdin.readline().strip().lower() != "y":
                raise Fail("won't proceed; the user didn't answer (Y|y) in order to continue")
        node = (
            load_kubeconfig(KUBELET_CONF)["user"].removeprefix("system:node:")
            if os.path.exists(KUBELET_CONF)
            else hostname()
        )
        _api_or_fail(c, "POST", "/standin/upgrade", {"version": target, "node": node})
        out(
            f'[upgrade/successful] SUCCESS! Your cluster was upgraded to "{target}". Enjoy!\n\n'
            "[upgrade/kubelet] Now that your control plane is upgraded, please proceed with upgrading your kubelets "
            "if you haven't already done so."
        )
        return 0
    raise Fail(f'Error: unknown command "{sub}" for "kubeadm upgrade"')


def _version_policy(cluster: str, target: str) -> list[str]:
    cv, tv, kv = minor(cluster), minor(target), minor(VERSION)
    problems = []
    if tv[1] > kv[1]:
        problems.append(
            f'Specified version to upgrade to "{target}" is at least one minor release higher than the '
            f"kubeadm minor release ({tv[1]} > {kv[1]}). Such an upgrade is not supported"
        )
    if tv[1] - cv[1] > 1:
        problems.append(
            f'Specified version to upgrade to "{target}" is too high; kubeadm can upgrade only 1 minor '
            "version at a time"
        )
    if tv[1] < cv[1]:
        if cv[1] - tv[1] > 1:
            problems.append(
                f'Specified version to downgrade to "{target}" is too low; kubeadm can downgrade only 1 '
                "minor version at a time"
            )
        problems.append(
            f'Specified version to downgrade to "{target}" is at least one minor release lower than the '
            f"kubeadm minor release ({tv[1]} < {kv[1]}). Such a downgrade is not supported"
            if tv[1] < kv[1]
            else f'Specified version to downgrade to "{target}" is lower than the '
            f'cluster version "{cluster}" by a minor release; such a downgrade is not supported'
        )
    if tv > kv and not problems:
        problems.append(
            f'Specified version to upgrade to "{target}" is higher than the kubeadm version "v{VERSION}". '
            "Upgrade kubeadm first using the tool you used to install kubeadm"
        )
    return problems


def _upgrade_node(flags: dict) -> int:
    if not os.path.exists(KUBELET_CONF):
        raise Fail(f"error execution phase preflight: unable to read {KUBELET_CONF}: this node has not joined")
    conf = load_kubeconfig(KUBELET_CONF)
    node = conf["user"].removeprefix("system:node:")
    info = api(conf["server"], "GET", "/standin/cluster-info", token=conf["token"], ca=conf["ca"])
    version = info["kubernetesVersion"]
    if minor(version) > minor(VERSION):
        raise Fail(
            f'the cluster version "{version}" is higher than the kubeadm version "v{VERSION}"; upgrade kubeadm first'
        )
    out("[upgrade] Reading configuration from the cluster...\n[preflight] Running pre-flight checks")
    control_plane = os.path.exists(MANIFESTS + "/kube-apiserver.yaml")
    if control_plane:
        out(f'[upgrade/control-plane] Upgrading your Static Pod-hosted control plane instance to version "{version}"')
    else:
        out("[upgrade] Skipping phase. Not a control plane node.")
    api(
        conf["server"],
        "POST",
        "/standin/upgrade-node",
        {"name": node, "controlPlane": control_plane},
        conf["token"],
        conf["ca"],
    )
    out(
        "[upgrade/kubelet-config] The kubelet configuration for this node was successfully upgraded!\n"
        "[upgrade] The configuration for this node was successfully upgraded!\n"
        "[upgrade] Now you should go ahead and upgrade the kubelet package using your package manager."
    )
    return 0


# -- kubectl ----------------------------------------------------------------------------------

KUBECTL_VALUE_FLAGS = {
    "--kubeconfig",
    "-o",
    "--output",
    "-f",
    "--filename",
    "--timeout",
    "-n",
    "--namespace",
    "--grace-period",
    "--raw",
    "-l",
    "--selector",
    "--pod-selector",
    "--context",
    "--server",
    "--request-timeout",
    "--skew-max",
    "--tls-server-name",
    "-s",
}


def kubectl(argv: list[str]) -> int:
    pos, flags = parse_args(argv, KUBECTL_VALUE_FLAGS)
    if not pos:
        out(f"kubectl ({STANDIN}) {VERSION}: get, cordon, uncordon, drain, delete node, apply, version")
        return 0
    verb = pos[0]
    if verb == "version":
        client = {"major": "1", "minor": str(minor(VERSION)[1]), "gitVersion": "v" + VERSION}
        if "--client" in flags:
            out(
                json.dumps({"clientVersion": client}, indent=2)
                if flag(flags, "-o", "--output") == "json"
                else f"Client Version: v{VERSION}"
            )
            return 0
    path = flag(flags, "--kubeconfig") or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    c = Cluster(path, flags)
    if verb == "version":
        server = c.call("GET", "/version")
        out(
            json.dumps({"clientVersion": client, "serverVersion": server}, indent=2)
            if flag(flags, "-o", "--output") == "json"
            else f"Client Version: v{VERSION}\nServer Version: {server['gitVersion']}"
        )
        return 0
    if verb == "get" and "--raw" in flags:
        try:
            res = c.call("GET", flag(flags, "--raw"))
        except ApiError as exc:
            raise Fail(f"Error from server ({exc.body.get('reason', 'InternalError')}): {exc}") from None
        sys.stdout.write(res["raw"] if "raw" in res else json.dumps(res))
        sys.stdout.flush()
        return 0
    if verb == "get" and len(pos) >= 2 and pos[1] in ("nodes", "node", "no"):
        return _get_nodes(c, pos[2:], flag(flags, "-o", "--output", default=""))
    if verb in ("cordon", "uncordon") and len(pos) == 2:
        return _cordon(c, pos[1], verb == "cordon")
    if verb == "drain" and len(pos) == 2:
        return _drain(c, pos[1], flags)
    if verb == "delete" and len(pos) >= 3 and pos[1] in ("node", "nodes", "no"):
        for n in pos[2:]:
            _node_call(c, "DELETE", n)
            out(f'node "{n}" deleted')
        return 0
    if verb == "apply":
        return _apply(c, flags)
    raise Fail(f"{STANDIN}: kubectl {' '.join(pos[:3])} is not supported by the stand-in", 3)


def _node_call(c: Cluster, method: str, name: str, body: dict | None = None) -> dict:
    try:
        return c.call(method, "/api/v1/nodes/" + name, body)
    except ApiError as exc:
        if exc.status == 404:
            raise Fail(f'Error from server (NotFound): nodes "{name}" not found') from None
        raise Fail(f"Error from server: {exc}") from None


def _ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def _get_nodes(c: Cluster, names: list[str], output: str) -> int:
    items = [_node_call(c, "GET", n) for n in names] if names else c.call("GET", "/api/v1/nodes")["items"]
    if output == "json":
        doc = (
            items[0]
            if len(names) == 1
            else {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
        )
        out(json.dumps(doc, indent=4))
        return 0
    if output.startswith("jsonpath") or output == "yaml":
        raise Fail(f"{STANDIN}: -o {output} is not supported by the stand-in; use -o json", 3)
    out(f"{'NAME':<24}{'STATUS':<28}{'ROLES':<16}{'AGE':<8}VERSION")
    for n in items:
        status = "Ready" if _ready(n) else "NotReady"
        if n["spec"].get("unschedulable"):
            status += ",SchedulingDisabled"
        roles = ",".join(k.split("/", 1)[1] for k in n["metadata"]["labels"] if k.startswith("node-role.")) or "<none>"
        age = int(now() - n["metadata"].get("creationTimestampUnix", now()))
        out(
            f"{n['metadata']['name']:<24}{status:<28}{roles:<16}{str(age) + 's':<8}"
            f"{n['status']['nodeInfo']['kubeletVersion']}"
        )
    return 0


def _cordon(c: Cluster, name: str, on: bool) -> int:
    node = _node_call(c, "GET", name)
    word = "cordoned" if on else "uncordoned"
    if bool(node["spec"].get("unschedulable")) == on:
        out(f"node/{name} already {word}")
        return 0
    _node_call(c, "PATCH", name, {"spec": {"unschedulable": on}})
    out(f"node/{name} {word}")
    return 0


def _drain(c: Cluster, name: str, flags: dict) -> int:
    timeout = go_duration(flag(flags, "--timeout", default="0s"))
    _cordon(c, name, True)
    pods = c.call("GET", "/standin/pods?node=" + name)
    ds = ", ".join(pods["daemonset"])
    if pods["daemonset"] and "--ignore-daemonsets" not in flags:
        msg = f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): {ds}"
        err(f'error: unable to drain node "{name}" due to error: {msg}, continuing command...')
        err(f"There are pending nodes to be drained:\n {name}")
        raise Fail(msg)
    if pods["daemonset"]:
        err(f"Warning: ignoring DaemonSet-managed Pods: {ds}")
    if pods["emptyDir"] and "--delete-emptydir-data" not in flags:
        msg = "cannot delete Pods with local storage (use --delete-emptydir-data to override): " + ", ".join(
            pods["emptyDir"]
        )
        err(f'error: unable to drain node "{name}" due to error: {msg}, continuing command...')
        err(f"There are pending nodes to be drained:\n {name}")
        raise Fail(msg)
    start = now()
    stuck = pods["stuck"]
    for p in stuck:
        out(f"evicting pod {p}")
    while stuck:
        if timeout and now() - start >= timeout:
            errs = ", ".join(
                f'error when evicting pods/"{p.split("/")[-1]}" -n "{p.split("/")[0]}": global timeout '
                f"reached: {go_duration_str(timeout)}"
                for p in stuck
            )
            err(f'There are pending pods in node "{name}" when an error occurred: [{errs}]')
            for p in stuck:
                err(f"pod/{p.split('/')[-1]}")
            err(f'error: unable to drain node "{name}" due to error: [{errs}], continuing command...')
            err(f"There are pending nodes to be drained:\n {name}")
            raise Fail(f"error: [{errs}]")
        for p in stuck:
            err(
                f'error when evicting pods/"{p.split("/")[-1]}" -n "{p.split("/")[0]}" (will retry after 5s): '
                "Cannot evict pod as it would violate the pod's disruption budget."
            )
        wait = 5.0 if not timeout else max(0.0, min(5.0, timeout - (now() - start)))
        time.sleep(wait)
        stuck = [p for p in c.call("GET", "/standin/pods?node=" + name)["stuck"] if p in stuck]
    for p in pods["stuck"]:
        out(f"pod/{p.split('/')[-1]} evicted")
    out(f"node/{name} drained")
    return 0


def _apply(c: Cluster, flags: dict) -> int:
    sources = flags.get("-f", []) + flags.get("--filename", [])
    if not sources:
        raise Fail("error: must specify one of -f and -k")
    for src in sources:
        body: dict = {"source": src}
        objects = []
        if "://" not in src:
            try:
                text = read_text(src)
            except OSError as exc:
                raise Fail(f'error: the path "{src}" does not exist ({exc.strerror})') from None
            body["sha256"] = hashlib.sha256(text.encode()).hexdigest()
            for doc in re.split(r"^---\s*$", text, flags=re.M):
                kind = re.search(r"^kind:\s*(\S+)", doc, re.M)
                nm = re.search(r"^metadata:\s*\n(?:\s+.*\n)*?\s+name:\s*(\S+)", doc, re.M)
                if kind and nm:
                    objects.append(f"{kind.group(1).lower()}/{nm.group(1)}")
        body["objects"] = objects
        c.call("POST", "/standin/manifests", body)
        for o in objects or [f"manifest {src}"]:
            out(f"{o} created")
    return 0


# -- kubelet ----------------------------------------------------------------------------------


def kubelet(argv: list[str]) -> int:
    if "--version" in argv or "--version=true" in argv:
        out(f"Kubernetes v{VERSION}")
        return 0
    if not os.path.exists(KUBELET_CONF):
        raise Fail(
            f'E0000 run.go:74] "command failed" err="failed to load kubelet config file, path: '
            f'{KUBELET_DIR}/config.yaml, error: open {KUBELET_DIR}/config.yaml: no such file or directory" '
            f"({STANDIN}: this node has not joined a cluster)"
        )
    conf = load_kubeconfig(KUBELET_CONF)
    node = conf["user"].removeprefix("system:node:")
    err(f"I0000 kubelet ({STANDIN}) v{VERSION} starting for node {node}, API {conf['server']}")
    while True:
        try:
            api(
                conf["server"],
                "POST",
                "/standin/heartbeat",
                {"name": node, "kubeletVersion": VERSION},
                conf["token"],
                conf["ca"],
                timeout=5,
            )
        except (Fail, ApiError) as exc:
            err(f"E0000 kubelet_node_status.go] Error updating node status, will retry: {exc}")
        time.sleep(3)


# -- the stand-in API server ------------------------------------------------------------------


class Store:
    """The cluster state on the primary, one JSON file, every change written through."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        with open(STATE) as f:
            self.state = json.load(f)

    def save(self) -> None:
        write_file(STATE, json.dumps(self.state, indent=1), 0o600)

    def event(self, kind: str, **fields) -> None:
        self.state["events"].append({"time": now(), "event": kind, **fields})


def node_object(st: dict, n: dict) -> dict:
    grace = st["settings"].get("nodeMonitorGracePeriodSeconds", DEFAULT_GRACE)
    beat = n.get("lastHeartbeat", 0)
    if now() - beat > grace:
        cond = ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    elif not st["manifests"]:
        cond = (
            "False",
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false "
            "reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
        )
    else:
        cond = ("True", "KubeletReady", "kubelet is posting ready status")
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": n["name"],
        "kubernetes.io/os": "linux",
        "standin.orbiter.test/stand-in": "true",
    }
    taints = list(n.get("taints") or [])
    if n["role"] == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    if n.get("unschedulable"):
        taints.append(
            {
                "effect": "NoSchedule",
                "key": "node.kubernetes.io/unschedulable",
                "timeAdded": rfc3339(n.get("cordonedAt", now())),
            }
        )
    spec: dict = {"podCIDR": n.get("podCIDR", "")}
    if taints:
        spec["taints"] = taints
    if n.get("unschedulable"):
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": n["name"],
            "labels": labels,
            "creationTimestamp": rfc3339(n["created"]),
            "creationTimestampUnix": n["created"],
            "annotations": {"standin.orbiter.test/note": STANDIN},
        },
        "spec": spec,
        "status": {
            "addresses": [{"type": "InternalIP", "address": n["ip"]}, {"type": "Hostname", "address": n["name"]}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": cond[0],
                    "reason": cond[1],
                    "message": cond[2],
                    "lastHeartbeatTime": rfc3339(beat),
                    "lastTransitionTime": rfc3339(n["created"]),
                }
            ],
            "nodeInfo": {
                "kubeletVersion": "v" + n["kubeletVersion"].lstrip("v"),
                "kubeProxyVersion": st["kubernetesVersion"],
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "standin://0",
            },
        },
    }


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "standin-apiserver"
    store: Store | None = None
    follower_primary: str | None = None
    ca_pem: str = ""

    def log_message(self, fmt: str, *args) -> None:  # noqa: D102
        err("standin-apiserver: " + fmt % args)

    def _send(self, status: int, obj, raw: bool = False) -> None:
        body = obj.encode() if raw else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if raw else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else {}

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        try:
            if self.follower_primary and method == "GET" and self.path.split("?", 1)[0] == "/readyz":
                self._follower_readyz()
                return
            if self.follower_primary and not self.path.startswith("/standin/local/"):
                self._forward(method)
                return
            self._route(method)
        except Exception as exc:  # noqa: BLE001
            self._status(500, "InternalError", f"{type(exc).__name__}: {exc}")

    def _follower_readyz(self) -> None:
        """Ready while the primary (the stand-in etcd) answers, like an API server whose etcd does."""
        try:
            ctx = ssl.create_default_context(cadata=self.ca_pem)
            with urllib.request.urlopen(self.follower_primary + "/readyz", context=ctx, timeout=5) as resp:
                ok = resp.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            ok = False
        if ok:
            self._send(200, "ok", raw=True)
        else:
            self._send(500, "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\nreadyz check failed\n", raw=True)

    def _forward(self, method: str) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else None
        req = urllib.request.Request(self.follower_primary + self.path, data=data, method=method)
        for h in ("Authorization", "Content-Type"):
            if self.headers.get(h):
                req.add_header(h, self.headers[h])
        ctx = ssl.create_default_context(cadata=self.ca_pem)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
                status, body, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, body, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        except (urllib.error.URLError, OSError) as exc:
            self._status(
                503, "ServiceUnavailable", f"stand-in etcd (the primary {self.follower_primary}) is unreachable: {exc}"
            )
            return
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _auth(self, st: dict) -> tuple[str, str | None]:
        """("admin"|"node"|"bootstrap"|"", node name or token id)."""
        h = self.headers.get("Authorization", "")
        tok = h[7:] if h.startswith("Bearer ") else ""
        if tok and hmac.compare_digest(tok, st["adminToken"]):
            return "admin", None
        for n in st["nodes"].values():
            if tok and hmac.compare_digest(tok, n["credential"]):
                return "node", n["name"]
        m = TOKEN_RE.match(tok)
        if m:
            t = st["tokens"].get(m.group(1))
            if t and hmac.compare_digest(t["secret"], m.group(2)) and (not t["expires"] or t["expires"] > now()):
                return "bootstrap", m.group(1)
        return "", None

    def _route(self, method: str) -> None:  # noqa: C901, PLR0912, PLR0915
        store = self.store
        path = self.path.split("?", 1)[0]
        query = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&")) if "?" in self.path else {}
        if method == "GET" and path in ("/readyz", "/livez", "/healthz"):
            self._send(200, "ok", raw=True)
            return
        with store.lock:
            st = store.state
            self._expire(st)
            if method == "GET" and path == "/version":
                v = minor(st["kubernetesVersion"])
                self._send(
                    200,
                    {
                        "major": "1",
                        "minor": str(v[1]),
                        "gitVersion": st["kubernetesVersion"],
                        "platform": "linux/amd64",
                        "standin": STANDIN,
                    },
                )
                return
            if method == "GET" and path == "/api/v1/namespaces/kube-public/configmaps/cluster-info":
                kc = kubeconfig(self._endpoint_url(st), st["ca"]["cert"], "", "").split("contexts:")[0]
                data = {"kubeconfig": kc}
                for tid, t in st["tokens"].items():
                    if "signing" in t["usages"]:
                        data["jws-kubeconfig-" + tid] = jws_sign(kc, tid, t["secret"])
                self._send(
                    200,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "data": data,
                        "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                    },
                )
                return
            who, ident = self._auth(st)
            if not who:
                self._status(401, "Unauthorized", "Unauthorized")
                return
            if who == "bootstrap":
                if method == "POST" and path == "/standin/join":
                    self._join(st, ident, self._body())
                    store.save()
                else:
                    self._status(403, "Forbidden", f'bootstrap token "{ident}" may only be used to join')
                return
            if method == "POST" and path == "/standin/heartbeat":
                b = self._body()
                n = st["nodes"].get(b["name"])
                if n is None or (who == "node" and ident != b["name"]):
                    self._status(404, "NotFound", f'nodes "{b["name"]}" not found')
                    return
                n["lastHeartbeat"] = now()
                if n["kubeletVersion"] != b["kubeletVersion"]:
                    store.event("kubelet-version", node=n["name"], old=n["kubeletVersion"], new=b["kubeletVersion"])
                    n["kubeletVersion"] = b["kubeletVersion"]
                    store.save()
                self._send(200, {"ok": True})
                return
            if method == "GET" and path == "/standin/cluster-info":
                self._send(
                    200,
                    {
                        "endpoint": self._endpoint_url(st).split("://", 1)[1],
                        "caCertHash": st["ca"]["hash"],
                        "kubernetesVersion": st["kubernetesVersion"],
                        "controlPlaneEndpoint": st["controlPlaneEndpoint"],
                    },
                )
                return
            if method == "POST" and path == "/standin/reset":
                b = self._body()
                if who == "node" and ident != b["name"]:
                    self._status(403, "Forbidden", "a node may only reset itself")
                    return
                n = st["nodes"].get(b["name"])
                store.event("reset", node=b["name"], role=n["role"] if n else None)
                if n:
                    n["reset"] = True
                    n["lastHeartbeat"] = 0
                store.save()
                self._send(200, {"ok": True})
                return
            if method == "GET" and path == "/standin/etcd/members":
                self._send(200, {"members": st.get("etcdMembers", [])})
                return
            if method == "POST" and path == "/standin/etcd/remove":
                self._etcd_remove(who, ident, self._body(), st)
                store.save()
                return
            if method == "POST" and path == "/standin/upgrade-node":
                b = self._body()
                n = st["nodes"].get(b["name"])
                if n and b.get("controlPlane"):
                    n["controlPlaneVersion"] = st["kubernetesVersion"]
                store.event(
                    "upgrade-node", node=b["name"], version=st["kubernetesVersion"], controlPlane=b.get("controlPlane")
                )
                store.save()
                self._send(200, {"ok": True})
                return
            if who != "admin":
                self._status(403, "Forbidden", f'User "system:node:{ident}" cannot {method} {path}')
                return
            self._admin(method, path, query, st)
            store.save()

    def _etcd_remove(self, who: str, ident: str | None, b: dict, st: dict) -> None:
        """kubeadm reset's remove-etcd-member: by name or peer URL; the only member stays; gone is done."""
        if who == "node" and ident != b.get("name"):
            self._status(403, "Forbidden", "a node may only remove its own etcd member")
            return
        members = st.setdefault("etcdMembers", [])
        found = [m for m in members if m["name"] == b.get("name") or b.get("peerURL") in m["peerURLs"]]
        if not found:
            self._send(200, {"removed": False, "reason": "already removed", "members": members})
        elif len(members) == 1:
            self._send(200, {"removed": False, "reason": "the only remaining etcd member", "members": members})
        else:
            st["etcdMembers"] = [m for m in members if m not in found]
            for m in found:
                self.store.event("etcd-member-remove", member=m["name"], id=m["id"])
            self._send(200, {"removed": True, "members": st["etcdMembers"]})

    def _expire(self, st: dict) -> None:
        for tid in [t for t, v in st["tokens"].items() if v["expires"] and v["expires"] <= now()]:
            del st["tokens"][tid]
        ck = st.get("certificateKey")
        if ck and ck["expires"] <= now():
            st["certificateKey"] = None

    def _endpoint_url(self, st: dict) -> str:
        cpe = st["controlPlaneEndpoint"]
        if cpe:
            return "https://" + (cpe if ":" in cpe else cpe + ":6443")
        return st["primary"]

    def _join(self, st: dict, tid: str, b: dict) -> None:
        name = b["name"]
        old = st["nodes"].get(name)
        if old and not old.get("reset"):
            ready = node_object(st, old)["status"]["conditions"][0]["status"] == "True"
            if ready:
                self._status(
                    409,
                    "AlreadyExists",
                    f'error execution phase kubelet-start: a Node with name "{name}" and status "Ready" '
                    "already exists in the cluster. You must delete the existing Node or change the name of "
                    "this new joining Node",
                )
                return
        result: dict = {}
        if b["role"] == "control-plane":
            if not st["controlPlaneEndpoint"]:
                self._status(
                    400,
                    "BadRequest",
                    "error execution phase preflight: \nOne or more conditions for hosting a new control "
                    "plane instance is not satisfied.\n\nunable to add a new control plane instance to a "
                    "cluster that doesn't have a stable controlPlaneEndpoint address\n\nPlease ensure that:\n"
                    "* The cluster has a stable controlPlaneEndpoint address.\n"
                    "* The certificates that must be shared among control plane instances are provided.",
                )
                return
            ck = st.get("certificateKey")
            if not ck:
                self._status(
                    404,
                    "NotFound",
                    "error execution phase control-plane-prepare/download-certs: error downloading certs: "
                    'error downloading the secret: Secret "kubeadm-certs" was not found in the '
                    '"kube-system" Namespace. This Secret might have expired. Please, run `kubeadm init '
                    "phase upload-certs --upload-certs` on a control plane to generate a new one",
                )
                return
            if not b.get("certificateKey") or not hmac.compare_digest(ck["key"], b["certificateKey"]):
                self._status(
                    403,
                    "Forbidden",
                    "error execution phase control-plane-prepare/download-certs: error downloading certs: "
                    "error decoding certs: cipher: message authentication failed",
                )
                return
            members = [m for m in st.setdefault("etcdMembers", []) if m["name"] != name]
            st["etcdMembers"] = [*members, etcd_member(name, b["ip"])]
            self.store.event("etcd-member-add", member=name, id=st["etcdMembers"][-1]["id"])
            result.update(
                caKey=st["ca"]["key"],
                adminToken=st["adminToken"],
                primary=st["primary"],
                controlPlaneEndpoint=st["controlPlaneEndpoint"],
                clusterConfiguration=st.get("clusterConfiguration") or {},
            )
        cred = secrets.token_hex(24)
        st["nodes"][name] = {
            "name": name,
            "ip": b["ip"],
            "role": b["role"],
            "kubeletVersion": b["kubeletVersion"],
            "controlPlaneVersion": st["kubernetesVersion"] if b["role"] == "control-plane" else None,
            "created": now(),
            "lastHeartbeat": now(),
            "credential": cred,
            "unschedulable": False,
            "taints": b.get("taints") or _cp_taints(b["role"]),
            "joinedWithToken": tid,
        }
        self.store.event("join", node=name, role=b["role"], token=tid, rejoin=bool(old))
        result["credential"] = cred
        self._send(200, result)

    def _admin(self, method: str, path: str, query: dict, st: dict) -> None:  # noqa: C901, PLR0912
        parts = path.strip("/").split("/")
        if path == "/api/v1/nodes" and method == "GET":
            items = [node_object(st, n) for n in sorted(st["nodes"].values(), key=lambda n: n["created"])]
            self._send(200, {"apiVersion": "v1", "kind": "NodeList", "items": items, "metadata": {}})
        elif parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4:
            n = st["nodes"].get(parts[3])
            if n is None:
                self._status(404, "NotFound", f'nodes "{parts[3]}" not found')
            elif method == "GET":
                self._send(200, node_object(st, n))
            elif method == "PATCH":
                want = bool(self._body().get("spec", {}).get("unschedulable"))
                if want != n.get("unschedulable"):
                    self.store.event("cordon" if want else "uncordon", node=n["name"])
                n["unschedulable"] = want
                n["cordonedAt"] = now()
                self._send(200, node_object(st, n))
            elif method == "DELETE":
                del st["nodes"][parts[3]]
                self.store.event("delete-node", node=parts[3])
                self._send(200, {"kind": "Status", "status": "Success"})
        elif path == "/standin/register" and method == "POST":
            b = self._body()
            cred = secrets.token_hex(24)
            st["nodes"][b["name"]] = {
                "name": b["name"],
                "ip": b["ip"],
                "role": b["role"],
                "kubeletVersion": b["kubeletVersion"],
                "created": now(),
                "controlPlaneVersion": b.get("controlPlaneVersion"),
                "lastHeartbeat": now(),
                "credential": cred,
                "unschedulable": False,
                "taints": b.get("taints") or _cp_taints(b["role"]),
            }
            self.store.event("init", node=b["name"], version=st["kubernetesVersion"])
            self._send(200, {"credential": cred})
        elif path == "/standin/tokens" and method == "POST":
            b = self._body()
            tok = b.get("token") or _new_token()
            m = TOKEN_RE.match(tok)
            if not m:
                self._status(
                    400,
                    "BadRequest",
                    f'the bootstrap token "{tok}" was not of the form "^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$"',
                )
                return
            ttl = go_duration(b.get("ttl") or "24h0m0s")
            st["tokens"][m.group(1)] = {
                "secret": m.group(2),
                "expires": now() + ttl if ttl else 0,
                "ttl": ttl,
                "description": b.get("description") or "",
                "usages": b.get("usages") or ["authentication", "signing"],
                "groups": b.get("groups") or ["system:bootstrappers:kubeadm:default-node-token"],
            }
            self.store.event("token-create", id=m.group(1), ttl=ttl)
            self._send(200, {"token": tok})
        elif path == "/standin/tokens" and method == "GET":
            items = []
            for tid, t in st["tokens"].items():
                item = {
                    "token": f"{tid}.{t['secret']}",
                    "description": t["description"],
                    "usages": t["usages"],
                    "groups": t["groups"],
                }
                if t["expires"]:
                    item["ttl"] = go_duration_str(max(0, t["expires"] - now()))
                    item["expires"] = rfc3339(t["expires"])
                items.append(item)
            self._send(200, {"items": items})
        elif parts[:2] == ["standin", "tokens"] and len(parts) == 3 and method == "DELETE":
            if parts[2] not in st["tokens"]:
                self._status(404, "NotFound", f'secrets "bootstrap-token-{parts[2]}" not found')
                return
            del st["tokens"][parts[2]]
            self.store.event("token-delete", id=parts[2])
            self._send(200, {"ok": True})
        elif path == "/standin/upload-certs" and method == "POST":
            key = self._body()["key"]
            if not re.fullmatch(r"[0-9a-f]{64}", key):
                self._status(400, "BadRequest", "error decoding certificate key: encoding/hex: invalid byte")
                return
            st["certificateKey"] = {"key": key, "expires": now() + CERT_KEY_TTL}
            self.store.event("upload-certs")
            self._send(200, {"ok": True})
        elif path == "/standin/upgrade" and method == "POST":
            b = self._body()
            old = st["kubernetesVersion"]
            st["kubernetesVersion"] = b["version"]
            if b.get("node") in st["nodes"]:
                st["nodes"][b["node"]]["controlPlaneVersion"] = b["version"]
            st["upgrades"].append({"from": old, "to": b["version"], "node": b.get("node"), "time": now()})
            self.store.event("upgrade-apply", node=b.get("node"), old=old, new=b["version"])
            self._send(200, {"ok": True})
        elif path == "/standin/pods" and method == "GET":
            node = query.get("node", "")
            try:
                with open(STUCK) as f:
                    hooks = json.load(f)
            except (OSError, ValueError):
                hooks = {}
            suffix = hashlib.sha1(node.encode()).hexdigest()[:5]
            stuck = list(hooks.get(node, []))
            self._send(
                200,
                {
                    "daemonset": [f"kube-system/kube-proxy-{suffix}"],
                    "stuck": stuck,
                    "emptyDir": list(hooks.get("emptyDir:" + node, [])),
                },
            )
        elif path == "/standin/manifests" and method == "POST":
            b = self._body()
            st["manifests"].append({**b, "time": now()})
            self.store.event("apply", source=b["source"])
            self._send(200, {"ok": True})
        elif path == "/standin/settings" and method == "POST":
            st["settings"].update(self._body())
            self._send(200, st["settings"])
        elif path == "/standin/state" and method == "GET":
            self._send(200, st)
        else:
            self._status(404, "NotFound", f"the server could not find the requested resource ({method} {path})")


def _cp_taints(role: str) -> list:
    return [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}] if role == "control-plane" else []


class EtcdHealth(http.server.BaseHTTPRequestHandler):
    """The stand-in etcd member's metrics listener: GET /health as etcd answers it."""

    server_version = "standin-etcd"
    member = ""

    def log_message(self, fmt: str, *args) -> None:  # noqa: D102
        pass

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?", 1)[0] != "/health":
            self.send_error(404)
            return
        reason = etcd_unhealthy(self.member)
        health = {"health": "false" if reason else "true", "reason": reason or ""}
        body = json.dumps(health, separators=(",", ":")).encode()
        self.send_response(503 if reason else 200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def etcd_unhealthy(member: str) -> str | None:
    """Why this control plane's etcd member is not healthy, None when it is: the test hook, a
    primary that does not answer (no leader), or a member no longer in the member list."""
    try:
        return read_text(ETCD_UNHEALTHY).strip() or "stand-in test hook: etcd-unhealthy"
    except OSError:
        pass
    if Handler.store is not None:
        with Handler.store.lock:
            members = Handler.store.state.get("etcdMembers")
    else:
        path = ADMIN_CONF if os.path.exists(ADMIN_CONF) else KUBELET_CONF
        try:
            token = load_kubeconfig(path)["token"]
            members = api(Handler.follower_primary, "GET", "/standin/etcd/members", None, token, Handler.ca_pem, 5)[
                "members"
            ]
        except (Fail, ApiError, KeyError, OSError, ValueError) as exc:
            err(f"standin-apiserver: etcd health: the primary {Handler.follower_primary} does not answer: {exc}")
            return "RAFT NO LEADER"
    if members is not None and member not in [m["name"] for m in members]:
        return f"stand-in: member {member} is not in the etcd member list (removed)"
    return None


def _serve_etcd_health(member: str) -> None:
    EtcdHealth.member = member
    while True:
        try:
            srv = http.server.ThreadingHTTPServer(("127.0.0.1", ETCD_METRICS_PORT), EtcdHealth)
        except OSError as exc:
            err(f"standin-apiserver: etcd health on 127.0.0.1:{ETCD_METRICS_PORT}: {exc}; retrying")
            time.sleep(1)
            continue
        srv.serve_forever()


def apiserver(argv: list[str]) -> int:
    with open(API_CONFIG) as f:
        conf = json.load(f)
    Handler.ca_pem = read_text(PKI + "/ca.crt")
    if conf["mode"] == "primary":
        Handler.store = Store()
    else:
        Handler.follower_primary = conf["primary"]
    member = conf.get("node") or hostname()
    threading.Thread(target=_serve_etcd_health, args=(member,), daemon=True, name="etcd-health").start()
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", int(conf.get("port", 6443))), Handler)  # noqa: S104
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(PKI + "/apiserver.crt", PKI + "/apiserver.key")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    err(f"standin-apiserver ({STANDIN}) {conf['mode']} listening on :{conf.get('port', 6443)}")
    srv.serve_forever()
    return 0


# -- entry ------------------------------------------------------------------------------------


def main() -> int:
    tool = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    handlers = {"kubeadm": kubeadm, "kubectl": kubectl, "kubelet": kubelet, "standin-apiserver": apiserver}
    if tool not in handlers:
        err(f"{STANDIN}: run as kubeadm, kubectl, kubelet or standin-apiserver, not {tool}")
        return 2
    inv = record(tool, argv) if tool != "standin-apiserver" else ""
    status = 0
    try:
        status = handlers[tool](argv)
    except Fail as exc:
        err(str(exc))
        status = exc.status
    except ApiError as exc:
        err(f"Error from server: {exc}")
        status = 1
    except KeyboardInterrupt:
        status = 130
    if inv:
        record_exit(inv, status)
    return status


if __name__ == "__main__":
    sys.exit(main())
