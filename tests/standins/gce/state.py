"""The stand-in's project: resources by collection, scope and name, operations, requestIds, faults.

Operations behave as GCE's do where clients depend on it: they are PENDING, then RUNNING while
the work happens (and at least as long as a test's delay asks), then DONE, with `error.errors`
when the work failed; a repeated requestId answers with the first operation and does nothing
again; and every operation lives in the scope of its resource (zone, region or global), so
asking another scope is a 404.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# collection -> (scope, kind)
COLLECTIONS = {
    "instances": ("zone", "compute#instance"),
    "instanceGroups": ("zone", "compute#instanceGroup"),
    "addresses": ("region", "compute#address"),
    "healthChecks": ("region", "compute#healthCheck"),
    "backendServices": ("region", "compute#backendService"),
    "forwardingRules": ("region", "compute#forwardingRule"),
    "firewalls": ("global", "compute#firewall"),
    "networks": ("global", "compute#network"),
}


class ApiError(Exception):
    """An HTTP error in GCE's shape: {"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}."""

    def __init__(self, status: int, reason: str, message: str, domain: str = "global") -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.domain = status, reason, message, domain

    def body(self) -> dict:
        return {"error": {"code": self.status, "message": self.message,
                          "errors": [{"domain": self.domain, "reason": self.reason, "message": self.message}]}}


