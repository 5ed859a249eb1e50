"""What `orbiter status` adds about updates: the orbiter versions serving the orb, the versions each
cluster's package source offers (whatever its policy), and machines with OS updates or a reboot due."""

from temporalio.client import Client
from temporalio.service import RPCError

from orbiter.models.current import OrbStatus
from orbiter.models.updates import OrbiterStatus
from orbiter.worker.identity import serving_workers

from .common import console


async def with_workers(client: Client, orb: OrbStatus) -> OrbStatus:
    """The orb's status with the identities polling orbiter's task queue (version and build id)."""
    try:
        workers = await serving_workers(client)
    except RPCError as err:
        workers = [f"? (the task queue cannot be described: {err.message})"]
    mine = orb.orbiter or OrbiterStatus()
    return orb.model_copy(update={"orbiter": mine.model_copy(update={"workers": workers})})


def print_updates(orb: OrbStatus) -> None:
    mine = orb.orbiter
    if mine is not None:
        served = ", ".join(mine.workers) or "no worker polls the task queue"
        console.print(f"served by: {served}", highlight=False)
        if mine.update:
            console.print(f"self-update: {mine.update} ({mine.at})", highlight=False)
    for name, c in sorted(orb.clusters.items()):
        u = c.updates
        if u is not None and u.error:
            console.print(f"{name}: update check failed: {u.error}", highlight=False)
        elif u is not None and u.available:
            what = (f"policy {u.policy} takes {u.takes}" + (f", committed {u.committed[:12]}" if u.committed else "")
                    if u.takes else f"policy {u.policy}: reported only")
            note = f" ({u.note})" if u.note else ""
            console.print(f"{name}: {c.kind} {u.available} available (at {u.version}, seen in {u.source});"
                          f" {what}{note}", highlight=False)
        for n in c.nodes:
            if n.upgradable or n.reboot_required:
                due = [f"{len(n.upgradable or [])} OS updates"] if n.upgradable else []
                due += ["reboot required"] if n.reboot_required else []
                console.print(f"{name}/{n.machine}: {', '.join(due)}", highlight=False)
