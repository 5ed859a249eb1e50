"""Instances: created with orbiter's labels, maintenance key and a requestId, found again by
name and labels, deleted on release."""

from __future__ import annotations

import time
from collections.abc import Callable

from google.cloud import compute_v1

from orbiter.models.providers.gce import USER, GcePool, GceProvider

from ..base import MachineClaimed, ProviderError
from . import names
from .api import Api, GceError, gce_call, request_id

RUNNING_TIMEOUT = 600.0
BUSY = {"PROVISIONING", "STAGING", "REPAIRING"}  # on their way to RUNNING
STOPPED = {"STOPPING", "STOPPED", "TERMINATED", "SUSPENDING", "SUSPENDED"}  # preempted, or stopped by hand


def status(instance: compute_v1.Instance) -> str:
    return instance.status or ""


def address(instance: compute_v1.Instance, external: bool) -> str:
    """Where orbiter reaches the machine: its internal IP, or its external one when the pool asks."""
    nic = instance.network_interfaces[0] if instance.network_interfaces else None
    if nic is None:
        return ""
    if external:
        return next((ac.nat_i_p for ac in nic.access_configs if ac.nat_i_p), "")
    return nic.network_i_p or ""


def find(api: Api, name: str) -> compute_v1.Instance | None:
    """The instance of that name in any zone of the project (its zone may not be the one a new
    instance of its slot would go to: the pool's zones may have changed)."""
    found = [i for i in list_instances(api, f'name = "{name}"') if i.name == name]
    return found[0] if found else None


def list_instances(api: Api, filter: str) -> list[compute_v1.Instance]:
    """Instances of every zone matching a filter (the library follows nextPageToken)."""
    out: list[compute_v1.Instance] = []
    with gce_call(f"provider {api.provider}: list instances"):
        pages = api.instances.aggregated_list(
            request=compute_v1.AggregatedListInstancesRequest(project=api.project, filter=filter, max_results=500)
        )
        for _, scoped in pages:
            out += list(scoped.instances)
    return out


def check_owner(instance: compute_v1.Instance, orb: str, cluster: str) -> None:
    """An instance of this name that another orb or cluster (or no orbiter) made is not taken over."""
    labels = dict(instance.labels)
    if (labels.get(names.LABEL_ORB), labels.get(names.LABEL_CLUSTER)) == (orb, cluster):
        return
    zone = names.last(instance.zone)
    if names.LABEL_ORB in labels:
        raise MachineClaimed(
            f"instance {instance.name} (zone {zone}) belongs to orb {labels[names.LABEL_ORB]}"
            f" (cluster {labels.get(names.LABEL_CLUSTER, '?')}): release it there first, or delete"
            " it if that orb is gone"
        )
    raise MachineClaimed(
        f"instance {instance.name} (zone {zone}) exists and orbiter did not make it (no"
        f" {names.LABEL_ORB} label): the name is in use; delete or rename that instance"
    )


