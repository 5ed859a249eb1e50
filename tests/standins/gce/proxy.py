"""The load balancer's data path: a forwarding rule's address answers on its ports by forwarding
TCP to the members of its backend service that pass the health check (TCP connect to the
check's port every checkIntervalSec; healthyThreshold passes make a member HEALTHY,
unhealthyThreshold failures UNHEALTHY). As GCE's internal passthrough load balancer does, it
spreads new connections over every member when none is healthy."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from typing import Any


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class Balancers:
    def __init__(self) -> None:
        self.store: Any = None
        self.listeners: dict[str, list[socket.socket]] = {}
        self.state: dict[tuple[str, str], dict] = {}  # (service link, instance link) -> counters and state
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.checker: threading.Thread | None = None
        self.turn = itertools.count()

    # -- membership as the project has it -----------------------------------------------------
    def _service(self, rule: dict) -> dict | None:
        store = self.store
        location, name = store.location_of("backendServices", rule.get("backendService", ""))
        return store.find("backendServices", location, name)

    def _members(self, service: dict) -> list[tuple[str, str]]:
        """(instance link, networkIP) of every member of the service's instance groups."""
        store, out = self.store, []
        with store.lock:
            for backend in service.get("backends", []):
                group = store.find("instanceGroups", *store.location_of("instanceGroups", backend.get("group", "")))
                for link in (group or {}).get("_members", []):
                    instance = store.find("instances", *store.location_of("instances", link))
                    if instance and instance.get("status") == "RUNNING":
                        out.append((instance["selfLink"], instance["networkInterfaces"][0].get("networkIP", "")))
        return out

    def _check_params(self, service: dict) -> dict:
        store = self.store
        links = service.get("healthChecks", [])
        if not links:
            return {}
        check = store.find("healthChecks", *store.location_of("healthChecks", links[0])) or {}
        return check

    # -- health checking ------------------------------------------------------------------------
    def _check_all(self) -> None:
        while not self.stopped.is_set():
            interval = 1.0
            for service in list(self.store.all("backendServices")) if self.store else []:
                check = self._check_params(service)
                port = (check.get("tcpHealthCheck") or {}).get("port")
                if not port:
                    continue
                interval = min(interval, float(check.get("checkIntervalSec", 5)))
                for link, ip in self._members(service):
                    ok = False
                    with contextlib.suppress(OSError), socket.create_connection(
                            (ip, int(port)), timeout=float(check.get("timeoutSec", 5))):
                        ok = True
                    with self.lock:
                        st = self.state.setdefault((service["selfLink"], link), {"ok": 0, "bad": 0,
                                                                                  "state": "UNHEALTHY"})
                        st["ok"], st["bad"] = (st["ok"] + 1, 0) if ok else (0, st["bad"] + 1)
                        if st["ok"] >= int(check.get("healthyThreshold", 2)):
                            st["state"] = "HEALTHY"
                        elif st["bad"] >= int(check.get("unhealthyThreshold", 2)):
                            st["state"] = "UNHEALTHY"
            self.stopped.wait(interval)

    def health(self, service: dict, group: dict) -> list[dict]:
        out = []
        store = self.store
        with store.lock:
            members = list(group.get("_members", []))
        for link in members:
            instance = store.find("instances", *store.location_of("instances", link))
            with self.lock:
                state = self.state.get((service["selfLink"], link), {}).get("state", "UNHEALTHY")
            out.append({"instance": link, "healthState": state,
                        "ipAddress": (instance or {}).get("networkInterfaces", [{}])[0].get("networkIP", "")})
        return out

    # -- forwarding -----------------------------------------------------------------------------
    def serve(self, rule: dict) -> None:
        if self.checker is None:
            self.checker = threading.Thread(target=self._check_all, daemon=True, name="standin-health")
            self.checker.start()
        sockets = []
        for port in rule.get("ports") or [str(rule.get("portRange", "")).split("-")[0]]:
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((rule["IPAddress"], int(port)))
            srv.listen(64)
            sockets.append(srv)
            threading.Thread(target=self._accept, args=(rule, srv, int(port)), daemon=True,
                             name=f"standin-lb-{rule['name']}-{port}").start()
        self.listeners[rule["selfLink"]] = sockets

    def _accept(self, rule: dict, srv: socket.socket, port: int) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=self._forward, args=(rule, client, port), daemon=True).start()

    def _forward(self, rule: dict, client: socket.socket, port: int) -> None:
        service = self._service(rule)
        members = self._members(service) if service else []
        with self.lock:
            healthy = [ip for link, ip in members
                       if self.state.get((service["selfLink"], link), {}).get("state") == "HEALTHY"]
        targets = healthy or [ip for _, ip in members]
        if not targets:
            client.close()
            return
        ip = targets[next(self.turn) % len(targets)]
        try:
            upstream = socket.create_connection((ip, port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        _pipe(upstream, client)

    def unserve(self, rule: dict) -> None:
        for srv in self.listeners.pop(rule["selfLink"], []):
            with contextlib.suppress(OSError):
                srv.close()

    def close(self) -> None:
        self.stopped.set()
        for link in list(self.listeners):
            for srv in self.listeners.pop(link):
                with contextlib.suppress(OSError):
                    srv.close()
        time.sleep(0)
