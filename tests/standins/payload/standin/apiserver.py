"""Orbiter test stand-in, not Kubernetes: the stand-in kube-apiserver (standin-apiserver.service),
a primary that keeps the state or a follower that forwards to it, and its etcd member's /health.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request

from .apiserver_routes import ApiRoutes
from .client import ApiError, api, load_kubeconfig
from .common import (
    ADMIN_CONF,
    API_CONFIG,
    ETCD_METRICS_PORT,
    ETCD_UNHEALTHY,
    KUBELET_CONF,
    PKI,
    STANDIN,
    Fail,
    err,
    hostname,
    read_text,
)
from .state import Store


class Handler(ApiRoutes):
    """A request to the stand-in API: answered here on the primary, forwarded by a follower."""

    server_version = "standin-apiserver"
    follower_primary: str | None = None
    ca_pem: str = ""

    def log_message(self, fmt: str, *args) -> None:  # noqa: D102
        err("standin-apiserver: " + fmt % args)

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