class OperationFailed(Exception):
    """Work that ends its operation DONE with error.errors (what GCE does for e.g. a quota met late)."""

    def __init__(self, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.http_status = code, message, http_status


@dataclass
class Faults:
    """Switches a test flips to make GCE misbehave the ways it does."""

    instance_quota: int | None = None  # inserts beyond this many instances fail with QUOTA_EXCEEDED
    quota_mode: str = "operation"  # "operation": a DONE operation with the error; "http": a 403 answer
    fail_inserts: dict[int, str] = field(default_factory=dict)  # Nth distinct instance insert -> mode
    delays: dict[str, float] = field(default_factory=dict)  # collection -> seconds its operations stay RUNNING
    delay: float = 0.2  # the others' (RUNNING first, always, as on GCE)
    drops: dict[str, int] = field(default_factory=dict)  # "instances.insert" -> how many answers to drop


@dataclass
class Stats:
    """What a test may ask afterwards: which changes the stand-in made, and which it recognised."""

    created: list[tuple[str, str]] = field(default_factory=list)  # (collection, name), each creation
    deleted: list[tuple[str, str]] = field(default_factory=list)
    repeated_request_ids: list[tuple[str, str]] = field(default_factory=list)  # (request, requestId)
    dropped: list[str] = field(default_factory=list)
    instance_inserts: int = 0


class Store:
    def __init__(self, project: str, region: str, zones: list[str]) -> None:
        self.project, self.region, self.zones = project, region, zones
        self.base_url = ""  # set once the server listens
        self.lock = threading.RLock()
        self.resources: dict[tuple[str, str, str], dict] = {}  # (collection, location, name) -> resource
        self.operations: dict[tuple[str, str], dict] = {}  # (location, name) -> operation
        self.done: dict[str, threading.Event] = {}
        self.request_ids: dict[str, tuple[str, str]] = {}
        self.ids = itertools.count(1000000000000000000 + secrets.randbelow(10**17))
        self.faults = Faults()
        self.stats = Stats()
        network = {"name": "default", "autoCreateSubnetworks": True}
        self.put("networks", "global", network)

    # -- links ----------------------------------------------------------------------------------
    def prefix(self) -> str:
        return f"{self.base_url}/compute/v1/projects/{self.project}"

    def scope_path(self, collection: str, location: str) -> str:
        scope = COLLECTIONS[collection][0]
        return {"zone": f"zones/{location}", "region": f"regions/{location}", "global": "global"}[scope]

    def link(self, collection: str, location: str, name: str) -> str:
        return f"{self.prefix()}/{self.scope_path(collection, location)}/{collection}/{name}"

    # -- resources ------------------------------------------------------------------------------
    def put(self, collection: str, location: str, resource: dict) -> dict:
        scope, kind = COLLECTIONS[collection]
        with self.lock:
            resource.setdefault("id", str(next(self.ids)))
            resource.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()))
            resource["kind"] = kind
            resource["selfLink"] = self.link(collection, location, resource["name"])
            if scope != "global":
                resource[scope] = f"{self.prefix()}/{scope}s/{location}"
            self.resources[(collection, location, resource["name"])] = resource
            return resource

    def get(self, collection: str, location: str, name: str) -> dict:
        with self.lock:
            found = self.resources.get((collection, location, name))
        if found is None:
            raise ApiError(404, "notFound", f"The resource 'projects/{self.project}/"
                           f"{self.scope_path(collection, location)}/{collection}/{name}' was not found")
        return found

    def find(self, collection: str, location: str, name: str) -> dict | None:
        with self.lock:
            return self.resources.get((collection, location, name))

    def all(self, collection: str, location: str | None = None) -> list[dict]:
        with self.lock:
            return [r for (c, loc, _), r in sorted(self.resources.items(), key=lambda kv: kv[0])
                    if c == collection and (location is None or loc == location)]

    def remove(self, collection: str, location: str, name: str) -> None:
        with self.lock:
            if self.resources.pop((collection, location, name), None) is not None:
                self.stats.deleted.append((collection, name))

    def location_of(self, collection: str, link: str) -> tuple[str, str]:
        """(location, name) from a full or partial link ("zones/z/instances/n")."""
        parts = link.rstrip("/").split("/")
        name = parts[-1]
        scope = COLLECTIONS[collection][0]
        if scope == "global":
            return "global", name
        marker = scope + "s"
        if marker not in parts:
            raise ApiError(400, "invalid", f"Invalid value for field: '{link}'")
        return parts[parts.index(marker) + 1], name

    # -- operations -----------------------------------------------------------------------------
    def operation(self, op_type: str, collection: str, location: str, name: str, request_id: str | None,
                  work: Callable[[], None] | None) -> dict:
        """Start an operation that runs `work` in the background; a known requestId returns its first one."""
        with self.lock:
            if request_id and request_id in self.request_ids:
                self.stats.repeated_request_ids.append((f"{collection}.{op_type}", request_id))
                return self.operations[self.request_ids[request_id]]
            scope = COLLECTIONS[collection][0]
            op_name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}"
            op_location = location if scope != "global" else "global"
            op = {
                "kind": "compute#operation", "id": str(next(self.ids)), "name": op_name,
                "operationType": op_type, "targetLink": self.link(collection, location, name),
                "status": "PENDING", "progress": 0, "user": "orbiter@standin",
                "insertTime": time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()),
                "selfLink": f"{self.prefix()}/{self.scope_path(collection, location)}/operations/{op_name}",
            }
            if request_id:
                op["clientOperationId"] = request_id
                self.request_ids[request_id] = (op_location, op_name)
            if scope != "global":
                op[scope] = f"{self.prefix()}/{scope}s/{location}"
            self.operations[(op_location, op_name)] = op
            self.done[op_name] = threading.Event()
        delay = self.faults.delays.get(collection, self.faults.delay)
        threading.Thread(target=self._run, args=(op, work, delay), daemon=True, name=f"op-{op_name}").start()
        return op

    def _run(self, op: dict, work: Callable[[], None] | None, delay: float) -> None:
        started = time.monotonic()
        with self.lock:
            op.update(status="RUNNING", progress=0,
                      startTime=time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()))
        try:
            if work is not None:
                work()
        except OperationFailed as err:
            with self.lock:
                op["error"] = {"errors": [{"code": err.code, "message": err.message}]}
                op["httpErrorStatusCode"] = err.http_status
                op["httpErrorMessage"] = {400: "BAD REQUEST", 403: "FORBIDDEN", 404: "NOT FOUND"}.get(
                    err.http_status, "ERROR")
        except Exception as err:  # noqa: BLE001 - a stand-in bug shows as a failed operation
            with self.lock:
                op["error"] = {"errors": [{"code": "INTERNAL_ERROR", "message": f"stand-in: {err}"}]}
                op["httpErrorStatusCode"] = 500
        time.sleep(max(0.0, delay - (time.monotonic() - started)))
        with self.lock:
            op.update(status="DONE", progress=100,
                      endTime=time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime()))
        self.done[op["name"]].set()

    def get_operation(self, location: str, name: str) -> dict:
        with self.lock:
            op = self.operations.get((location, name))
        if op is None:
            raise ApiError(404, "notFound", f"The resource 'projects/{self.project}/{location}/operations/{name}'"
                           " was not found")
        return op

    def wait_operation(self, location: str, name: str, timeout: float) -> dict:
        op = self.get_operation(location, name)
        self.done[name].wait(timeout)
        return op

    def settled(self, timeout: float = 60.0) -> None:
        """Until no operation runs (tests look at the project only then)."""
        deadline = time.monotonic() + timeout
        for event in list(self.done.values()):
            event.wait(max(0.0, deadline - time.monotonic()))

    def snapshot(self) -> dict[str, list[str]]:
        """Collection -> names of what the project holds (networks aside)."""
        with self.lock:
            out: dict[str, list[str]] = {}
            for (collection, _, name) in sorted(self.resources):
                if collection != "networks":
                    out.setdefault(collection, []).append(name)
            return out

    def json_copy(self, resource: dict) -> dict:
        with self.lock:
            return {k: v for k, v in resource.items() if not k.startswith("_")}