def body(
    spec: GceProvider, pool: GcePool, pool_name: str, name: str, zone: str, orb: str, cluster: str, public_key: str
) -> compute_v1.Instance:
    nic = compute_v1.NetworkInterface(network=f"global/networks/{spec.network}")
    if spec.subnetwork:
        nic.subnetwork = f"regions/{spec.region_name()}/subnetworks/{spec.subnetwork}"
    if pool.external_ip:
        nic.access_configs = [compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")]
    return compute_v1.Instance(
        name=name,
        description=names.description(f"machine of pool {pool_name}", orb, cluster),
        machine_type=f"zones/{zone}/machineTypes/{pool.machine_type}",
        labels=names.labels(orb, cluster, pool_name),
        tags=compute_v1.Tags(items=[names.base(orb, cluster)]),
        disks=[
            compute_v1.AttachedDisk(
                boot=True,
                auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(
                    source_image=pool.source_image(), disk_size_gb=pool.disk_gb
                ),
            )
        ],
        network_interfaces=[nic],
        # GCE's guest agent makes the user (with passwordless sudo) and installs the key; OS Login
        # off, or it would ignore ssh-keys.
        metadata=compute_v1.Metadata(
            items=[
                compute_v1.Items(key="ssh-keys", value=f"{USER}:{public_key.strip()}"),
                compute_v1.Items(key="enable-oslogin", value="FALSE"),
            ]
        ),
        scheduling=compute_v1.Scheduling(
            preemptible=pool.preemptible,
            automatic_restart=not pool.preemptible,
            on_host_maintenance="TERMINATE" if pool.preemptible else "MIGRATE",
        ),
    )


def ensure(
    api: Api,
    pool_name: str,
    name: str,
    orb: str,
    cluster: str,
    public_key: str,
    attempt: str,
    progress: Callable[[str], None],
) -> compute_v1.Instance:
    """The instance, RUNNING: found (by name, in any zone) or inserted in its slot's zone.

    The insert carries a requestId derived from the machine and the activity attempt's identity
    (the workflow run and activity id, which a retry keeps): a retried or crash-repeated insert is
    answered with the first operation and never makes a second instance, while a machine created
    again after it was deleted (another activity) gets a new one."""
    spec = api.spec
    pool = spec.pools[pool_name]
    what = f"provider {api.provider}: instance {name}"
    instance = find(api, name)
    if instance is None:
        zone = spec.zone_of(pool_name, name)
        progress(f"creating {name} in {zone}")
        request = compute_v1.InsertInstanceRequest(
            project=api.project,
            zone=zone,
            request_id=request_id("insert", orb, cluster, pool_name, name, attempt),
            instance_resource=body(spec, pool, pool_name, name, zone, orb, cluster, public_key),
        )
        try:
            api.change(
                what + f" (zone {zone})", lambda: api.unary(api.instances.insert_unary, request=request), progress
            )
        except GceError as err:
            if err.status != 409:  # a name in use: whose, is checked below
                raise
        instance = find(api, name)
        if instance is None:
            raise ProviderError(f"{what}: created, but GCE does not list it yet")
    check_owner(instance, orb, cluster)
    return running(api, instance, progress)


def running(api: Api, instance: compute_v1.Instance, progress: Callable[[str], None]) -> compute_v1.Instance:
    """Wait until RUNNING; a stopped one (preempted, or stopped by hand) is started again."""
    zone = names.last(instance.zone)
    what = f"provider {api.provider}: instance {instance.name} (zone {zone})"
    deadline = time.monotonic() + RUNNING_TIMEOUT
    started = False
    while status(instance) != "RUNNING":
        if status(instance) in ("STOPPED", "TERMINATED", "SUSPENDED") and not started:
            progress(f"starting {instance.name} ({status(instance).lower()})")
            call = api.instances.resume_unary if status(instance) == "SUSPENDED" else api.instances.start_unary
            api.change(what, lambda c=call, n=instance.name: c(project=api.project, zone=zone, instance=n), progress)
            started = True
        elif time.monotonic() > deadline:
            raise GceError(what, "timeout", f"still {status(instance)} after {RUNNING_TIMEOUT:.0f}s", True)
        else:
            progress(f"{instance.name}: {status(instance).lower()}")
            time.sleep(2)
        got = api.get(what, lambda n=instance.name: api.instances.get(project=api.project, zone=zone, instance=n))
        if got is None:
            raise GceError(what, "notFound", "deleted while orbiter waited for it to run", True, 404)
        instance = got
    return instance


def delete(api: Api, instance: compute_v1.Instance, progress: Callable[[str], None]) -> None:
    """Delete; gone already (404) counts as deleted. The requestId names the instance by its id,
    so deleting a later instance of the same name is a new request."""
    zone = names.last(instance.zone)
    rid = request_id("delete", str(instance.id), instance.name)
    api.change(
        f"provider {api.provider}: delete instance {instance.name} (zone {zone})",
        lambda: api.unary(
            api.instances.delete_unary, project=api.project, zone=zone, instance=instance.name, request_id=rid
        ),
        progress,
        missing_ok=True,
    )


def reset(api: Api, name: str, progress: Callable[[str], None]) -> None:
    instance = find(api, name)
    if instance is None:
        raise GceError(f"provider {api.provider}: instance {name}", "notFound", "no such instance to reset", False, 404)
    zone = names.last(instance.zone)
    api.change(
        f"provider {api.provider}: reset instance {name} (zone {zone})",
        lambda: api.unary(api.instances.reset_unary, project=api.project, zone=zone, instance=name),
        progress,
    )
