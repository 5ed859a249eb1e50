"""The stand-in's HTTP side: Compute v1 REST paths under /compute/v1/projects/{project}/, the OAuth
token endpoint (/token), bearer tokens checked on every call, list filters and pagination, and
the fault that drops an answer after the change was made."""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.parse
from typing import Any

from .auth import Accounts, AuthError
from .filters import FilterError, compile_filter
from .resources import Project
from .state import COLLECTIONS, ApiError, Store

PATH = re.compile(r"^/compute/v1/projects/(?P<project>[^/]+)/(?P<rest>.*)$")
WAIT_SECONDS = 30.0  # GCE's wait returns within 2 minutes; shorter here keeps a killed client's thread short


def _page(items: list[dict], query: dict[str, str]) -> tuple[list[dict], str | None]:
    size = int(query.get("maxResults") or 500)
    start = int(query.get("pageToken") or 0)
    chunk = items[start:start + size]
    return chunk, str(start + size) if start + size < len(items) else None


class Server:
    def __init__(self, store: Store, project: Project, accounts: Accounts) -> None:
        self.store, self.project, self.accounts = store, project, accounts
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        store.base_url = self.url
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="gce-standin")
        self.thread.start()
        self.calls: list[tuple[str, str]] = []  # (method, path) of every API call

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server_state: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        state = self.server_state
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if url.path == "/token" and method == "POST":
                form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
                try:
                    grant = state.accounts.grant(form.get("assertion", ""), state.url + "/token")
                except AuthError as err:
                    self._send(400, {"error": "invalid_grant", "error_description": str(err)})
                    return
                self._send(200, grant)
                return
            match = PATH.match(url.path)
            if not match:
                raise ApiError(404, "notFound", f"no such path {url.path}")
            try:
                state.accounts.check(self.headers.get("Authorization"))
            except AuthError as err:
                raise ApiError(401, "required", f"Request is missing required authentication credential: {err}",
                               domain="global") from None
            if match["project"] != state.store.project:
                raise ApiError(403, "forbidden", f"Required 'compute' permission for 'projects/{match['project']}'")
            body = json.loads(raw) if raw else {}
            state.calls.append((method, url.path))
            status, answer, key = self._route(method, match["rest"].strip("/").split("/"), query, body)
            if key and state.store.faults.drops.get(key, 0) > 0:
                # Acted, then the answer is lost: the client must send it again with its requestId.
                state.store.faults.drops[key] -= 1
                state.store.stats.dropped.append(key)
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self._send(status, answer)
        except ApiError as err:
            self._send(err.status, err.body())
        except FilterError as err:
            self._send(400, ApiError(400, "invalid", str(err)).body())
        except (ValueError, KeyError) as err:
            self._send(400, ApiError(400, "invalid", f"bad request: {err}").body())

    def _route(self, method: str, parts: list[str], query: dict[str, str], body: dict
               ) -> tuple[int, dict, str | None]:
        """(status, answer, fault key of a change)."""
        state = self.server_state
        store, project = state.store, state.project
        if parts[:2] == ["aggregated", "instances"] and method == "GET":
            return 200, self._aggregated(query), None
        if parts == ["zones"]:
            return 200, {"items": [{"name": z, "status": "UP"} for z in store.zones]}, None
        if parts[0] in ("zones", "regions") and len(parts) == 2:
            known = store.zones if parts[0] == "zones" else [store.region]
            if parts[1] not in known:
                raise ApiError(404, "notFound", f"The resource 'projects/{store.project}/{'/'.join(parts)}' was not"
                               " found")
            extra = {"zones": [f"{store.prefix()}/zones/{z}" for z in store.zones]} if parts[0] == "regions" else {}
            return 200, {"name": parts[1], "status": "UP", **extra}, None
        if parts[0] == "global":
            location, rest = "global", parts[1:]
        elif parts[0] in ("zones", "regions") and len(parts) >= 3:
            location, rest = parts[1], parts[2:]
        else:
            raise ApiError(404, "notFound", f"no such path {'/'.join(parts)}")
        collection = rest[0]
        scope_word = "global" if parts[0] == "global" else parts[0][:-1]
        if collection == "operations" and len(rest) >= 2:
            if method == "POST" and rest[2:] == ["wait"]:
                op = store.wait_operation(location, rest[1], WAIT_SECONDS)
            else:
                op = store.get_operation(location, rest[1])
            with store.lock:
                return 200, json.loads(json.dumps(op)), None
        if collection not in COLLECTIONS or COLLECTIONS[collection][0] != scope_word:
            raise ApiError(404, "notFound", f"no such collection {'/'.join(parts)}")
        request_id = query.get("requestId")
        if len(rest) == 1 and method == "GET":
            return 200, self._list(collection, location, query), None
        if len(rest) == 1 and method == "POST":
            return 200, project.insert(collection, location, body, request_id), f"{collection}.insert"
        name = rest[1]
        if len(rest) == 2 and method == "GET":
            with store.lock:
                return 200, json.loads(json.dumps(store.json_copy(store.get(collection, location, name)))), None
        if len(rest) == 2 and method == "DELETE":
            return 200, project.delete(collection, location, name, request_id), f"{collection}.delete"
        if len(rest) == 2 and method == "PATCH":
            return 200, project.patch(collection, location, name, body, request_id), f"{collection}.patch"
        if len(rest) == 3 and method == "POST":
            verb = rest[2]
            if collection == "instanceGroups" and verb == "listInstances":
                return 200, project.list_instances_of_group(location, name), None
            if collection == "backendServices" and verb == "getHealth":
                return 200, project.health(location, name, body), None
            return 200, project.verb(collection, location, name, verb, body, request_id), f"{collection}.{verb}"
        raise ApiError(404, "notFound", f"no such call {method} {'/'.join(parts)}")

    def _list(self, collection: str, location: str, query: dict[str, str]) -> dict:
        store = self.server_state.store
        match = compile_filter(query.get("filter"))
        with store.lock:
            items = [json.loads(json.dumps(store.json_copy(r))) for r in store.all(collection, location)]
        items = [r for r in items if match(r)]
        chunk, token = _page(items, query)
        out: dict[str, Any] = {"kind": COLLECTIONS[collection][1] + "List", "id": f"projects/{store.project}"}
        if chunk:
            out["items"] = chunk
        if token:
            out["nextPageToken"] = token
        return out

    def _aggregated(self, query: dict[str, str]) -> dict:
        store = self.server_state.store
        match = compile_filter(query.get("filter"))
        with store.lock:
            items = [json.loads(json.dumps(store.json_copy(r))) for r in store.all("instances")]
        items = [r for r in items if match(r)]
        chunk, token = _page(items, query)
        grouped: dict[str, Any] = {f"zones/{z}": {"warning": {
            "code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope 'zones/" + z + "' on this page."}}
            for z in store.zones}
        for item in chunk:
            scoped = grouped.setdefault("zones/" + item["zone"].rsplit("/", 1)[-1], {})
            scoped.pop("warning", None)
            scoped.setdefault("instances", []).append(item)
        out: dict[str, Any] = {"kind": "compute#instanceAggregatedList", "items": grouped}
        if token:
            out["nextPageToken"] = token
        return out
