"""Orbiter test stand-in, not Kubernetes: kubeconfig files and the client of the stand-in API."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request

from .common import STANDIN, Fail, flag, go_duration, read_text
from .yamlsubset import yaml_load_all


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


def api_or_fail(c: Cluster, method: str, path: str, body: dict | None = None) -> dict:
    try:
        return c.call(method, path, body)
    except ApiError as exc:
        raise Fail(exc.body.get("message", str(exc))) from None


def node_ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
