"""What each Compute API call does to the stand-in's project: checks as GCE makes them (names,
labels, machine types and images, references that must exist, resources still in use), then the
change, in an operation. Machines and the load balancer's traffic are the backend's (machines.py,
proxy.py); without one, instances get an address and run at once (API-only tests)."""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any, Protocol

from .names import labels_problem, name_problem
from .state import COLLECTIONS, ApiError, OperationFailed, Store

MACHINE_TYPE = re.compile(r"^(e2|n1|n2|n2d|c2|c3|t2d)-(micro|small|medium|standard|highmem|highcpu)(-\d+)?$")
IMAGES = {"projects/debian-cloud/global/images/family/debian-12", "projects/debian-cloud/global/images/debian-12"}
# Who references whom: deleting the referenced one while a referrer exists is a 400.
REFERRERS = {
    "addresses": [("forwardingRules", lambda r, target: r.get("IPAddress") in (target.get("address"),
                                                                               target["selfLink"]))],
    "healthChecks": [("backendServices", lambda r, target: any(
        link.rsplit("/", 1)[-1] == target["name"] for link in r.get("healthChecks", [])))],
    "instanceGroups": [("backendServices", lambda r, target: any(
        _same(b.get("group", ""), target["selfLink"]) for b in r.get("backends", [])))],
    "backendServices": [("forwardingRules", lambda r, target: _same(r.get("backendService", ""),
                                                                     target["selfLink"]))],
}


def _same(link: str, self_link: str) -> bool:
    """Two links to one resource (a partial link, or the server's own): compare the path's tail."""
    tail = lambda text: "/".join(text.rstrip("/").split("/")[-4:])  # noqa: E731
    return bool(link) and tail(link) == tail(self_link)


class Backend(Protocol):
    """What the real world does for the project: machines, addresses, traffic."""

    def boot(self, instance: dict) -> str: ...  # networkIP, once sshd answers and the keys are in
    def apply_metadata(self, instance: dict) -> None: ...
    def delete(self, instance: dict) -> None: ...
    def reset(self, instance: dict) -> None: ...
    def stop(self, instance: dict) -> None: ...
    def allocate_address(self, name: str) -> str: ...
    def release_address(self, address: str) -> None: ...
    def serve(self, rule: dict) -> None: ...  # a forwarding rule starts forwarding
    def unserve(self, rule: dict) -> None: ...
    def health(self, service: dict, group: dict) -> list[dict]: ...


class NoMachines:
    """A backend without machines: addresses from 10.128.0.0/20, instances RUNNING at once."""

    def __init__(self) -> None:
        self.hosts = ipaddress.IPv4Network("10.128.0.0/20").hosts()

    def boot(self, instance: dict) -> str:
        return str(next(self.hosts))

    def apply_metadata(self, instance: dict) -> None: ...
    def delete(self, instance: dict) -> None: ...
    def reset(self, instance: dict) -> None: ...
    def stop(self, instance: dict) -> None: ...

    def allocate_address(self, name: str) -> str:
        return str(next(self.hosts))

    def release_address(self, address: str) -> None: ...
    def serve(self, rule: dict) -> None: ...
    def unserve(self, rule: dict) -> None: ...

    def health(self, service: dict, group: dict) -> list[dict]:
        return [{"instance": i, "healthState": "HEALTHY"} for i in group.get("_members", [])]


