"""Orbiter test stand-in, not Kubernetes: the stand-in API's requests, answered from the state on
the primary (authentication, discovery, joins, nodes, tokens, certificate key, upgrades, etcd members).
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import re
import secrets

from .client import kubeconfig
from .common import (
    CERT_KEY_TTL,
    STANDIN,
    STUCK,
    TOKEN_RE,
    go_duration,
    go_duration_str,
    minor,
    new_token,
    now,
    rfc3339,
)
from .pki import jws_sign
from .state import Store, cp_taints, etcd_member, node_object


class ApiRoutes(http.server.BaseHTTPRequestHandler):
    """The stand-in API's routes on the primary; apiserver.Handler adds serving and forwarding."""

    store: Store | None = None

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
            "taints": b.get("taints") or cp_taints(b["role"]),
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
                "taints": b.get("taints") or cp_taints(b["role"]),
            }
            self.store.event("init", node=b["name"], version=st["kubernetesVersion"])
            self._send(200, {"credential": cred})
        elif path == "/standin/tokens" and method == "POST":
            b = self._body()
            tok = b.get("token") or new_token()
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