class Project:
    def __init__(self, store: Store, backend: Backend) -> None:
        self.store, self.backend = store, backend

    # -- insert ---------------------------------------------------------------------------------
    def insert(self, collection: str, location: str, body: dict, request_id: str | None) -> dict:
        store = self.store
        self._location(collection, location)
        with store.lock:
            if request_id and request_id in store.request_ids:
                return store.operation("insert", collection, location, body.get("name", ""), request_id, None)
            if problem := name_problem(body.get("name")):
                raise ApiError(400, "invalid", problem)
            if problem := labels_problem(body.get("labels")):
                raise ApiError(400, "invalid", problem)
            name = body["name"]
            if store.find(collection, location, name) is not None:
                raise ApiError(409, "alreadyExists", f"The resource 'projects/{store.project}/"
                               f"{store.scope_path(collection, location)}/{collection}/{name}' already exists")
            check = getattr(self, f"_check_{collection}", None)
            if check:
                check(location, body)
            if collection == "instances":
                store.stats.instance_inserts += 1
                try:
                    self._quota(location)
                except _LateQuota as late:
                    # GCE takes the request and fails its operation: DONE, with error.errors.
                    def fail(err: _LateQuota = late) -> None:
                        raise err
                    return store.operation("insert", collection, location, name, request_id, fail)
            resource = copy.deepcopy(body)
            work = getattr(self, f"_create_{collection}", None)
            if collection == "instances":
                resource["status"] = "PROVISIONING"
            store.put(collection, location, resource)
            store.stats.created.append((collection, name))
        def create() -> None:
            try:
                work(location, resource)
            except BaseException:
                store.remove(collection, location, name)  # a failed insert leaves no resource, as on GCE
                raise

        return store.operation("insert", collection, location, name, request_id, create if work else None)

    def _location(self, collection: str, location: str) -> None:
        scope = COLLECTIONS[collection][0]
        known = {"zone": self.store.zones, "region": [self.store.region], "global": ["global"]}[scope]
        if location not in known:
            raise ApiError(404, "notFound", f"The resource 'projects/{self.store.project}/{scope}s/{location}' was"
                           " not found")

    def _quota(self, zone: str) -> None:
        store = self.store
        mode = store.faults.fail_inserts.get(store.stats.instance_inserts)
        limit = store.faults.instance_quota
        if mode is None and limit is not None and len(store.all("instances")) >= limit:
            mode = store.faults.quota_mode
        if mode == "http":
            raise ApiError(403, "quotaExceeded", f"Quota 'INSTANCES' exceeded.  Limit: {float(limit or 0)} in region"
                           f" {store.region}.", domain="usageLimits")
        if mode == "operation":
            raise _LateQuota(f"Quota 'INSTANCES' exceeded.  Limit: {float(limit or 0)} in region {store.region}.")

    def _check_instances(self, zone: str, body: dict) -> None:
        machine_type = str(body.get("machineType", "")).rsplit("/", 1)[-1]
        if not MACHINE_TYPE.match(machine_type):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.machineType':"
                           f" 'zones/{zone}/machineTypes/{machine_type}'. Machine type with name '{machine_type}'"
                           f" does not exist in zone '{zone}'.")
        for disk in body.get("disks", []):
            image = (disk.get("initializeParams") or {}).get("sourceImage", "")
            if image and image.split("/compute/v1/")[-1] not in IMAGES:
                raise ApiError(404, "notFound", f"The resource '{image}' was not found")
        for nic in body.get("networkInterfaces", []):
            self.store.get("networks", "global", nic.get("network", "global/networks/default").rsplit("/", 1)[-1])

    def _create_instances(self, zone: str, instance: dict) -> None:
        nic = (instance.setdefault("networkInterfaces", [{}]) or [{}])[0]
        nic.setdefault("name", "nic0")
        nic["network"] = self.store.link("networks", "global", nic.get("network", "default").rsplit("/", 1)[-1])
        instance["zone"] = f"{self.store.prefix()}/zones/{zone}"
        instance.setdefault("metadata", {}).setdefault("fingerprint", "f0")
        instance["status"] = "STAGING"
        ip = self.backend.boot(instance)
        with self.store.lock:
            nic["networkIP"] = ip
            for access in nic.get("accessConfigs", []):
                access["natIP"] = ip  # the stand-in's machines have one address: "external" is it too
            instance["status"] = "RUNNING"

    def _check_backendServices(self, region: str, body: dict) -> None:
        for link in body.get("healthChecks", []):
            self.store.get("healthChecks", *self.store.location_of("healthChecks", link))
        for backend in body.get("backends", []):
            self.store.get("instanceGroups", *self.store.location_of("instanceGroups", backend.get("group", "")))

    def _check_forwardingRules(self, region: str, body: dict) -> None:
        self.store.get("backendServices", *self.store.location_of("backendServices", body.get("backendService", "")))
        address = body.get("IPAddress")
        if address and not any(a.get("address") == address for a in self.store.all("addresses", region)):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.IPAddress': '{address}'. The"
                           " address is not reserved in this region.")

    def _create_addresses(self, region: str, address: dict) -> None:
        ip = self.backend.allocate_address(address["name"])
        with self.store.lock:
            address.update(address=ip, status="RESERVED", addressType=address.get("addressType", "EXTERNAL"))

    def _create_instanceGroups(self, zone: str, group: dict) -> None:
        with self.store.lock:
            group.update(size=0, _members=[])

    def _create_forwardingRules(self, region: str, rule: dict) -> None:
        self.backend.serve(rule)

    # -- delete ---------------------------------------------------------------------------------
    def delete(self, collection: str, location: str, name: str, request_id: str | None) -> dict:
        store = self.store
        self._location(collection, location)
        with store.lock:
            if request_id and request_id in store.request_ids:
                return store.operation("delete", collection, location, name, request_id, None)
            resource = store.get(collection, location, name)
            for referrer, uses in REFERRERS.get(collection, []):
                for other in store.all(referrer):
                    if uses(other, resource):
                        raise ApiError(400, "resourceInUseByAnotherResource", f"The resource '{resource['selfLink']}'"
                                       f" is already being used by '{other['selfLink']}'")
            if resource.get("status") == "STOPPING" and collection == "instances":
                pass
            elif collection == "instances":
                resource["status"] = "STOPPING"

        def work() -> None:
            if collection == "instances":
                self.backend.delete(resource)
                with store.lock:
                    for group in store.all("instanceGroups"):
                        group["_members"] = [m for m in group.get("_members", [])
                                             if not _same(m, resource["selfLink"])]
                        group["size"] = len(group["_members"])
            elif collection == "forwardingRules":
                self.backend.unserve(resource)
            elif collection == "addresses":
                self.backend.release_address(resource.get("address", ""))
            store.remove(collection, location, name)

        return store.operation("delete", collection, location, name, request_id, work)

    # -- patch and verbs ------------------------------------------------------------------------
    def patch(self, collection: str, location: str, name: str, body: dict, request_id: str | None) -> dict:
        store = self.store
        with store.lock:
            if request_id and request_id in store.request_ids:
                return store.operation("patch", collection, location, name, request_id, None)
            resource = store.get(collection, location, name)
            if "fingerprint" in body and resource.get("fingerprint") not in (None, body["fingerprint"]):
                raise ApiError(412, "conditionNotMet", "Supplied fingerprint does not match current fingerprint.")
            if collection == "backendServices":
                self._check_backendServices(location, body)
            for key, value in body.items():
                if key not in ("name", "id", "selfLink", "kind", "fingerprint", "creationTimestamp"):
                    resource[key] = copy.deepcopy(value)
            resource["fingerprint"] = f"f{int(resource.get('fingerprint', 'f0')[1:] or 0) + 1}"
        return store.operation("patch", collection, location, name, request_id, None)

    def verb(self, collection: str, location: str, name: str, verb: str, body: dict, request_id: str | None
             ) -> dict:
        store = self.store
        key = f"{collection}.{verb}"
        with store.lock:
            if request_id and request_id in store.request_ids:
                return store.operation(verb, collection, location, name, request_id, None)
            resource = store.get(collection, location, name)
        if key == "instances.reset":
            return store.operation("reset", collection, location, name, request_id,
                                   lambda: self.backend.reset(resource))
        if key == "instances.stop":
            def stop() -> None:
                self.backend.stop(resource)
                resource["status"] = "TERMINATED"
            return store.operation("stop", collection, location, name, request_id, stop)
        if key == "instances.start":
            return store.operation("start", collection, location, name, request_id,
                                   lambda: self._create_instances(location, resource))
        if key == "instances.setMetadata":
            with store.lock:
                if body.get("fingerprint") != resource["metadata"].get("fingerprint"):
                    raise ApiError(412, "conditionNotMet", "Supplied fingerprint does not match current fingerprint.")
                fingerprint = f"f{int(resource['metadata']['fingerprint'][1:]) + 1}"
                resource["metadata"] = {"items": body.get("items", []), "fingerprint": fingerprint,
                                        "kind": "compute#metadata"}
            return store.operation("setMetadata", collection, location, name, request_id,
                                   lambda: self.backend.apply_metadata(resource))
        if key == "instances.setLabels":
            with store.lock:
                resource["labels"] = body.get("labels", {})
            return store.operation("setLabels", collection, location, name, request_id, None)
        if key in ("instanceGroups.addInstances", "instanceGroups.removeInstances"):
            links = [ref.get("instance", "") for ref in body.get("instances", [])]
            with store.lock:
                for link in links:
                    where, instance = store.location_of("instances", link)
                    if where != location:
                        raise ApiError(400, "invalid", f"Instance '{link}' is not in zone {location} of the group.")
                    found = store.get("instances", where, instance)
                    members = resource.setdefault("_members", [])
                    present = any(_same(m, found["selfLink"]) for m in members)
                    if key.endswith("addInstances") and present:
                        raise ApiError(400, "memberAlreadyExists", f"The resource '{found['selfLink']}' is already"
                                       f" a member of '{resource['selfLink']}'")
                    if key.endswith("addInstances"):
                        members.append(found["selfLink"])
                    elif present:
                        resource["_members"] = [m for m in members if not _same(m, found["selfLink"])]
                resource["size"] = len(resource.get("_members", []))
            return store.operation(verb, collection, location, name, request_id, None)
        raise ApiError(400, "invalid", f"unsupported call {key} (stand-in)")

    def list_instances_of_group(self, zone: str, name: str) -> dict:
        group = self.store.get("instanceGroups", zone, name)
        with self.store.lock:
            items = [{"instance": m, "status": self._status(m)} for m in group.get("_members", [])]
        return {"kind": "compute#instanceGroupsListInstances", "items": items} if items else {
            "kind": "compute#instanceGroupsListInstances"}

    def _status(self, link: str) -> str:
        where, name = self.store.location_of("instances", link)
        found = self.store.find("instances", where, name)
        return found.get("status", "") if found else ""

    def health(self, region: str, name: str, body: dict) -> dict:
        service = self.store.get("backendServices", region, name)
        group_link = body.get("group", "")
        if not any(_same(b.get("group", ""), group_link) for b in service.get("backends", [])):
            raise ApiError(400, "invalid", f"Invalid value for field 'resourceGroupReference.group': '{group_link}'."
                           " It is not a backend of the service.")
        group = self.store.get("instanceGroups", *self.store.location_of("instanceGroups", group_link))
        statuses = self.backend.health(service, group)
        out: dict[str, Any] = {"kind": "compute#backendServiceGroupHealth"}
        if statuses:
            out["healthStatus"] = statuses
        return out


class _LateQuota(OperationFailed):
    def __init__(self, message: str) -> None:
        super().__init__("QUOTA_EXCEEDED", message, 403)
